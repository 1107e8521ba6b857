//! The roots TLS trusts: the system's (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured, as
//! `rustls-native-certs` reads them), else Mozilla's set bundled with the binary
//! (`webpki-root-certs`), so a minimal container without CA certificates still verifies
//! registries instead of failing to start. reqwest's own default, the platform verifier,
//! panics in `Client::new()` when the system has no roots.

use std::sync::OnceLock;

/// Where the roots came from, for `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootSource {
    System,
    Bundled,
}

/// The roots every client of regbuild trusts, loaded once.
pub fn roots() -> &'static (Vec<reqwest::Certificate>, RootSource) {
    static ROOTS: OnceLock<(Vec<reqwest::Certificate>, RootSource)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let system: Vec<reqwest::Certificate> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect();
        if !system.is_empty() {
            tracing::debug!(count = system.len(), "TLS roots: the system's");
            return (system, RootSource::System);
        }
        let bundled: Vec<reqwest::Certificate> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect();
        tracing::info!(
            count = bundled.len(),
            "no CA certificates on this system (or at SSL_CERT_FILE/SSL_CERT_DIR): using the bundled Mozilla roots"
        );
        (bundled, RootSource::Bundled)
    })
}

/// `builder` trusting [`roots`] only; built, or (should a root not parse) built on the
/// bundled set, or on none at all (TLS then fails per connection with the host named,
/// never a panic).
pub fn client(builder: impl Fn() -> reqwest::ClientBuilder) -> reqwest::Client {
    let bundled = || {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect::<Vec<_>>()
    };
    builder()
        .tls_certs_only(roots().0.clone())
        .build()
        .or_else(|_| builder().tls_certs_only(bundled()).build())
        .or_else(|_| builder().tls_certs_only(Vec::new()).build())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "no TLS client could be made: plain HTTP only");
            reqwest::ClientBuilder::new()
                .tls_certs_only(Vec::new())
                .build()
                .unwrap_or_default()
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundled_roots_parse() {
        let parsed = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|c| reqwest::Certificate::from_der(c.as_ref()).is_ok())
            .count();
        assert!(parsed > 100, "{parsed}");
    }
}

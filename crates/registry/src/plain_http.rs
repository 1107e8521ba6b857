//! Which registries are reached over plain HTTP: loopback ones, and those the user named
//! with `--insecure-registry`. Its own module because both the transport (the scheme) and
//! auth (whether a token realm may be plain HTTP) ask it.

use std::net::IpAddr;

/// True for registries reached over plain HTTP: loopback, or named by the user.
pub fn is_plain_http_allowed(host: &str, insecure: &[String]) -> bool {
    let bare = strip_port(host);
    let loopback = bare == "localhost"
        || bare
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback || insecure.iter().any(|i| i == host || i == bare)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:5000
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_named_hosts_use_plain_http() {
        let none: Vec<String> = vec![];
        for h in [
            "127.0.0.1:5000",
            "127.8.9.10",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_plain_http_allowed(h, &none), "{h}");
        }
        for h in ["registry.example", "10.0.0.1:5000", "localhost.evil.com"] {
            assert!(!is_plain_http_allowed(h, &none), "{h}");
        }
        let insecure = vec!["reg.lan:5000".to_string(), "other.lan".to_string()];
        assert!(is_plain_http_allowed("reg.lan:5000", &insecure));
        assert!(!is_plain_http_allowed("reg.lan:6000", &insecure));
        assert!(is_plain_http_allowed("other.lan:443", &insecure));
    }
}

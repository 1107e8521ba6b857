//! `WWW-Authenticate` header values: any string gives a list of challenges,
//! never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regbuild_registry::challenge::parse_challenges;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let challenges = parse_challenges(&header);
    for c in &challenges {
        assert!(!c.scheme.is_empty(), "empty scheme from {header:?}");
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for name in c.params.keys() {
            assert_eq!(c.param(name), c.params.get(name).map(String::as_str));
        }
        let _ = c.param("realm");
    }
});

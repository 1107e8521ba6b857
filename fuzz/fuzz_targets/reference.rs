//! Image references and digests: parsing must not panic, and what parses
//! must print back to a string that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regbuild_oci::digest::Digest;
use regbuild_oci::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(r) = s.parse::<ImageRef>() {
        let printed = r.to_string();
        let again: ImageRef = printed
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} parsed, but its Display {printed:?} does not: {e}"));
        // `explicit_tag` records how the reference was written: `alpine`
        // prints as `docker.io/library/alpine:latest`, which names the tag.
        // Everything else must survive the round trip.
        let normalised = ImageRef {
            explicit_tag: again.explicit_tag,
            ..r.clone()
        };
        assert_eq!(
            normalised, again,
            "{s:?} -> {printed:?} changed the reference"
        );
        assert_eq!(
            again.to_string(),
            printed,
            "Display is not stable for {s:?}"
        );
        let _ = r.repository_name();
        let _ = r.manifest_reference();
        let _ = r.with_tag("t").to_string();
        if let Some(d) = &r.digest {
            let _ = r.with_digest(d).to_string();
        }
    }

    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.to_string().parse::<Digest>().as_ref(), Ok(&d));
        assert_eq!(format!("{}:{}", d.algorithm(), d.hex()), s);
        let _ = d.referrers_tag();
    }
});

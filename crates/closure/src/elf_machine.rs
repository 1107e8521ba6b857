//! Which OCI architecture an ELF file is built for, from its first 20 bytes, so a `COPY` of
//! an x86-64 binary into a `linux/arm64` image can be warned about before it is pushed.
//!
//! Hand-written on purpose: only `e_ident` (class, byte order) and `e_machine` are read, from
//! a 20-byte prefix of a file that is otherwise never opened here; the `object` crate (used
//! by `closure` for whole files) needs the section and program headers to parse.
//!
//! Not for anything beyond the machine: what a binary loads is the crate root's job.

use std::io::Read;
use std::path::Path;

/// The OCI `architecture` an ELF header names; `None` when `header` is not ELF or names a
/// machine without an OCI architecture.
pub fn oci_architecture(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let class64 = header[4] == 2;
    let little = header[5] == 1;
    let machine = if little {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    Some(match (machine, class64, little) {
        (3, _, _) => "386",
        (62, _, _) => "amd64",
        (40, _, _) => "arm",
        (183, _, _) => "arm64",
        (243, true, _) => "riscv64",
        (21, true, true) => "ppc64le",
        (21, true, false) => "ppc64",
        (22, true, _) => "s390x",
        (258, true, _) => "loong64",
        (8, false, true) => "mipsle",
        (8, false, false) => "mips",
        (8, true, true) => "mips64le",
        (8, true, false) => "mips64",
        _ => return None,
    })
}

/// The architecture of the ELF file at `path`, if it is one (unreadable files are not).
pub fn file_architecture(path: &Path) -> Option<&'static str> {
    let mut header = [0u8; 20];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut header).ok()?;
    oci_architecture(&header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', class, data, 1];
        h.resize(18, 0);
        if data == 1 {
            h.extend_from_slice(&machine.to_le_bytes());
        } else {
            h.extend_from_slice(&machine.to_be_bytes());
        }
        h
    }

    #[test]
    fn machines_map_to_oci_architectures() {
        assert_eq!(oci_architecture(&header(2, 1, 62)), Some("amd64"));
        assert_eq!(oci_architecture(&header(2, 1, 183)), Some("arm64"));
        assert_eq!(oci_architecture(&header(1, 1, 40)), Some("arm"));
        assert_eq!(oci_architecture(&header(2, 1, 21)), Some("ppc64le"));
        assert_eq!(oci_architecture(&header(2, 2, 22)), Some("s390x"));
        assert_eq!(oci_architecture(b"#!/bin/sh\necho not elf\n"), None);
        assert_eq!(oci_architecture(&header(2, 1, 9999)), None);
        assert_eq!(oci_architecture(b"\x7fELF"), None, "too short");
    }

    #[test]
    fn this_test_binary_is_of_the_build_host_architecture() {
        let exe = std::env::current_exe().unwrap();
        let host = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!(file_architecture(&exe), Some(host));
    }
}

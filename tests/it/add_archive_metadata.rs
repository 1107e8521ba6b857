//! `FROM scratch` + `ADD rootfs.tar /`, the way distribution base images are made: the
//! pushed layer keeps what the archive says about each entry — owners and groups, modes
//! (setgid included with `--keep-setuid`), device nodes, FIFOs and `security.capability` —
//! as Docker does, `--chown` still overrides the owners, and the layer cache tells apart
//! archives that differ only there. Layers are read back from the real registry, header by
//! header.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::layers::{pushed_layers, Header};
use crate::common::*;
use tar::EntryType;

/// `cap_net_raw+ep` as `setcap` stores it (VFS_CAP_REVISION_2; no newline byte, which the
/// `tar` crate's PAX reader could not take).
const CAP_NET_RAW: [u8; 20] = [
    0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A distribution-like root filesystem: several owners, a setgid binary, a setgid
/// directory, a char and a block device, a FIFO and a file with capabilities (plus an
/// attribute Docker does not keep). `null_minor` and `cap` vary it for the cache check.
fn rootfs_tar(path: &Path, null_minor: u32, cap: &[u8]) {
    let mut b = tar::Builder::new(Vec::new());
    let dirs: [(&str, u32, (u64, u64)); 10] = [
        ("./", 0o755, (0, 0)),
        ("etc/", 0o755, (0, 0)),
        ("usr/", 0o755, (0, 0)),
        ("usr/bin/", 0o755, (0, 0)),
        ("var/", 0o755, (0, 0)),
        ("var/mail/", 0o2775, (0, 8)),
        ("home/", 0o755, (0, 0)),
        ("home/user/", 0o700, (1000, 1000)),
        ("dev/", 0o755, (0, 0)),
        ("run/", 0o755, (0, 0)),
    ];
    for (name, mode, ids) in dirs {
        append(&mut b, name, EntryType::Directory, mode, ids, b"", None);
    }
    let (file, etc) = (EntryType::Regular, b"root:*:19000::::::\n");
    append(&mut b, "etc/shadow", file, 0o640, (0, 42), etc, None);
    append(
        &mut b,
        "usr/bin/chage",
        file,
        0o2755,
        (0, 42),
        b"\x7fELF chage",
        None,
    );
    let profile = b"PS1='$ '\n";
    append(
        &mut b,
        "home/user/.profile",
        file,
        0o644,
        (1000, 1000),
        profile,
        None,
    );
    let null = Some((1, null_minor));
    append(
        &mut b,
        "dev/null",
        EntryType::Char,
        0o666,
        (0, 0),
        b"",
        null,
    );
    append(
        &mut b,
        "dev/sda",
        EntryType::Block,
        0o660,
        (0, 6),
        b"",
        Some((8, 0)),
    );
    append(
        &mut b,
        "run/initctl",
        EntryType::Fifo,
        0o600,
        (0, 0),
        b"",
        None,
    );
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", cap),
        ("SCHILY.xattr.user.origin", &b"test"[..]),
    ])
    .unwrap();
    append(
        &mut b,
        "usr/bin/ping",
        file,
        0o755,
        (0, 0),
        b"\x7fELF ping",
        None,
    );
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn append(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: EntryType,
    mode: u32,
    (uid, gid): (u64, u64),
    data: &[u8],
    device: Option<(u32, u32)>,
) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    if let Some((major, minor)) = device {
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
    }
    b.append_data(&mut h, name, data).unwrap();
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Header {
    Header {
        kind,
        mode,
        uid,
        gid,
        device: None,
        xattrs: BTreeMap::new(),
        data: data.to_vec(),
    }
}

/// The one layer of `tag`.
fn layer_of(tag: &str) -> BTreeMap<String, Header> {
    let mut layers = pushed_layers(tag);
    assert_eq!(layers.len(), 1, "FROM scratch + one ADD");
    layers.remove(0)
}

#[test]
fn add_of_a_rootfs_tar_keeps_owners_modes_devices_fifos_and_capabilities() {
    let reg = Distribution::start();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nADD rootfs.tar /\n")]);
    rootfs_tar(&ctx.path().join("rootfs.tar"), 3, &CAP_NET_RAW);

    let tag = format!("{}/fidelity/rootfs:keep", reg.host);
    let err = stderr(&push(ctx.path(), &tag, &["--keep-setuid"]));
    assert!(
        err.contains("user.origin") && err.contains("security.capability"),
        "the attribute left out is named: {err}"
    );
    let layer = layer_of(&tag);
    let dir = |mode, uid, gid| header(EntryType::Directory, mode, uid, gid, b"");
    let mut want: BTreeMap<String, Header> = [
        ("dev/", dir(0o755, 0, 0)),
        ("etc/", dir(0o755, 0, 0)),
        ("home/", dir(0o755, 0, 0)),
        ("home/user/", dir(0o700, 1000, 1000)),
        ("run/", dir(0o755, 0, 0)),
        ("usr/", dir(0o755, 0, 0)),
        ("usr/bin/", dir(0o755, 0, 0)),
        ("var/", dir(0o755, 0, 0)),
        ("var/mail/", dir(0o2775, 0, 8)),
        (
            "etc/shadow",
            header(EntryType::Regular, 0o640, 0, 42, b"root:*:19000::::::\n"),
        ),
        (
            "usr/bin/chage",
            header(EntryType::Regular, 0o2755, 0, 42, b"\x7fELF chage"),
        ),
        (
            "home/user/.profile",
            header(EntryType::Regular, 0o644, 1000, 1000, b"PS1='$ '\n"),
        ),
        (
            "dev/null",
            Header {
                device: Some((1, 3)),
                ..header(EntryType::Char, 0o666, 0, 0, b"")
            },
        ),
        (
            "dev/sda",
            Header {
                device: Some((8, 0)),
                ..header(EntryType::Block, 0o660, 0, 6, b"")
            },
        ),
        ("run/initctl", header(EntryType::Fifo, 0o600, 0, 0, b"")),
        (
            "usr/bin/ping",
            Header {
                xattrs: [("security.capability".to_string(), CAP_NET_RAW.to_vec())]
                    .into_iter()
                    .collect(),
                ..header(EntryType::Regular, 0o755, 0, 0, b"\x7fELF ping")
            },
        ),
    ]
    .into_iter()
    .map(|(p, h)| (p.to_string(), h))
    .collect();
    assert_eq!(layer, want);

    // Without --keep-setuid the setgid bit goes (and is reported); the group stays.
    let tag = format!("{}/fidelity/rootfs:stripped", reg.host);
    let err = stderr(&push(ctx.path(), &tag, &[]));
    assert!(
        err.contains("stripped setuid/setgid bits from /usr/bin/chage"),
        "{err}"
    );
    if let Some(chage) = want.get_mut("usr/bin/chage") {
        chage.mode = 0o755;
    }
    assert_eq!(layer_of(&tag), want);

    // --chown still overrides every owner; devices and capabilities stay.
    let chown = context_with(&[("Dockerfile", "FROM scratch\nADD --chown=7:8 rootfs.tar /\n")]);
    std::fs::copy(
        ctx.path().join("rootfs.tar"),
        chown.path().join("rootfs.tar"),
    )
    .unwrap();
    let tag = format!("{}/fidelity/rootfs:chown", reg.host);
    push(chown.path(), &tag, &["--keep-setuid"]);
    let layer = layer_of(&tag);
    assert!(
        layer.values().all(|h| (h.uid, h.gid) == (7, 8)),
        "{layer:#?}"
    );
    assert_eq!(layer["dev/sda"].device, Some((8, 0)));
    assert_eq!(layer["run/initctl"].kind, EntryType::Fifo);
    assert_eq!(layer["usr/bin/chage"].mode, 0o2755);
    assert!(layer["usr/bin/ping"]
        .xattrs
        .contains_key("security.capability"));

    // Same files, other device numbers and capability: the layer cache (kept across these
    // runs) must not answer with the first layer.
    let mut other_cap = CAP_NET_RAW;
    other_cap[4] = 0x10;
    rootfs_tar(&ctx.path().join("rootfs.tar"), 5, &other_cap);
    let tag = format!("{}/fidelity/rootfs:changed", reg.host);
    push(ctx.path(), &tag, &["--keep-setuid"]);
    let layer = layer_of(&tag);
    assert_eq!(layer["dev/null"].device, Some((1, 5)));
    assert_eq!(
        layer["usr/bin/ping"].xattrs["security.capability"],
        other_cap.to_vec()
    );
}

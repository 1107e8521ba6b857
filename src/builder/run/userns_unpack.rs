//! Rootless unpacking with the layer's owners. As an unprivileged user regbuild cannot
//! chown, so a layer unpacked in-process has every file owned by the user: inside a step
//! (where the user is root) everything would be root's, and a `USER app` step could not
//! write its own home. With subordinate id ranges, the unpack runs instead as root of a user
//! namespace that maps them (`regbuild_sandbox::userns`), the same map the steps get: a file
//! of uid 1000 lands on the matching subordinate id and the step sees it as 1000's. As root,
//! or with a single-id map (where no other owner can exist), the unpack stays in-process.
//!
//! The task is this program again (`/proc/self/exe`): argv = archive, destination, xattr
//! namespace, expected diff_id; it answers with the unpack's figures as JSON on stdout,
//! or its error on stderr and exit status 1 (the destination emptied, as `unpack_lower`
//! leaves it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regbuild_rootfs::lower::{LowerError, LowerOptions, LowerStats, OverlayXattrs};

/// The task's name on the command line.
pub const TASK: &str = "unpack-lower";

/// Whether unpacks must go through a user namespace to keep owners (rootless with ranges).
pub fn needed() -> bool {
    static NEEDED: OnceLock<bool> = OnceLock::new();
    *NEEDED.get_or_init(|| {
        !rustix::process::geteuid().is_root() && regbuild_sandbox::userns::ranges_available()
    })
}

/// Unpacks `archive` into `dest` (empty) in a user namespace; as `unpack_lower` does.
pub fn unpack(archive: &Path, dest: &Path, opts: &LowerOptions) -> Result<LowerStats, LowerError> {
    let failed = |message: String| LowerError::Io {
        action: "unpacking in a user namespace",
        path: archive.to_path_buf(),
        source: std::io::Error::other(message),
    };
    let args: Vec<OsString> = vec![
        archive.into(),
        dest.into(),
        match opts.xattrs {
            OverlayXattrs::Trusted => "trusted".into(),
            OverlayXattrs::User => "user".into(),
        },
        opts.expected_diff_id
            .as_ref()
            .map_or_else(|| "-".to_string(), |d| d.to_string())
            .into(),
    ];
    let out = regbuild_sandbox::userns::run_task(Path::new("/proc/self/exe"), TASK, &args)
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("its answer: {e}")))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Ok(LowerStats {
        diff_id: v["diff_id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| failed(format!("its diff_id: {e}")))?,
        entries: n("entries"),
        bytes: n("bytes"),
        whiteouts: n("whiteouts"),
        opaque_dirs: n("opaque_dirs"),
        ownership_skipped: n("ownership_skipped"),
        xattrs_skipped: n("xattrs_skipped"),
        skipped: Vec::new(),
    })
}

/// The task's side, run by `main` inside the namespace; returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    let [archive, dest, ns, expected] = args else {
        eprintln!("{TASK}: want ARCHIVE DEST trusted|user DIFF_ID");
        return 2;
    };
    let expected_diff_id = match expected.to_str() {
        Some("-") => None,
        Some(d) => match d.parse() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("{TASK}: diff_id {d}: {e}");
                return 2;
            }
        },
        None => return 2,
    };
    let opts = LowerOptions {
        xattrs: if ns == "trusted" {
            OverlayXattrs::Trusted
        } else {
            OverlayXattrs::User
        },
        expected_diff_id,
        ..LowerOptions::default()
    };
    match regbuild_rootfs::lower::unpack_lower(&PathBuf::from(archive), &PathBuf::from(dest), &opts)
    {
        Ok(s) => {
            let answer = serde_json::json!({
                "diff_id": s.diff_id.to_string(),
                "entries": s.entries,
                "bytes": s.bytes,
                "whiteouts": s.whiteouts,
                "opaque_dirs": s.opaque_dirs,
                "ownership_skipped": s.ownership_skipped,
                "xattrs_skipped": s.xattrs_skipped,
            });
            println!("{answer}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

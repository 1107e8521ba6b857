//! What a test of this crate does when this machine lacks something it needs: on a
//! developer's machine it says what is missing and returns; when `CI` is set it fails, since
//! there a missing prerequisite must never pass as a skipped test.

/// Says that `what`, missing here, keeps a test from running: a failure when `CI` is set, a
/// note on a developer's machine (the caller then returns).
pub(crate) fn not_here(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "a prerequisite is missing and CI is set: {what}"
    );
    eprintln!("not run here: {what}");
}

/// Whether this process is root, which the test needs for `why`; when it is not,
/// [`not_here`] says so (a failure when `CI` is set) and the test returns.
pub(crate) fn needs_root(why: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        not_here(&format!("this test needs root ({why})"));
    }
    root
}

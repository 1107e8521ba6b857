//! Tests of this crate that start processes, and the one that checks a released `flock`
//! is free, take turns: a child holds copies of the parent's descriptors (and so its
//! `flock`s) from fork until exec.

/// Held for reading while a test starts a process, for writing while a test releases a
/// lock and checks it is free: a child holds copies of the parent's descriptors (and so its
/// `flock`s) from fork until exec, and `spawn` returns only after the exec.
pub static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Starts `cmd` with no lock release of another test in between (see [`SPAWNING`]).
pub fn spawn(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let _starting = SPAWNING.read().unwrap_or_else(|e| e.into_inner());
    cmd.spawn()
}

//! Ending running steps on SIGINT/SIGTERM: each step registers its kill handle while it
//! runs; [`interrupt_all`] (called by the CLI's signal task) kills them all, so the build
//! unwinds through its destructors (temporary directories removed) instead of dying with
//! them. The sandbox guarantees no process or mount of a killed step survives.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use regbuild_sandbox::KillHandle;

static STEPS: Mutex<Vec<(u64, KillHandle)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Unregisters its step when dropped.
pub struct Registered(u64);

/// Registers a running step; a step started after an interrupt is killed at once.
pub fn register(handle: KillHandle) -> Registered {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    // Registered first, the flag read after (both under the lock `interrupt_all` takes): a
    // signal between the two cannot miss this step.
    if let Ok(mut steps) = STEPS.lock() {
        steps.push((id, handle.clone()));
        if INTERRUPTED.load(Ordering::SeqCst) {
            handle.kill();
        }
    }
    Registered(id)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut steps) = STEPS.lock() {
            steps.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Kills every running step and every step started from now on.
pub fn interrupt_all() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    if let Ok(steps) = STEPS.lock() {
        for (_, h) in steps.iter() {
            h.kill();
        }
    }
}

/// Whether [`interrupt_all`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

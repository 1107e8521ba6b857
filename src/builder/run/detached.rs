//! A step's command on a thread of its own, awaited. `Sandbox::run_with` blocks until the
//! command ends; on the build's task that would hold up every other stage, which are
//! futures of the same task. Here the command runs on its own thread, its output comes
//! back over a channel to the awaiting step (which prefixes and prints it), and the other
//! stages go on meanwhile.
//!
//! Cancelled (the future dropped: another stage failed), the step is killed and its thread
//! waited for, so when the drop returns no process or mount of the step is left and the
//! caller may remove its scratch.

use std::sync::{Arc, Mutex};

use regbuild_sandbox::{KillHandle, Outcome, Sandbox, SandboxError, Spec, Stream};

/// Runs `spec` as `Sandbox::run_with` would, calling `on_output` on this task with each
/// chunk of output, while the task's other futures run.
pub async fn run(
    sandbox: Sandbox,
    spec: Spec,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let control = Arc::new(Control::default());
    let theirs = control.clone();
    let thread = std::thread::Builder::new()
        .name("regbuild-run".into())
        .spawn(move || {
            let mut registered = None;
            let on_start = |h: KillHandle| {
                registered = Some(super::interrupt::register(h.clone()));
                theirs.started(h);
            };
            let outcome = sandbox.run_with(&spec, on_start, move |stream, bytes| {
                // The receiver is gone only when the step was cancelled: nobody reads.
                let _ = tx.send((stream, bytes.to_vec()));
            });
            drop(registered);
            let _ = done_tx.send(outcome);
        })
        .map_err(|e| SandboxError::Helper(format!("cannot start a thread for the step: {e}")))?;
    let mut guard = Joined {
        control,
        thread: Some(thread),
    };
    // Ends when the sender is dropped: the command has ended and its output is all read.
    while let Some((stream, bytes)) = rx.recv().await {
        on_output(stream, &bytes);
    }
    let outcome = done_rx.await;
    guard.join();
    outcome.unwrap_or_else(|_| {
        Err(SandboxError::Helper(
            "the step's thread ended without saying how the step did".into(),
        ))
    })
}

/// What the awaiting side knows of the step: whether it was cancelled, how to kill it.
#[derive(Default)]
struct Control(Mutex<ControlState>);

#[derive(Default)]
struct ControlState {
    cancelled: bool,
    handle: Option<KillHandle>,
}

impl Control {
    /// The step has started: killed at once if it was cancelled before.
    fn started(&self, h: KillHandle) {
        if let Ok(mut s) = self.0.lock() {
            if s.cancelled {
                h.kill();
            }
            s.handle = Some(h);
        }
    }

    fn cancel(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.cancelled = true;
            if let Some(h) = &s.handle {
                h.kill();
            }
        }
    }
}

/// The step's thread, killed and waited for if the step is dropped before it ended.
struct Joined {
    control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Joined {
    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Blocks only while the sandbox tears the killed step down (its pid namespace
            // dies with its init; its mounts with its mount namespace).
            self.control.cancel();
            self.join();
        }
    }
}

//! Chroot steps take turns across the container. Two at once could meet over an abstract
//! Unix socket (they share the container's network namespace) and hand each other a
//! directory descriptor outside their roots; Landlock's scopes stop that where the kernel
//! has them (6.12), taking turns stops it everywhere. Within this process a mutex; across
//! the processes of the container an abstract socket name, bound while the step runs:
//! abstract names belong to a network namespace, so it is the container's, and it is gone
//! when its holder is, SIGKILL included (no lock file to leave behind).

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::RunError;

/// Held while a chroot step runs.
pub struct Turn {
    _here: tokio::sync::MutexGuard<'static, ()>,
    _container: std::os::unix::net::UnixListener,
}

static HERE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const NAME: &[u8] = b"regbuild-chroot-turn";
/// The longest wait for another regbuild's step (a step is bounded by nothing else).
const WAIT: Duration = Duration::from_secs(3600);

/// Waits for this process's and the container's turn.
pub async fn take() -> Result<Turn, RunError> {
    use std::os::linux::net::SocketAddrExt;
    let here = HERE.lock().await;
    let shown = Path::new("@regbuild-chroot-turn");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(NAME)
        .map_err(|e| RunError::io(shown, e))?;
    let deadline = Instant::now() + WAIT;
    let mut said = false;
    loop {
        match std::os::unix::net::UnixListener::bind_addr(&addr) {
            Ok(container) => {
                return Ok(Turn {
                    _here: here,
                    _container: container,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !said {
                    tracing::info!(
                        "RUN: another chroot step of this container runs; waiting for it"
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(RunError::io(shown, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_chroot_step_waits_while_another_process_of_the_container_holds_the_turn() {
        use std::os::linux::net::SocketAddrExt;
        // Another regbuild of this container (network namespace) holding the turn.
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(NAME).unwrap();
        let other = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let waiting = tokio::spawn(take());
        let early = tokio::time::timeout(Duration::from_millis(600), async {
            while !waiting.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(early.is_err(), "the turn was taken while another held it");
        drop(other);
        let turn = tokio::time::timeout(Duration::from_secs(30), waiting).await;
        assert!(
            matches!(turn, Ok(Ok(Ok(_)))),
            "the turn comes once it is free"
        );
    }
}

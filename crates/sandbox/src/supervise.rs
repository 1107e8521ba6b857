//! What stage 1 of every rung shares (the namespaces' in `helper`, the chroot rung's in
//! `chroot`): reporting events to the caller, keeping only the protocol's descriptors, and
//! watching the step's first process while listening for the caller's KILL.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{
    pidfd_open, pidfd_send_signal, waitpid, Pid, PidfdFlags, Signal, WaitOptions,
};

use crate::protocol::{fail, setup_err, ErrorKind, Event, KILL};

pub(crate) struct Reporter(pub(crate) File);

impl Reporter {
    pub(crate) fn send(&mut self, event: &Event) {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        // One write per event: atomic on a pipe below PIPE_BUF, and both helpers share it.
        let _ = self.0.write_all(&line);
    }
    pub(crate) fn warn(&mut self, message: String) {
        self.send(&Event::Warning { message });
    }
}

/// Waits for init to end, killing it when the caller says so or goes away; returns its
/// status and whether it was killed.
pub(crate) fn watch_init(
    init_pid: Pid,
    go: &mut File,
) -> Result<(std::process::ExitStatus, bool), Event> {
    let pidfd = pidfd_open(init_pid, PidfdFlags::empty()).map_err(setup_err("pidfd_open"))?;
    let mut killed = false;
    let mut go_open = true;
    loop {
        let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
        if go_open {
            fds.push(PollFd::new(&*go, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(fail(ErrorKind::Setup, "poll", e)),
            Ok(_) => {}
        }
        let init_done = !fds[0].revents().is_empty();
        let go_ready = go_open && !fds[1].revents().is_empty();
        drop(fds);
        if init_done {
            break;
        }
        if go_ready {
            let mut b = [0u8; 1];
            let n = go.read(&mut b).unwrap_or(0);
            if n == 0 || b[0] == KILL {
                go_open = false;
                killed = true;
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            }
        }
    }
    let status = loop {
        match waitpid(Some(init_pid), WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(Some((_, st))) => break st,
            Ok(None) => continue,
            Err(e) => return Err(fail(ErrorKind::Setup, "waitpid(init)", e)),
        }
    };
    Ok((std::process::ExitStatus::from_raw(status.as_raw()), killed))
}

/// Closes every descriptor of this process but `keep` (read from `/proc/self/fd`, which is
/// still the host's: init has not mounted its own yet).
pub(crate) fn keep_only(keep: &[RawFd]) -> io::Result<()> {
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Ok(fd) = entry?.file_name().to_string_lossy().parse::<RawFd>() {
            open.push(fd);
        }
    }
    for fd in open.into_iter().filter(|fd| !keep.contains(fd)) {
        // SAFETY: closing a descriptor nothing else in this process uses any more (the
        // directory listing's own is closed already and fails harmlessly).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

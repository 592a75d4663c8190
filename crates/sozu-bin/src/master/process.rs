//! A worker process known by its pid: started by us, or adopted across a main upgrade
//! (the same process re-executed keeps its children, so `waitpid` still reaps them).

use std::io;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// One child process. Never signals a pid after it was reaped (it may be reused).
#[derive(Debug)]
pub(crate) struct Process {
    pid: Pid,
    /// How it ended, once reaped.
    ended: Option<String>,
}

fn describe(status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(_, code) => Some(format!("exit status: {code}")),
        WaitStatus::Signaled(_, signal, _) => Some(format!("signal: {} ({signal})", signal as i32)),
        _ => None,
    }
}

impl Process {
    /// A child we started (the `Child` handle is not needed any more).
    pub fn from_child(child: std::process::Child) -> Process {
        Process { pid: Pid::from_raw(child.id() as i32), ended: None }
    }

    /// A child we inherited across an exec of ourselves.
    pub fn adopt(pid: i32) -> Process {
        Process { pid: Pid::from_raw(pid), ended: None }
    }

    pub fn kill(&mut self) -> io::Result<()> {
        if self.ended.is_some() {
            return Ok(());
        }
        kill(self.pid, Signal::SIGKILL).map_err(io::Error::from)
    }

    /// How it ended, if it did (reaping it).
    pub fn try_wait(&mut self) -> io::Result<Option<String>> {
        if self.ended.is_some() {
            return Ok(self.ended.clone());
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                self.ended = describe(status);
                Ok(self.ended.clone())
            }
            // not our child (any more): treat as gone
            Err(nix::errno::Errno::ECHILD) => {
                self.ended = Some("not a child of this process".into());
                Ok(self.ended.clone())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reaps a process that is ending: lets it exit by itself for at most `grace`, then
    /// kills it. How it ended.
    pub fn end(&mut self, grace: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + grace;
        loop {
            match self.try_wait() {
                Ok(Some(ended)) => return ended,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                _ => break,
            }
        }
        let _ = self.kill();
        self.wait().unwrap_or_else(|e| e.to_string())
    }

    /// Waits until it ends (reaping it).
    pub fn wait(&mut self) -> io::Result<String> {
        loop {
            if let Some(ended) = &self.ended {
                return Ok(ended.clone());
            }
            match waitpid(self.pid, None) {
                Ok(status) => self.ended = describe(status),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECHILD) => self.ended = Some("not a child of this process".into()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `GLIBC_TUNABLES` for a process that builds the whole state as it starts (a worker,
/// the upgrade check): glibc's heap on transparent huge pages, about a quarter of the
/// page faults, 10 to 15 ms less at 10k clusters, for a few MiB more resident. Not for
/// the master (it keeps its RSS low). An operator's own `glibc.malloc.hugetlb` wins.
pub(crate) fn boot_tunables() -> String {
    match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if t.contains("glibc.malloc.hugetlb") => t,
        Ok(t) if !t.is_empty() => format!("{t}:glibc.malloc.hugetlb=1"),
        _ => "glibc.malloc.hugetlb=1".into(),
    }
}

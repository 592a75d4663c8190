//! Main upgrade (`UpgradeMain`, `sozu upgrade`): the master re-executes itself with a
//! new binary and keeps its pid, so the workers stay its children and keep serving.
//!
//! 1. The new binary (`upgrade_binary`, default: the path the master started from) is
//!    opened once, and run as `sozu upgrade-check` on the upgrade data (an unlinked
//!    file): it must parse the data, the configuration and the state and say so within
//!    `upgrade_timeout`. The master keeps serving meanwhile (the check is polled from
//!    the loop). A missing binary, a failed exec, a crash, a refusal or silence ends the
//!    upgrade with FAILURE and the stderr tail; nothing changed.
//! 2. Then the master clears `FD_CLOEXEC` on exactly the fds the data names and
//!    `fexecve`s the same, already checked, binary as `sozu upgraded --data-fd N`. If the
//!    exec fails every flag is restored and the master answers FAILURE.
//! 3. The new image adopts the sockets, listeners and workers, answers the client that
//!    asked (OK, with its pid and boot generation), tells systemd `MAINPID=`/`READY=1`,
//!    and serves. Other clients are disconnected by the exec.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::Token;
use slog::{error, info, warn};
use sozu_proto::Response;
use sozu_upgrade::{ListenerHandover, UpgradeData, WorkerHandover};

use super::conn::Conn;
use super::server::Master;

/// What the check prints when the data, configuration and state are acceptable.
pub const CHECK_OK: &str = "UPGRADE-CHECK-OK";

/// A main upgrade waiting for its check.
pub(super) struct Upgrade {
    client: Token,
    binary: PathBuf,
    bin: OwnedFd,
    data: File,
    check: Child,
    deadline: Instant,
    /// The state generation the check was given: the exec hands over exactly that state.
    generation: u64,
    /// Checks started so far (the state changed during the earlier ones).
    attempts: u32,
}

/// Checks started for one upgrade before giving up on a state that keeps changing.
const CHECK_ATTEMPTS: u32 = 3;

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(400);
    let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    text[start..].replace('\n', " | ")
}

impl Master {
    /// Why an upgrade cannot start now, if it cannot.
    fn upgrade_blocker(&self) -> Option<String> {
        if self.upgrade.is_some() {
            return Some("an upgrade is already in progress".into());
        }
        if self.stopping.is_some() {
            return Some("the master is stopping".into());
        }
        let busy = self.tasks.values().filter(|t| t.client.is_some_and(|c| self.clients.contains_key(&c))).count();
        let queued: usize = self.workers.values().map(|w| w.outbox.len()).sum();
        (busy > 0 || queued > 0 || self.loading.is_some())
            .then(|| format!("the master is busy ({busy} requests in progress); try again"))
    }

    /// The upgrade data for the current master, `client` being the requester; its state
    /// is left empty: [`Self::write_upgrade_data`] writes it after.
    fn upgrade_data(&self, client: Option<i32>) -> UpgradeData {
        let listeners = [("http", &self.listeners.http), ("tcp", &self.listeners.tcp)]
            .into_iter()
            .flat_map(|(protocol, list)| {
                list.iter().map(move |(addr, fd)| ListenerHandover {
                    protocol: protocol.into(),
                    address: addr.to_string(),
                    fd: fd.as_raw_fd(),
                })
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .map(|(id, w)| WorkerHandover {
                id: *id,
                pid: w.pid,
                channel_fd: w.channel.stream().as_raw_fd(),
                scm_fd: w.scm.as_fd().as_raw_fd(),
                run_state: w.run_state as i32,
            })
            .collect();
        UpgradeData {
            from_version: env!("CARGO_PKG_VERSION").into(),
            config_path: self.config.config_path.display().to_string(),
            config_text: self.config_text.clone(),
            state: Vec::new(),
            command_socket_fd: self.listener.as_raw_fd(),
            dashboard_fd: self.dashboard.as_ref().map(AsRawFd::as_raw_fd),
            listeners,
            workers,
            client_fd: client,
            next_worker_id: self.next_worker_id,
            next_task_id: self.next_task_id,
            next_client_id: self.next_client_id,
            boot_generation: self.boot_generation,
            audit_head: None,
            subscribers: self.clients.values().filter(|c| c.subscribed).count() as u32,
        }
    }

    /// Writes `data` to `file` from its start, with the state as the workers get it at
    /// boot: a protobuf InitialState (parsed in a few ms, where the JSON state file
    /// would take ten times longer), written from the encoded copy the master keeps.
    fn write_upgrade_data(&mut self, mut file: &File, data: &UpgradeData) -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(&sozu_upgrade::encode_header(data))?;
        file.write_all(&self.initial_state_bytes())?;
        file.rewind()
    }

    /// `UpgradeMain`: starts the check of the new binary.
    pub(super) fn upgrade_main(&mut self, token: Token) {
        if let Some(why) = self.upgrade_blocker() {
            self.reply(token, Response::failure(format!("upgrade refused: {why}")));
            return;
        }
        let binary = self.config.upgrade_binary.clone().unwrap_or_else(|| self.exe_path.clone());
        match self.start_check(token, &binary) {
            Ok(upgrade) => {
                info!(self.log, "main upgrade: checking {}", binary.display());
                self.reply(token, Response::processing(format!("Checking the new binary {}...", binary.display())));
                self.upgrade = Some(upgrade);
            }
            Err(e) => {
                warn!(self.log, "main upgrade refused: {e}");
                self.reply(token, Response::failure(format!("upgrade failed, the master keeps serving: {e}")));
            }
        }
    }

    fn start_check(&mut self, token: Token, binary: &std::path::Path) -> anyhow::Result<Upgrade> {
        use nix::fcntl::{OFlag, open};
        let bin = open(binary, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| anyhow::anyhow!("cannot open the new binary {}: {e}", binary.display()))?;
        let client = match self.clients.get(&token).map(|c| &c.conn) {
            Some(Conn::Proto(channel)) => Some(channel.stream().as_raw_fd()),
            _ => None,
        };
        let data = tempfile::tempfile()?;
        self.write_upgrade_data(&data, &self.upgrade_data(client))?;
        let check = {
            // the binary's fd too: an interpreted file re-opens itself by that path
            let _keep = sozu_upgrade::KeptAcrossExec::new([data.as_fd(), bin.as_fd()])?;
            Command::new(format!("/proc/self/fd/{}", bin.as_raw_fd()))
                .args(["upgrade-check", "--data-fd", &data.as_raw_fd().to_string()])
                .env("GLIBC_TUNABLES", super::process::boot_tunables())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot run the new binary {}: {e}", binary.display()))?
        };
        Ok(Upgrade {
            client: token,
            binary: binary.to_path_buf(),
            bin,
            data,
            check,
            deadline: Instant::now() + self.config.upgrade_timeout,
            generation: self.state_generation,
            attempts: 1,
        })
    }

    /// When the loop must look at the upgrade again.
    pub(super) fn upgrade_timeout(&self) -> Option<Duration> {
        self.upgrade.as_ref().map(|_| Duration::from_millis(20))
    }

    /// Polls the check; on its success, execs.
    pub(super) fn poll_upgrade(&mut self, now: Instant) {
        let Some(upgrade) = self.upgrade.as_mut() else { return };
        let status = match upgrade.check.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) if now < upgrade.deadline => return,
            Ok(None) => {
                let _ = upgrade.check.kill();
                let _ = upgrade.check.wait();
                let secs = self.config.upgrade_timeout.as_secs();
                let stderr = read_pipe(upgrade.check.stderr.take());
                return self.fail_upgrade(format!(
                    "the new binary did not confirm within upgrade_timeout ({secs} s); stderr: {}",
                    tail(&stderr)
                ));
            }
            Err(e) => return self.fail_upgrade(format!("cannot wait for the check: {e}")),
        };
        let stdout = read_pipe(upgrade.check.stdout.take());
        let stderr = read_pipe(upgrade.check.stderr.take());
        let said = String::from_utf8_lossy(&stdout);
        if !status.success() || !said.contains(CHECK_OK) {
            return self.fail_upgrade(format!(
                "the new binary refused the upgrade ({status}): {}",
                tail(if stderr.is_empty() { &stdout } else { &stderr })
            ));
        }
        if upgrade.generation != self.state_generation {
            // the state changed during the check: the new image must get what was checked
            let (client, binary, attempts) = (upgrade.client, upgrade.binary.clone(), upgrade.attempts);
            if attempts >= CHECK_ATTEMPTS {
                return self.fail_upgrade(format!(
                    "the state changed during each of {attempts} checks of the new binary; try again"
                ));
            }
            info!(self.log, "main upgrade: the state changed during the check; checking again");
            self.upgrade = None;
            match self.start_check(client, &binary) {
                Ok(mut again) => {
                    again.attempts = attempts + 1;
                    self.upgrade = Some(again);
                }
                Err(e) => {
                    warn!(self.log, "main upgrade failed: {e}");
                    self.reply(client, Response::failure(format!("upgrade failed, the master keeps serving: {e}")));
                    self.client_writable(client);
                }
            }
            return;
        }
        info!(self.log, "main upgrade: {} accepted the upgrade data; re-executing", upgrade.binary.display());
        self.exec_upgrade();
    }

    fn fail_upgrade(&mut self, why: String) {
        let Some(upgrade) = self.upgrade.take() else { return };
        warn!(self.log, "main upgrade failed: {why}");
        self.reply(upgrade.client, Response::failure(format!("upgrade failed, the master keeps serving: {why}")));
        self.client_writable(upgrade.client);
    }

    /// Replaces this process image; returns only on failure (then nothing changed).
    fn exec_upgrade(&mut self) {
        if let Some(why) = self.upgrade_blocker_after_check() {
            return self.fail_upgrade(why);
        }
        let Some(upgrade) = self.upgrade.as_ref() else { return };
        // the client's PROCESSING answers must be out before the image goes
        if let Some(c) = self.clients.get_mut(&upgrade.client) {
            let _ = c.conn.flush_blocking(Duration::from_secs(1));
        }
        // the data as of now (a worker may have ended, the state changed, during the
        // check): what the check accepted was the format, configuration and state shape
        let client = match self.clients.get(&upgrade.client).map(|c| &c.conn) {
            Some(Conn::Proto(channel)) => Some(channel.stream().as_raw_fd()),
            _ => None,
        };
        let data = self.upgrade_data(client);
        let Some(file) = self.upgrade.as_ref().and_then(|u| u.data.try_clone().ok()) else {
            return self.fail_upgrade("cannot write the upgrade data: no file".into());
        };
        if let Err(e) = self.write_upgrade_data(&file, &data) {
            return self.fail_upgrade(format!("cannot write the upgrade data: {e}"));
        }
        drop(file);
        let Some(upgrade) = self.upgrade.as_ref() else { return };
        let error = {
            let mut fds: Vec<BorrowedFd<'_>> = self.handover_fds(&data, upgrade.data.as_fd());
            // our own binary, for the new image to re-execute if it cannot take over; and
            // the new binary's fd, which an interpreted file re-opens by its path
            fds.extend([self.exe.as_fd(), upgrade.bin.as_fd()]);
            match sozu_upgrade::KeptAcrossExec::new(fds) {
                Err(e) => format!("cannot keep the fds across exec: {e}"),
                Ok(_keep) => {
                    let data_fd = upgrade.data.as_raw_fd().to_string();
                    let rollback =
                        format!("{}:{data_fd}:{}", self.exe.as_raw_fd(), self.config.upgrade_timeout.as_millis());
                    let args: Vec<CString> = ["sozu", "upgraded", "--data-fd", &data_fd, "--rollback", &rollback]
                        .into_iter()
                        .map(|a| CString::new(a).expect("no NUL"))
                        .collect();
                    // returns only on failure; `_keep` then restores every flag
                    let e = nix::unistd::fexecve(upgrade.bin.as_fd(), &args, &environment()).unwrap_err();
                    format!("exec of {} failed: {e}", upgrade.binary.display())
                }
            }
        };
        error!(self.log, "main upgrade: {error}");
        self.fail_upgrade(error);
    }

    fn upgrade_blocker_after_check(&self) -> Option<String> {
        let others = self.tasks.values().filter(|t| t.client.is_some_and(|c| self.clients.contains_key(&c))).count();
        let queued: usize = self.workers.values().map(|w| w.outbox.len()).sum();
        (others > 0 || queued > 0 || self.loading.is_some())
            .then(|| "the master became busy during the check; try again".to_string())
    }

    /// Every fd the data names, borrowed from what owns it, plus the data file.
    fn handover_fds<'a>(&'a self, data: &UpgradeData, data_fd: BorrowedFd<'a>) -> Vec<BorrowedFd<'a>> {
        let mut fds = vec![self.listener.as_fd(), data_fd];
        if let Some(d) = &self.dashboard {
            fds.push(d.as_fd());
        }
        for (_, fd) in self.listeners.http.iter().chain(&self.listeners.tcp) {
            fds.push(fd.as_fd());
        }
        for w in self.workers.values() {
            fds.push(w.channel.stream().as_fd());
            fds.push(w.scm.as_fd());
        }
        if data.client_fd.is_some()
            && let Some(c) = self.upgrade.as_ref().and_then(|u| self.clients.get(&u.client))
            && let Conn::Proto(channel) = &c.conn
        {
            fds.push(channel.stream().as_fd());
        }
        fds
    }
}

/// This process's environment, for an exec.
pub(super) fn environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

fn read_pipe(pipe: Option<impl Read>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut out);
    }
    out
}

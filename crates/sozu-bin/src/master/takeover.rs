//! The new image's side of a main upgrade: `sozu upgrade-check` (run by the old master
//! on the binary it is about to become) and `sozu upgraded` (the master re-executed in
//! place): it takes over the sockets, listeners and workers the upgrade data names.
//!
//! Rollback after the exec: the old master passes `--rollback EXE_FD:DATA_FD:TIMEOUT_MS`
//! (its own binary, the data, `upgrade_timeout`). Before adopting anything the new image
//! keeps a copy of every fd the data names; if it cannot take over (unreadable data, a
//! configuration it refuses, an fd it cannot adopt), panics while taking over, or has
//! not taken over within the timeout (a watchdog thread), it puts every fd back at its
//! number and re-executes the previous binary as `sozu upgraded --rolled-back REASON`,
//! which takes everything over again and answers the client FAILURE with the reason.
//! Same pid all along: the workers never notice. A crash by signal (the process image is
//! gone) is not covered: that is what the check before the exec is for.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use slog::{error, info};
use sozu_config::Config;
use sozu_proto::Response;
use sozu_scm_socket::{Listeners, SavedFd};
use sozu_state::ConfigState;
use sozu_upgrade::UpgradeData;

use super::server::Master;
use super::{open_own_executable, upgrade};

/// Reads the upgrade data from the inherited fd `fd`.
fn read_upgrade_data(fd: i32) -> anyhow::Result<sozu_upgrade::UpgradeData> {
    use std::io::Read;
    let mut file = std::fs::File::from(sozu_scm_socket::adopt_inherited_fd(fd).context("the upgrade data fd")?);
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let mut bytes = Vec::with_capacity(size);
    file.read_to_end(&mut bytes).context("reading the upgrade data")?;
    Ok(sozu_upgrade::decode_owned(bytes)?)
}

/// The configuration carried by upgrade data, checked as at boot.
fn upgrade_config(data: &UpgradeData) -> anyhow::Result<Config> {
    Config::parse(&data.config_text, Path::new(&data.config_path))
        .map_err(|e| anyhow::anyhow!("the configuration in the upgrade data: {e}"))
}

/// The state carried by upgrade data (an encoded `InitialState`), every request applied
/// as at boot; the first one refused is an error.
fn upgrade_state(bytes: &[u8]) -> Result<ConfigState, String> {
    let mut state = ConfigState::new();
    let mut failed = None;
    let mut index = 0;
    sozu_proto::for_each_initial_request(bytes, |r| {
        if failed.is_none()
            && let Err(e) = state.dispatch_owned(r.content)
        {
            failed = Some(format!("record {index}: {e}"));
        }
        index += 1;
    })
    .map_err(|e| format!("the state in the upgrade data: {e}"))?;
    match failed {
        Some(why) => Err(format!("the state in the upgrade data, {why}")),
        None => Ok(state),
    }
}

/// `sozu upgrade-check --data-fd N`: run by a master on the binary it is about to
/// become; says [`upgrade::CHECK_OK`] when it can take the data over.
pub fn upgrade_check(fd: i32) -> anyhow::Result<()> {
    let data = read_upgrade_data(fd)?;
    upgrade_config(&data)?;
    let state = upgrade_state(&data.state).map_err(anyhow::Error::msg)?;
    for w in &data.workers {
        anyhow::ensure!(w.pid > 0, "worker {} has no pid", w.id);
    }
    println!(
        "{} {} (from {}, {} clusters, {} workers)",
        upgrade::CHECK_OK,
        env!("CARGO_PKG_VERSION"),
        data.from_version,
        state.cluster_count(),
        data.workers.len()
    );
    // the process ends now and the master is waiting: freeing 10k clusters one by one
    // would only delay its exit
    std::mem::forget(state);
    Ok(())
}

/// What a new image needs to hand everything back to the binary it replaced.
struct Rollback {
    exe: SavedFd,
    data: SavedFd,
    named: Vec<SavedFd>,
}

impl Rollback {
    /// From `EXE_FD:DATA_FD[:TIMEOUT_MS]`, before anything reads or adopts them; with
    /// the time this image has to take over (`upgrade_timeout`, 10 s if not given).
    fn save(spec: &str) -> anyhow::Result<(Self, Duration)> {
        let mut parts = spec.split(':');
        let (Some(exe), Some(data)) = (parts.next(), parts.next()) else {
            anyhow::bail!("--rollback: expected EXE_FD:DATA_FD[:TIMEOUT_MS], got {spec:?}");
        };
        let timeout = match parts.next() {
            Some(ms) => Duration::from_millis(ms.parse().with_context(|| format!("--rollback: bad timeout {ms:?}"))?),
            None => Duration::from_secs(10),
        };
        let fd = |s: &str| -> anyhow::Result<SavedFd> {
            let raw: i32 = s.parse().with_context(|| format!("--rollback: bad fd {s:?}"))?;
            SavedFd::save(raw).with_context(|| format!("--rollback: fd {raw}"))
        };
        Ok((Rollback { exe: fd(exe)?, data: fd(data)?, named: Vec::new() }, timeout))
    }

    /// Copies every fd the data names (the first failure stops: nothing was adopted yet).
    fn save_named(&mut self, fds: &[i32]) -> anyhow::Result<()> {
        for fd in fds {
            self.named.push(SavedFd::save(*fd).with_context(|| format!("the upgrade data names fd {fd}"))?);
        }
        Ok(())
    }

    /// The copies' own numbers (kept open by the sweep of stray fds).
    fn copies(&self) -> impl Iterator<Item = i32> + '_ {
        [&self.exe, &self.data].into_iter().chain(&self.named).map(SavedFd::copy_number)
    }

    /// Puts every fd back and re-executes the previous binary; returns only on failure.
    fn exec(&self, why: &str) -> anyhow::Error {
        use std::ffi::CString;
        let restored = (|| -> std::io::Result<()> {
            for saved in self.named.iter().chain([&self.data]) {
                saved.restore()?;
            }
            nix::unistd::lseek(self.data.copy(), 0, nix::unistd::Whence::SeekSet)?;
            Ok(())
        })();
        if let Err(e) = restored {
            return anyhow::anyhow!("cannot put the fds back: {e}");
        }
        let args: Vec<CString> =
            ["sozu", "upgraded", "--data-fd", &self.data.number().to_string(), "--rolled-back", why]
                .into_iter()
                .filter_map(|a| CString::new(a).ok())
                .collect();
        let fault = format!("{FAULT}=");
        let env: Vec<CString> =
            upgrade::environment().into_iter().filter(|kv| !kv.as_bytes().starts_with(fault.as_bytes())).collect();
        let e = nix::unistd::fexecve(self.exe.copy(), &args, &env).unwrap_err();
        anyhow::anyhow!("cannot re-execute the previous binary: {e}")
    }
}

/// Fault injection for the rollback tests: `panic` or `hang` while taking over (never
/// passed on to the previous binary re-executed by a rollback).
const FAULT: &str = "SOZU_UPGRADED_FAULT";

/// The rollback while this image takes over. Whoever takes it first (a failure, a
/// panic, the `upgrade_timeout` watchdog, or the success that disarms it) decides.
static ARMED: Mutex<Option<Rollback>> = Mutex::new(None);

fn disarm() -> Option<Rollback> {
    ARMED.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Re-executes the previous binary if the rollback is still armed; returns why that
/// failed, or `None` when it was not armed.
fn fire(why: &str) -> Option<anyhow::Error> {
    let rollback = disarm()?;
    let why = one_line(why);
    eprintln!("sozu upgraded: {why}; re-executing the previous binary");
    Some(rollback.exec(&why))
}

/// Arms `rollback`: a panic, or not having taken over within `timeout`, fires it.
fn arm(rollback: Rollback, timeout: Duration) {
    *ARMED.lock().unwrap_or_else(PoisonError::into_inner) = Some(rollback);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if let Some(failed) = fire(&format!("the new image panicked: {info}")) {
            eprintln!("sozu upgraded: {failed:#}");
        }
    }));
    let watchdog = std::thread::Builder::new().name("upgrade-watchdog".into()).spawn(move || {
        std::thread::sleep(timeout);
        let why = format!("the new image did not take over within upgrade_timeout ({} ms)", timeout.as_millis());
        if let Some(failed) = fire(&why) {
            eprintln!("sozu upgraded: {failed:#}");
        }
    });
    if let Err(e) = watchdog {
        eprintln!("sozu upgraded: no watchdog for the take-over: {e}");
    }
}

/// One line, no control characters, at most 600 bytes: what travels in `--rolled-back`.
fn one_line(text: &str) -> String {
    let mut line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > 600 {
        let cut = (0..=600).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
        line.truncate(cut);
    }
    line
}

/// `sozu upgraded --data-fd N [--rollback EXE:DATA] [--rolled-back WHY]`: the master
/// after a main upgrade (same pid): adopts the sockets, listeners and workers, answers
/// the client that asked, and serves. If it cannot, and `--rollback` says how, the
/// previous binary is re-executed with everything put back.
pub fn upgraded(fd: i32, rollback: Option<&str>, rolled_back: Option<String>) -> anyhow::Result<bool> {
    let mut timeout = Duration::from_secs(10);
    let mut saved = match rollback.map(Rollback::save) {
        Some(Ok((saved, t))) => {
            timeout = t;
            Some(saved)
        }
        Some(Err(e)) => {
            eprintln!("sozu upgraded: no rollback possible: {e:#}");
            None
        }
        None => None,
    };
    let give_back = |saved: Option<&Rollback>, e: anyhow::Error| -> anyhow::Error {
        match saved {
            Some(saved) => {
                let why = one_line(&format!("{e:#}"));
                eprintln!("sozu upgraded: {why}; re-executing the previous binary");
                let failed = saved.exec(&why);
                e.context(format!("{failed:#}"))
            }
            None => e,
        }
    };
    let data = match read_upgrade_data(fd) {
        Ok(data) => data,
        Err(e) => return Err(give_back(saved.as_ref(), e)),
    };
    if let Some(s) = saved.as_mut()
        && let Err(e) = s.save_named(&data.fds())
    {
        return Err(give_back(saved.as_ref(), e));
    }
    // what the image inherited and was not told about (the previous binary's fd, a
    // wrapper script's own fds) is closed before anything else is opened
    let mut keep = data.fds();
    keep.extend(saved.iter().flat_map(Rollback::copies));
    if let Err(e) = sozu_scm_socket::close_inherited_except(&keep) {
        eprintln!("sozu upgraded: cannot close stray inherited fds: {e}");
    }
    if let Some(saved) = saved {
        arm(saved, timeout);
    }
    match take_over(data, rolled_back.as_deref()) {
        Ok(mut master) => {
            drop(disarm());
            Ok(master.run())
        }
        Err(e) => match fire(&format!("{e:#}")) {
            Some(failed) => Err(e.context(format!("{failed:#}"))),
            None => Err(e),
        },
    }
}

fn take_over(mut data: UpgradeData, rolled_back: Option<&str>) -> anyhow::Result<Master> {
    match std::env::var(FAULT).as_deref() {
        Ok("panic") => panic!("{FAULT}=panic"),
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
    let config = upgrade_config(&data)?;
    // those bytes are the encoded initial state of exactly this state: the next worker
    // started (an upgrade's) gets them without encoding anything
    let encoded: std::sync::Arc<[u8]> = std::sync::Arc::from(std::mem::take(&mut data.state));
    // the state is built on another thread while this one takes the sockets and workers
    // over and answers; the check built it from these very bytes with this very binary
    let bytes = std::sync::Arc::clone(&encoded);
    let build = std::thread::Builder::new()
        .name("state".into())
        .spawn(move || upgrade_state(&bytes))
        .context("cannot start the thread building the state")?;
    let json = config.log_format == sozu_config::LogFormat::Json;
    let (log, level) = crate::logging::build(&config.log_level, &config.log_target, json, "MAIN")
        .with_context(|| format!("cannot open log_target {}", config.log_target))?;
    let adopt = |fd: i32| sozu_scm_socket::adopt_inherited_fd(fd).with_context(|| format!("inherited fd {fd}"));
    let command_socket = std::os::unix::net::UnixListener::from(adopt(data.command_socket_fd)?);
    command_socket.set_nonblocking(true)?;
    let dashboard = match data.dashboard_fd {
        Some(fd) => {
            let socket = std::os::unix::net::UnixListener::from(adopt(fd)?);
            socket.set_nonblocking(true)?;
            Some(socket)
        }
        None => None,
    };
    let mut listeners = Listeners::default();
    for l in &data.listeners {
        let address: std::net::SocketAddr = l.address.parse().with_context(|| format!("listener {}", l.address))?;
        let list = if l.protocol == "http" { &mut listeners.http } else { &mut listeners.tcp };
        list.push((address, adopt(l.fd)?));
    }
    let exe = open_own_executable()?;
    let mut master = Master::new(config, log, level, ConfigState::new(), (command_socket, dashboard), listeners, exe)?;
    master.state = super::state_cell::StateCell::building(build);
    master.config_text = data.config_text.clone();
    master.initial_state = Some((master.state_generation, encoded));
    master.adopt(&data, rolled_back)?;
    Ok(master)
}

impl Master {
    /// The new image takes over what the upgrade data names: workers (still our
    /// children: same pid), id counters, and the client that asked, which gets the OK.
    fn adopt(&mut self, data: &UpgradeData, rolled_back: Option<&str>) -> anyhow::Result<()> {
        use anyhow::Context;
        use sozu_proto::{EncodedWorkerRequest, RunState, WorkerResponse};
        use std::os::unix::net::UnixStream as StdUnixStream;
        self.next_worker_id = data.next_worker_id;
        self.next_task_id = data.next_task_id;
        self.next_client_id = data.next_client_id;
        self.boot_generation = data.boot_generation + 1;
        let limits = self.limits();
        for w in &data.workers {
            let adopt =
                |fd: i32| sozu_scm_socket::adopt_inherited_fd(fd).with_context(|| format!("worker {} fd {fd}", w.id));
            let parts = (|| -> anyhow::Result<_> {
                let stream = StdUnixStream::from(adopt(w.channel_fd)?);
                stream.set_nonblocking(true)?;
                let channel: sozu_channel::Channel<EncodedWorkerRequest, WorkerResponse> =
                    sozu_channel::Channel::new(mio::net::UnixStream::from_std(stream), limits, limits);
                let scm = sozu_scm_socket::ScmSocket::new(StdUnixStream::from(adopt(w.scm_fd)?))?;
                scm.set_write_timeout(Some(super::workers::SCM_SEND_TIMEOUT))?;
                Ok((channel, scm))
            })();
            let (mut channel, scm) = match parts {
                Ok(parts) => parts,
                Err(e) => {
                    // a worker we cannot talk to is of no use: end it, the others go on
                    error!(self.log, "main upgrade: cannot adopt worker {} (pid {}): {e:#}; killing it", w.id, w.pid);
                    let mut p = super::process::Process::adopt(w.pid);
                    let _ = p.kill();
                    let _ = p.wait();
                    continue;
                }
            };
            let token = self.token();
            channel.register(self.poll.registry(), token)?;
            self.worker_tokens.insert(token, w.id);
            self.workers.insert(
                w.id,
                super::workers::WorkerSession {
                    pid: w.pid,
                    token,
                    channel,
                    outbox: Default::default(),
                    run_state: RunState::try_from(w.run_state).unwrap_or(RunState::Running),
                    child: super::process::Process::adopt(w.pid),
                    scm,
                },
            );
        }
        let now = Instant::now();
        // old workers that were draining go on draining, under a new deadline
        let draining: Vec<u32> =
            self.workers.iter().filter(|(_, w)| w.run_state == RunState::Stopping).map(|(id, _)| *id).collect();
        for id in draining {
            let task_id = self.next_task_id;
            self.next_task_id += 1;
            let task = super::tasks::Task {
                client: None,
                kind: super::tasks::TaskKind::UpgradeDrain { old: id, new: id },
                outstanding: [(id, 1)].into(),
                asked: vec![id],
                contents: Default::default(),
                failures: Default::default(),
                notes: Default::default(),
                deadline: Some(now + self.config.soft_stop_timeout),
                started: now,
                audit: None,
            };
            self.tasks.insert(task_id, task);
        }
        // a slot whose worker was waiting to be relaunched is relaunched now
        let running = self.running_workers();
        for _ in running..self.config.worker_count as usize {
            self.relaunch_at.push(now);
        }
        let client = match data.client_fd {
            Some(fd) => {
                let stream = StdUnixStream::from(sozu_scm_socket::adopt_inherited_fd(fd)?);
                stream.set_nonblocking(true)?;
                self.register_client(mio::net::UnixStream::from_std(stream), false)
            }
            None => None,
        };
        let pid = std::process::id();
        let version = env!("CARGO_PKG_VERSION");
        let generation = self.boot_generation;
        let (verb, outcome, answer) = match rolled_back {
            None => {
                info!(
                    self.log,
                    "main upgrade done: sozu {version} (from {}) runs as pid {pid}, boot generation {generation}, {} workers adopted{}{}",
                    data.from_version,
                    data.workers.len(),
                    if self.state.is_building() { ", state being built" } else { "" },
                    if data.subscribers > 0 {
                        format!(", {} event subscribers disconnected", data.subscribers)
                    } else {
                        String::new()
                    }
                );
                let message = format!(
                    "Upgrade successful: sozu {version} runs the main process (pid {pid}, boot generation {generation})"
                );
                ("main_upgraded", Ok(()), Response::ok(message, None))
            }
            Some(why) => {
                error!(
                    self.log,
                    "main upgrade rolled back: the new image failed after the exec ({why}); sozu {version}, the previous binary, serves again as pid {pid}"
                );
                let message = format!(
                    "upgrade failed, the master keeps serving: the new binary failed after the exec ({why}); the previous binary (sozu {version}, pid {pid}) took everything back"
                );
                let outcome = Err((audit::ErrorCode::Other, format!("rolled back: {why}")));
                ("main_upgrade_rolled_back", outcome, Response::failure(message))
            }
        };
        let _ = crate::sd_notify::notify(&format!(
            "MAINPID={pid}\nREADY=1\nSTATUS={} workers running",
            self.running_workers()
        ));
        let d = super::records::Described {
            verb,
            target: format!("main:{version} generation:{generation}"),
            cluster_id: None,
            backend_id: None,
            event: None,
        };
        let _ = self.write_attempt(client, ulid::Ulid::new(), &d, outcome, "");
        if let Some(token) = client {
            self.reply(token, answer);
            self.client_writable(token);
        }
        Ok(())
    }
}

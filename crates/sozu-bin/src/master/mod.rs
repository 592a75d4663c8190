//! The master: boot sequence, then the event loop in [`server`].

mod affinity;
mod batch;
mod conn;
mod dashboard;
mod dispatch;
mod listen;
mod loading;
mod metrics;
mod process;
mod records;
mod reload;
mod server;
mod state_cell;
mod takeover;
mod tasks;
mod upgrade;
mod workers;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use slog::{Logger, info, warn};
use sozu_config::{Config, Protocol};
use sozu_scm_socket::Listeners;

pub use server::Master;
pub use takeover::{upgrade_check, upgraded};

/// Removes what boot created if boot fails half-way.
struct BootGuard {
    socket: Option<PathBuf>,
    dashboard: Option<PathBuf>,
    pid_file: Option<PathBuf>,
}

impl Drop for BootGuard {
    fn drop(&mut self) {
        for path in [self.socket.take(), self.dashboard.take(), self.pid_file.take()].into_iter().flatten() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `sozu start`: boots the master and runs it until it stops. Returns whether the stop
/// was clean.
pub fn start(config_path: &Path, strict: bool) -> anyhow::Result<bool> {
    let config_text = std::fs::read_to_string(config_path)
        .with_context(|| format!("invalid configuration: cannot read {}", config_path.display()))?;
    let absolute = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let config = Config::parse(&config_text, &absolute).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if !config.unknown_keys().is_empty() {
        let keys = config.unknown_keys().join(", ");
        if strict {
            bail!("unknown configuration keys (--strict): {keys}");
        }
        eprintln!("warning: unknown configuration keys ignored: {keys}");
    }
    let json = config.log_format == sozu_config::LogFormat::Json;
    let (log, level) = crate::logging::build(&config.log_level, &config.log_target, json, "MAIN")
        .with_context(|| format!("cannot open log_target {}", config.log_target))?;
    raise_nofile_limit(&config, &log);

    let exe = open_own_executable()?;
    let mut guard = BootGuard { socket: None, dashboard: None, pid_file: None };
    let command_socket = bind_unix_socket(&config.command_socket)?;
    guard.socket = Some(config.command_socket.clone());
    let dashboard_socket = match &config.dashboard_socket {
        Some(path) => {
            let socket = bind_unix_socket(path)?;
            guard.dashboard = Some(path.clone());
            Some(socket)
        }
        None => None,
    };
    if let Some(pid_file) = &config.pid_file_path {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid_file_path {}", pid_file.display()))?;
        guard.pid_file = Some(pid_file.clone());
    }

    let mut listeners = bind_listeners(&config)?;
    let mut state =
        config.state().map_err(|e| anyhow::anyhow!("configuration {}: {e}", config.config_path.display()))?;
    if let Some(saved) = &config.saved_state
        && saved.exists()
    {
        let loaded = sozu_state::load_file(&state, saved, config.max_command_buffer_size)
            .map_err(|e| anyhow::anyhow!("saved_state {}: {e}", saved.display()))?;
        info!(log, "replayed saved_state {}: {} records", saved.display(), loaded.requests.len());
        state = loaded.state;
        // listeners the saved state has and the configuration does not (added while
        // running before the save): their sockets too
        let (http, tcp) = state.plain_listener_addresses();
        for (addresses, kind) in [(http, &mut listeners.http), (tcp, &mut listeners.tcp)] {
            for address in addresses {
                if !kind.iter().any(|(a, _)| *a == address) {
                    let socket = TcpListener::bind(address)
                        .with_context(|| format!("saved_state {}: cannot bind listener {address}", saved.display()))?;
                    socket.set_nonblocking(true)?;
                    kind.push((address, OwnedFd::from(socket)));
                }
            }
        }
    }

    let mut master = Master::new(config, log, level, state, (command_socket, dashboard_socket), listeners, exe)?;
    master.config_text = config_text;
    guard.socket = None;
    guard.dashboard = None;
    guard.pid_file = None;
    master.boot_workers()?;
    Ok(master.run())
}

/// RLIMIT_NOFILE: two fds per connection plus room for the master's own.
fn raise_nofile_limit(config: &Config, log: &Logger) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = config.max_connections.saturating_mul(2).saturating_add(256);
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < wanted => {
            let target = wanted.min(hard);
            match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                Ok(()) if target < wanted => warn!(
                    log,
                    "RLIMIT_NOFILE raised to {target} (the hard limit), below the {wanted} wanted for max_connections = {}",
                    config.max_connections
                ),
                Ok(()) => info!(log, "RLIMIT_NOFILE raised from {soft} to {target}"),
                Err(e) => warn!(log, "cannot raise RLIMIT_NOFILE from {soft} to {target}: {e}"),
            }
        }
        Ok((soft, _)) => info!(log, "RLIMIT_NOFILE is {soft}, enough for max_connections = {}", config.max_connections),
        Err(e) => warn!(log, "cannot read RLIMIT_NOFILE: {e}"),
    }
}

/// An fd on our own executable, so workers run the same binary even if the file on
/// disk is replaced (Sōzu #515).
fn open_own_executable() -> anyhow::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    open("/proc/self/exe", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).context("cannot open /proc/self/exe")
}

/// Binds the command (or dashboard) socket with mode 0600 from the start (umask during bind), after
/// refusing to run beside a live master and removing a stale socket.
fn bind_unix_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("a sozu master is already running on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("cannot bind the command socket {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The master creates every configured listener and keeps its own copy of each fd.
fn bind_listeners(config: &Config) -> anyhow::Result<Listeners> {
    let mut listeners = Listeners::default();
    for l in &config.listeners {
        let socket = TcpListener::bind(l.address).with_context(|| format!("cannot bind listener {}", l.address))?;
        socket.set_nonblocking(true)?;
        let kind = match l.protocol {
            Protocol::Http => &mut listeners.http,
            Protocol::Tcp => &mut listeners.tcp,
        };
        kind.push((l.address, OwnedFd::from(socket)));
    }
    Ok(listeners)
}

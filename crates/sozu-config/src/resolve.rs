//! Validation and defaults: from the file as written to a [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sozu_proto::request::RequestType as R;
use sozu_proto::{
    ActivateListener, AddBackend, Cluster, HttpListenerConfig, ListenerType, LoadBalancingAlgorithms,
    LoadBalancingParams, PathRule, PathRuleKind, Request, RequestHttpFrontend, RequestTcpFrontend, RulePosition,
    TcpListenerConfig,
};
use sozu_state::{ConfigState, resolve_path};

use crate::file::{FileCluster, FileConfig, FileListener};

/// A configuration error: which key, and what is wrong or allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`clusters.api.backends[0].address`), or the file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Listener and cluster protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http,
    /// TCP.
    Tcp,
}

/// A listener of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// Protocol.
    pub protocol: Protocol,
    /// Bound address.
    pub address: SocketAddr,
    /// The request that adds it.
    pub request: Request,
}

/// A cluster of the configuration, as requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// Id.
    pub id: String,
    /// AddCluster, then its frontends, then its backends.
    pub requests: Vec<Request>,
}

/// A validated configuration, every default applied and every path absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from.
    pub config_path: PathBuf,
    /// Command socket path.
    pub command_socket: PathBuf,
    /// Number of workers.
    pub worker_count: u16,
    /// Restart crashed workers.
    pub worker_automatic_restart: bool,
    /// Deadline of a task sent to workers.
    pub worker_timeout: Duration,
    /// First delay before relaunching a crashed worker; doubles with each crash.
    pub worker_restart_delay: Duration,
    /// Ceiling of that delay.
    pub worker_restart_max_delay: Duration,
    /// Crashes tolerated within `worker_restart_window` before giving up on a slot.
    pub worker_max_restarts: u32,
    /// The window crashes are counted in (a stable period resets the count).
    pub worker_restart_window: Duration,
    /// How often each worker is sent a `Status` to detect a hung one (`None`: off).
    pub worker_health_check_interval: Option<Duration>,
    /// Consecutive unanswered checks after which a worker is killed and relaunched.
    pub worker_health_check_failures: u32,
    /// Drain deadline of a soft stop; remaining workers are then hard-stopped.
    pub soft_stop_timeout: Duration,
    /// How long a main upgrade waits for the new binary to confirm (default 10 s).
    pub upgrade_timeout: Duration,
    /// The binary a main upgrade runs; default: the path the master was started from.
    pub upgrade_binary: Option<PathBuf>,
    /// Most old workers draining at once after worker upgrades (default 4); a worker
    /// upgrade beyond it is refused until one ends.
    pub max_draining_workers: usize,
    /// The JSON-lines socket for dashboards and scripts (mode 0600), if any.
    pub dashboard_socket: Option<PathBuf>,
    /// Longest line accepted on the dashboard socket.
    pub dashboard_max_frame_bytes: usize,
    /// Event lines a dashboard subscriber may have unread before events are dropped
    /// (it is then told how many with a `lagged` notice).
    pub dashboard_subscriber_queue: usize,
    /// Events kept for replay (`events.subscribe` with `since`).
    pub event_journal_size: usize,
    /// CLI per-answer timeout.
    pub ctl_command_timeout: Duration,
    /// Initial channel buffer size.
    pub command_buffer_size: usize,
    /// Largest channel buffer (and frame).
    pub max_command_buffer_size: usize,
    /// State file replayed at start and written by `automatic_state_save`.
    pub saved_state: Option<PathBuf>,
    /// Save the state after each committed mutation.
    pub automatic_state_save: bool,
    /// uids allowed to send commands (`None`: anyone who can open the socket).
    pub command_allowed_uids: Option<Vec<u32>>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// `stdout`, `stderr` or `file:///path`.
    pub log_target: String,
    /// Text or JSON.
    pub log_format: LogFormat,
    /// Audit text file.
    pub audit_logs_target: Option<PathBuf>,
    /// Audit JSON (hash-chained) file.
    pub audit_logs_json_target: Option<PathBuf>,
    /// Refuse a mutation whose audit record cannot be written.
    pub audit_fail_closed: bool,
    /// Pid file.
    pub pid_file_path: Option<PathBuf>,
    /// Client connections per worker.
    pub max_connections: u64,
    /// Worker buffer pool.
    pub min_buffers: u64,
    /// Worker buffer pool ceiling.
    pub max_buffers: u64,
    /// Size of one worker buffer.
    pub buffer_size: u64,
    /// Emit ActivateListener for every listener.
    pub activate_listeners: bool,
    /// Pin each worker to one CPU (of those the master may run on), spreading them evenly.
    pub handle_process_affinity: bool,
    /// Listeners, in file order.
    pub listeners: Vec<ListenerSpec>,
    /// Clusters, by id.
    pub clusters: Vec<ClusterSpec>,
    unknown: Vec<String>,
}

const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// Reads up to the first line that starts with `[` (leading blanks aside), and returns
/// the text before it and that line (empty at the end of the file). If that text parses
/// as TOML, the cut did not fall inside a value, so the line is a table header and every
/// top-level key of the file is in the text.
fn top_level(file: &mut impl std::io::BufRead) -> std::io::Result<(String, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if file.read_line(&mut line)? == 0 || line.trim_start().starts_with('[') {
            return Ok((text, line));
        }
        text.push_str(&line);
    }
}

fn int<T: TryFrom<i64>>(key: &str, v: Option<i64>, default: T, allowed: &str) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => T::try_from(v).map_err(|_| err(key, format!("{v} is out of range; allowed: {allowed}"))),
    }
}

/// One of `options` by name, in any case (absent: the first option's value); an error
/// names the key and lists the names.
fn choice(key: &str, value: Option<&str>, options: &[(&str, Option<i32>)]) -> Result<Option<i32>, ConfigError> {
    let Some(value) = value else { return Ok(options.first().and_then(|o| o.1)) };
    match options.iter().find(|(name, _)| name.eq_ignore_ascii_case(value)) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<&str> = options.iter().map(|o| o.0).collect();
            Err(err(key, format!("{value:?}; allowed: {}", names.join(", "))))
        }
    }
}

/// A frontend's header edits: `position` (`REQUEST`, `RESPONSE`, `BOTH`), `key`, and
/// `val` (empty or absent: the field is removed).
fn headers(fk: &str, list: &[crate::file::FileHeader]) -> Result<Vec<sozu_proto::Header>, ConfigError> {
    use sozu_proto::HeaderPosition as P;
    let mut out = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let hk = format!("{fk}.headers[{i}]");
        let options = [
            ("REQUEST", Some(P::Request as i32)),
            ("RESPONSE", Some(P::Response as i32)),
            ("BOTH", Some(P::Both as i32)),
        ];
        let position = match h.position.as_deref() {
            Some(p) => choice(&format!("{hk}.position"), Some(p), &options)?.unwrap_or_default(),
            None => return Err(err(format!("{hk}.position"), "missing; allowed: REQUEST, RESPONSE, BOTH")),
        };
        let key = h.key.clone().ok_or_else(|| err(format!("{hk}.key"), "missing; the name of the header field"))?;
        out.push(sozu_proto::Header { position, key, val: h.val.clone().unwrap_or_default() });
    }
    Ok(out)
}

/// An optional TCP port, 1 to 65535.
fn port(key: &str, v: Option<i64>) -> Result<Option<u32>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    match u16::try_from(v) {
        Ok(p) if p > 0 => Ok(Some(u32::from(p))),
        _ => Err(err(key, format!("{v} is out of range; allowed: 1 to 65535"))),
    }
}

fn positive(key: &str, v: Option<i64>, default: u64) -> Result<u64, ConfigError> {
    let v: u64 = int(key, v, default, "a positive integer")?;
    if v == 0 { Err(err(key, "must be greater than 0")) } else { Ok(v) }
}

fn millis(key: &str, v: Option<i64>, default: u64) -> Result<Duration, ConfigError> {
    positive(key, v, default).map(Duration::from_millis)
}

fn secs(key: &str, v: Option<i64>, default: u64) -> Result<Duration, ConfigError> {
    positive(key, v, default).map(Duration::from_secs)
}

fn addr(key: &str, v: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let v = v.ok_or_else(|| err(key, "missing; expected an address such as \"127.0.0.1:8080\""))?;
    v.parse().map_err(|_| err(key, format!("{v:?} is not an ip:port address such as \"127.0.0.1:8080\"")))
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read the configuration file: {e}")))?;
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| err("", e.to_string()))?.join(path)
        };
        Self::parse(&text, &absolute)
    }

    /// Parses and validates `text` as the file at `path` (used to resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let value: toml::Table =
            text.parse().map_err(|e: toml::de::Error| err(path.display().to_string(), format!("invalid TOML: {e}")))?;
        Self::from_table(value, path)
    }

    /// [`parse`](Self::parse) of an already parsed TOML table.
    fn from_table(value: toml::Table, path: &Path) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let file: FileConfig =
            serde_ignored::deserialize(toml::Value::Table(value), |p| unknown.push(p.to_string().replace(".?", "")))
                .map_err(|e| err(path.display().to_string(), e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let at = |p: &str| resolve_path(&dir, Path::new(p));

        let log_level = file.log_level.unwrap_or_else(|| "info".into()).to_ascii_lowercase();
        if !LEVELS.contains(&log_level.as_str()) {
            return Err(err("log_level", format!("{log_level:?} is not a level; allowed: {}", LEVELS.join(", "))));
        }
        let log_target = file.log_target.unwrap_or_else(|| "stdout".into());
        if !(log_target == "stdout" || log_target == "stderr" || log_target.starts_with("file://")) {
            return Err(err(
                "log_target",
                format!("{log_target:?} is not supported; allowed: stdout, stderr, file:///path"),
            ));
        }
        let log_format = match file.log_format.as_deref().unwrap_or("text") {
            "text" | "ascii" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(err("log_format", format!("{other:?} is not a format; allowed: text, json"))),
        };
        let command_buffer_size = positive("command_buffer_size", file.command_buffer_size, 1_000_000)? as usize;
        let max_command_buffer_size =
            positive("max_command_buffer_size", file.max_command_buffer_size, 2_000_000)? as usize;
        if max_command_buffer_size < command_buffer_size {
            return Err(err("max_command_buffer_size", "must be at least command_buffer_size"));
        }
        let saved_state = file.saved_state.as_deref().map(at);
        let automatic_state_save = file.automatic_state_save.unwrap_or(false);
        if automatic_state_save && saved_state.is_none() {
            return Err(err("automatic_state_save", "needs saved_state to be set"));
        }
        let command_allowed_uids = file
            .command_allowed_uids
            .map(|uids| {
                uids.into_iter()
                    .map(|u| u32::try_from(u).map_err(|_| err("command_allowed_uids", format!("{u} is not a uid"))))
                    .collect::<Result<Vec<u32>, _>>()
            })
            .transpose()?;
        let min_buffers: u64 = int("min_buffers", file.min_buffers, 1, "0 or more")?;
        let max_buffers = positive("max_buffers", file.max_buffers, 1000)?;
        let defaults = Timeouts {
            front: int("front_timeout", file.front_timeout, 60, "seconds, 0 or more")?,
            back: int("back_timeout", file.back_timeout, 30, "seconds, 0 or more")?,
            connect: int("connect_timeout", file.connect_timeout, 3, "seconds, 0 or more")?,
            request: int("request_timeout", file.request_timeout, 10, "seconds, 0 or more")?,
        };

        let base = path.parent().unwrap_or(Path::new("."));
        let mut listeners = Vec::new();
        for (i, l) in file.listeners.unwrap_or_default().iter().enumerate() {
            let spec = listener(&format!("listeners[{i}]"), l, &defaults, base)?;
            if listeners.iter().any(|o: &ListenerSpec| o.address == spec.address) {
                return Err(err(format!("listeners[{i}].address"), format!("{} is used twice", spec.address)));
            }
            listeners.push(spec);
        }
        let mut clusters = Vec::new();
        for (id, c) in file.clusters.unwrap_or_default() {
            clusters.push(cluster(&id, &c, &listeners, base)?);
        }

        Ok(Config {
            config_path: path.to_path_buf(),
            command_socket: at(file.command_socket.as_deref().unwrap_or("sozu.sock")),
            worker_count: int("worker_count", file.worker_count, 2, "1 to 65535")?,
            worker_automatic_restart: file.worker_automatic_restart.unwrap_or(true),
            worker_timeout: secs("worker_timeout", file.worker_timeout, 10)?,
            worker_restart_delay: millis("worker_restart_delay_ms", file.worker_restart_delay_ms, 500)?,
            worker_restart_max_delay: millis("worker_restart_max_delay_ms", file.worker_restart_max_delay_ms, 30_000)?,
            worker_health_check_interval: match int::<u64>(
                "worker_health_check_interval",
                file.worker_health_check_interval,
                0,
                "seconds, 0 for off",
            )? {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
            worker_health_check_failures: int::<u32>(
                "worker_health_check_failures",
                file.worker_health_check_failures,
                3,
                "1 or more",
            )?
            .max(1),
            soft_stop_timeout: Duration::from_secs(int("soft_stop_timeout", file.soft_stop_timeout, 30, "seconds")?),
            upgrade_timeout: Duration::from_secs(
                int("upgrade_timeout", file.upgrade_timeout, 10u64, "seconds, 1 or more")?.max(1),
            ),
            upgrade_binary: file.upgrade_binary.as_deref().map(at),
            max_draining_workers: int("max_draining_workers", file.max_draining_workers, 4usize, "1 or more")?.max(1),
            dashboard_socket: file.dashboard_socket.as_deref().map(at),
            dashboard_max_frame_bytes: positive("dashboard_max_frame_bytes", file.dashboard_max_frame_bytes, 1 << 20)?
                as usize,
            dashboard_subscriber_queue: positive("dashboard_subscriber_queue", file.dashboard_subscriber_queue, 256)?
                as usize,
            event_journal_size: int("event_journal_size", file.event_journal_size, 1024, "0 or more")?,
            worker_max_restarts: int("worker_max_restarts", file.worker_max_restarts, 10, "0 to 4294967295")?,
            worker_restart_window: secs("worker_restart_window", file.worker_restart_window, 60)?,
            ctl_command_timeout: Duration::from_millis(int(
                "ctl_command_timeout",
                file.ctl_command_timeout,
                1000,
                "milliseconds, 0 for none",
            )?),
            command_buffer_size,
            max_command_buffer_size,
            saved_state,
            automatic_state_save,
            command_allowed_uids,
            log_level,
            log_target,
            log_format,
            audit_logs_target: file.audit_logs_target.as_deref().map(at),
            audit_logs_json_target: file.audit_logs_json_target.as_deref().map(at),
            audit_fail_closed: file.audit_fail_closed.unwrap_or(false),
            pid_file_path: file.pid_file_path.as_deref().map(at),
            max_connections: positive("max_connections", file.max_connections, 10_000)?,
            min_buffers: min_buffers.min(max_buffers),
            max_buffers,
            buffer_size: positive("buffer_size", file.buffer_size, 16_393)?,
            activate_listeners: file.activate_listeners.unwrap_or(true),
            handle_process_affinity: file.handle_process_affinity.unwrap_or(false),
            listeners,
            clusters,
            unknown,
        })
        .and_then(|c| if c.worker_count == 0 { Err(err("worker_count", "must be at least 1")) } else { Ok(c) })
    }

    /// What a client needs (the socket, timeouts, buffer sizes), read leniently: the rest
    /// of the file may be invalid (a client must still reach the master to reload a
    /// fixed file or read why it was refused). Those keys are top-level ones, so only the
    /// part of the file before its first table header is parsed: a CLI call costs the
    /// same with 10,000 clusters in the file as with none. Only unreadable TOML in that
    /// part is an error; `sozu config check` validates the whole file.
    pub fn load_client(path: &Path) -> Result<Config, ConfigError> {
        let unreadable =
            |e: std::io::Error| err(path.display().to_string(), format!("cannot read the configuration file: {e}"));
        let invalid = |e: toml::de::Error| err(path.display().to_string(), format!("invalid TOML: {e}"));
        let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(unreadable)?);
        let (mut text, header) = top_level(&mut file).map_err(unreadable)?;
        let table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(e) if header.is_empty() => return Err(invalid(e)),
            // the cut fell inside a value (a line of a multi-line array or string that
            // starts with `[`): the whole file, which also names the real error
            Err(_) => {
                text.push_str(&header);
                std::io::Read::read_to_string(&mut file, &mut text).map_err(unreadable)?;
                text.parse().map_err(invalid)?
            }
        };
        let mut table = table;
        let mut minimal = toml::Table::new();
        for key in ["command_socket", "ctl_command_timeout", "command_buffer_size", "max_command_buffer_size"] {
            if let Some(v) = table.remove(key) {
                minimal.insert(key.into(), v);
            }
        }
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| err("", e.to_string()))?.join(path)
        };
        Self::from_table(minimal, &absolute)
    }

    /// The state the file stands for: [`requests`](Self::requests) applied to an empty
    /// state, as a master does at boot. The first request refused is an error naming its
    /// listener or cluster (a name with a control character, say, which only the state
    /// checks); `sozu config check`, `sozu start` and a reload all go through here.
    pub fn state(&self) -> Result<ConfigState, ConfigError> {
        let mut state = ConfigState::new();
        for (i, l) in self.listeners.iter().enumerate() {
            state.dispatch(&l.request).map_err(|e| err(format!("listeners[{i}]"), e.to_string()))?;
        }
        for c in &self.clusters {
            for r in &c.requests {
                state.dispatch(r).map_err(|e| err(format!("clusters.{}", c.id), e.to_string()))?;
            }
        }
        for r in self.activations() {
            state.dispatch_owned(r).map_err(|e| err("listeners", e.to_string()))?;
        }
        Ok(state)
    }

    /// Keys present in the file that this version does not know, as dotted paths.
    pub fn unknown_keys(&self) -> &[String] {
        &self.unknown
    }

    /// The requests the file stands for: every listener, then each cluster (AddCluster,
    /// its frontends, its backends, clusters by id), then ActivateListener for every
    /// listener if `activate_listeners`.
    pub fn requests(&self) -> Vec<Request> {
        let mut out: Vec<Request> = self.listeners.iter().map(|l| l.request.clone()).collect();
        out.extend(self.clusters.iter().flat_map(|c| c.requests.iter().cloned()));
        out.extend(self.activations());
        out
    }

    /// ActivateListener for every listener if `activate_listeners`.
    fn activations(&self) -> Vec<Request> {
        if !self.activate_listeners {
            return Vec::new();
        }
        let activate = |l: &ListenerSpec| {
            let proxy = match l.protocol {
                Protocol::Http => ListenerType::Http,
                Protocol::Tcp => ListenerType::Tcp,
            };
            Request::from(R::ActivateListener(ActivateListener {
                address: l.address.into(),
                proxy: proxy as i32,
                from_scm: false,
            }))
        };
        self.listeners.iter().map(activate).collect()
    }
}

struct Timeouts {
    front: u32,
    back: u32,
    connect: u32,
    request: u32,
}

/// The content of the answer file at `path` (relative to the configuration file's
/// directory), for the key `key`.
fn answer_file(key: &str, path: &str, base: &Path) -> Result<String, ConfigError> {
    let full = base.join(path);
    std::fs::read_to_string(&full)
        .map_err(|e| err(key.to_string(), format!("cannot read the answer file {}: {e}", full.display())))
}

fn listener(key: &str, l: &FileListener, d: &Timeouts, base: &Path) -> Result<ListenerSpec, ConfigError> {
    let address = addr(&format!("{key}.address"), l.address.as_deref())?;
    let public_address = match &l.public_address {
        None => None,
        Some(p) => Some(addr(&format!("{key}.public_address"), Some(p))?.into()),
    };
    let t = |name: &str, v: Option<i64>, default: u32| int(&format!("{key}.{name}"), v, default, "seconds, 0 or more");
    let front_timeout = t("front_timeout", l.front_timeout, d.front)?;
    let back_timeout = t("back_timeout", l.back_timeout, d.back)?;
    let connect_timeout = t("connect_timeout", l.connect_timeout, d.connect)?;
    let protocol =
        l.protocol.as_deref().ok_or_else(|| err(format!("{key}.protocol"), "missing; allowed: http, tcp"))?;
    let (protocol, request) = match protocol {
        "http" => (
            Protocol::Http,
            R::AddHttpListener(Box::new(HttpListenerConfig {
                address: address.into(),
                public_address,
                expect_proxy: l.expect_proxy.unwrap_or(false),
                sticky_name: l.sticky_name.clone().unwrap_or_else(|| "SOZUBALANCEID".into()),
                sozu_id_header: l.sozu_id_header.clone(),
                send_x_real_ip: l.send_x_real_ip.filter(|s| *s),
                elide_x_real_ip: l.elide_x_real_ip.filter(|e| *e),
                front_timeout,
                back_timeout,
                connect_timeout,
                request_timeout: t("request_timeout", l.request_timeout, d.request)?,
                active: false,
                answers: {
                    let mut answers = std::collections::BTreeMap::new();
                    for (status, path) in [
                        (400, &l.answer_400),
                        (401, &l.answer_401),
                        (404, &l.answer_404),
                        (408, &l.answer_408),
                        (502, &l.answer_502),
                        (503, &l.answer_503),
                        (504, &l.answer_504),
                    ] {
                        if let Some(path) = path {
                            let body = answer_file(&format!("{key}.answer_{status}"), path, base)?;
                            answers.insert(status.to_string(), body);
                        }
                    }
                    answers
                },
                ..Default::default()
            })),
        ),
        "tcp" => (
            Protocol::Tcp,
            R::AddTcpListener(TcpListenerConfig {
                address: address.into(),
                public_address,
                expect_proxy: l.expect_proxy.unwrap_or(false),
                front_timeout,
                back_timeout,
                connect_timeout,
                active: false,
            }),
        ),
        "https" | "udp" => {
            return Err(err(
                format!("{key}.protocol"),
                format!("{protocol} listeners are not supported yet; allowed: http, tcp"),
            ));
        }
        other => {
            return Err(err(format!("{key}.protocol"), format!("{other:?} is not a protocol; allowed: http, tcp")));
        }
    };
    Ok(ListenerSpec { protocol, address, request: request.into() })
}

fn cluster(id: &str, c: &FileCluster, listeners: &[ListenerSpec], base: &Path) -> Result<ClusterSpec, ConfigError> {
    let key = format!("clusters.{id}");
    if id.is_empty() || id.chars().any(|ch| ch.is_control()) {
        return Err(err(&key, "a cluster id must be non-empty and without control characters"));
    }
    let lb = match c.load_balancing.as_deref().unwrap_or("ROUND_ROBIN").to_ascii_uppercase().as_str() {
        "ROUND_ROBIN" | "ROUNDROBIN" => LoadBalancingAlgorithms::RoundRobin,
        "RANDOM" => LoadBalancingAlgorithms::Random,
        "LEAST_LOADED" | "LEASTLOADED" => LoadBalancingAlgorithms::LeastLoaded,
        "POWER_OF_TWO" | "POWEROFTWO" => LoadBalancingAlgorithms::PowerOfTwo,
        other => {
            return Err(err(
                format!("{key}.load_balancing"),
                format!("{other:?} is not supported; allowed: ROUND_ROBIN, RANDOM, LEAST_LOADED, POWER_OF_TWO"),
            ));
        }
    };
    let protocol = match c.protocol.as_deref() {
        Some("http") => Protocol::Http,
        Some("tcp") => Protocol::Tcp,
        Some(other) => {
            return Err(err(format!("{key}.protocol"), format!("{other:?} is not supported; allowed: http, tcp")));
        }
        None => return Err(err(format!("{key}.protocol"), "missing; allowed: http, tcp")),
    };
    let mut requests = vec![Request::from(R::AddCluster(Box::new(Cluster {
        cluster_id: id.to_string(),
        sticky_session: c.sticky_session.unwrap_or(false),
        https_redirect: c.https_redirect.unwrap_or(false),
        https_redirect_port: port(&format!("{key}.https_redirect_port"), c.https_redirect_port)?,
        proxy_protocol: c.send_proxy.unwrap_or(false).then_some(sozu_proto::ProxyProtocolConfig::SendHeader as i32),
        authorized_hashes: c.authorized_hashes.clone().unwrap_or_default(),
        www_authenticate: c.www_authenticate.clone(),
        load_balancing: lb as i32,
        answer_503: match &c.answer_503 {
            Some(path) => Some(answer_file(&format!("{key}.answer_503"), path, base)?),
            None => None,
        },
        ..Default::default()
    })))];
    for (i, f) in c.frontends.as_deref().unwrap_or_default().iter().enumerate() {
        let fk = format!("{key}.frontends[{i}]");
        let address = addr(&format!("{fk}.address"), f.address.as_deref())?;
        let listener = listeners.iter().find(|l| l.address == address);
        if listener.is_some_and(|l| l.protocol != protocol) {
            return Err(err(format!("{fk}.address"), format!("{address} is a listener of another protocol")));
        }
        let tags: BTreeMap<String, String> = f.tags.clone().unwrap_or_default();
        match protocol {
            Protocol::Tcp => {
                requests.push(
                    R::AddTcpFrontend(RequestTcpFrontend { cluster_id: id.into(), address: address.into(), tags })
                        .into(),
                );
            }
            Protocol::Http => {
                let hostname = f
                    .hostname
                    .clone()
                    .ok_or_else(|| err(format!("{fk}.hostname"), "missing; an HTTP frontend needs a hostname"))?;
                let kind = match f.path_type.as_deref().unwrap_or("PREFIX").to_ascii_uppercase().as_str() {
                    "PREFIX" => PathRuleKind::Prefix,
                    "REGEX" => PathRuleKind::Regex,
                    "EQUALS" => PathRuleKind::Equals,
                    other => {
                        return Err(err(
                            format!("{fk}.path_type"),
                            format!("{other:?}; allowed: PREFIX, REGEX, EQUALS"),
                        ));
                    }
                };
                let position = match f.position.as_deref().unwrap_or("TREE").to_ascii_uppercase().as_str() {
                    "TREE" => RulePosition::Tree,
                    "PRE" => RulePosition::Pre,
                    "POST" => RulePosition::Post,
                    other => return Err(err(format!("{fk}.position"), format!("{other:?}; allowed: TREE, PRE, POST"))),
                };
                requests.push(
                    R::AddHttpFrontend(Box::new(RequestHttpFrontend {
                        cluster_id: Some(id.into()),
                        address: address.into(),
                        hostname,
                        path: PathRule { kind: kind as i32, value: f.path.clone().unwrap_or_default() },
                        method: f.method.clone(),
                        position: position as i32,
                        tags,
                        redirect: choice(
                            &format!("{fk}.redirect"),
                            f.redirect.as_deref(),
                            &[
                                ("FORWARD", None),
                                ("PERMANENT", Some(sozu_proto::RedirectPolicy::Permanent as i32)),
                                ("UNAUTHORIZED", Some(sozu_proto::RedirectPolicy::Unauthorized as i32)),
                            ],
                        )?,
                        redirect_scheme: choice(
                            &format!("{fk}.redirect_scheme"),
                            f.redirect_scheme.as_deref(),
                            &[
                                ("USE_SAME", None),
                                ("USE_HTTP", Some(sozu_proto::RedirectScheme::UseHttp as i32)),
                                ("USE_HTTPS", Some(sozu_proto::RedirectScheme::UseHttps as i32)),
                            ],
                        )?,
                        redirect_template: match &f.redirect_template {
                            Some(path) => Some(answer_file(&format!("{fk}.redirect_template"), path, base)?),
                            None => None,
                        },
                        rewrite_host: f.rewrite_host.clone(),
                        rewrite_path: f.rewrite_path.clone(),
                        rewrite_port: port(&format!("{fk}.rewrite_port"), f.rewrite_port)?,
                        required_auth: f.required_auth.filter(|r| *r),
                        headers: headers(&fk, f.headers.as_deref().unwrap_or_default())?,
                        ..Default::default()
                    }))
                    .into(),
                );
            }
        }
    }
    for (i, b) in c.backends.as_deref().unwrap_or_default().iter().enumerate() {
        let bk = format!("{key}.backends[{i}]");
        let address = addr(&format!("{bk}.address"), b.address.as_deref())?;
        let weight: i32 = int(&format!("{bk}.weight"), b.weight, 100, "0 to 2147483647")?;
        requests.push(
            R::AddBackend(AddBackend {
                cluster_id: id.into(),
                backend_id: b.backend_id.clone().unwrap_or_else(|| format!("{id}-{i}")),
                address: address.into(),
                sticky_id: b.sticky_id.clone(),
                load_balancing_parameters: Some(LoadBalancingParams { weight }),
                backup: b.backup,
            })
            .into(),
        );
    }
    Ok(ClusterSpec { id: id.to_string(), requests })
}

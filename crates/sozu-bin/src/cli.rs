//! Command-line interface: Sōzu 2.x's subcommands and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sozu: the supervisor of a Sōzu-compatible reverse proxy, and its command-line client.
///
/// `sozu start -c CONFIG` runs the master. Every other command connects to the master's
/// command socket (named in the same configuration file), sends one request, and prints
/// the answer.
#[derive(Debug, Parser)]
#[command(name = "sozu", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file (Sōzu 2.x TOML format). Default: $SOZU_CONFIG, else /etc/sozu/config.toml.
    #[arg(short, long, global = true, env = "SOZU_CONFIG")]
    pub config: Option<PathBuf>,
    /// Milliseconds to wait for each answer; 0 waits forever. Default: ctl_command_timeout.
    #[arg(short, long, global = true)]
    pub timeout: Option<u64>,
    /// Print the answer's content as JSON (as Sōzu prints it) instead of a table.
    #[arg(short, long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the master: bind the command socket, start the workers, serve commands.
    Start {
        /// Refuse a configuration with unknown keys instead of warning.
        #[arg(long)]
        strict: bool,
    },
    /// Internal: check main-upgrade data (run by the master on the new binary).
    #[command(hide = true, name = "upgrade-check")]
    UpgradeCheck {
        #[arg(long = "data-fd")]
        data_fd: i32,
    },
    /// Internal: the master, re-executed by a main upgrade.
    #[command(hide = true)]
    Upgraded {
        #[arg(long = "data-fd")]
        data_fd: i32,
        /// `EXE_FD:DATA_FD`: the previous binary and the data, to re-execute it if this
        /// image cannot take over.
        #[arg(long)]
        rollback: Option<String>,
        /// Set on the previous binary re-executed by a failed new image: why it failed.
        #[arg(long = "rolled-back")]
        rolled_back: Option<String>,
    },
    /// Internal: run a worker (started by the master).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        id: u32,
        #[arg(long)]
        fd: i32,
        #[arg(long)]
        scm: i32,
        #[arg(long = "configuration-state-fd")]
        configuration_state_fd: i32,
        #[arg(long = "command-buffer-size", default_value_t = 1_000_000)]
        command_buffer_size: usize,
        #[arg(long = "max-command-buffer-size")]
        max_command_buffer_size: Option<usize>,
    },
    /// Stop the master and its workers (soft: let connections finish).
    Shutdown {
        /// Stop at once.
        #[arg(long)]
        hard: bool,
    },
    /// Upgrade the master in place (re-executed with the new binary, same pid, workers
    /// kept), or one worker with --worker.
    Upgrade {
        /// Upgrade only this worker.
        #[arg(long)]
        worker: Option<u32>,
        /// Upgrade only the master, not then every worker one by one.
        #[arg(long, conflicts_with = "worker")]
        main_only: bool,
    },
    /// Status of the workers.
    Status,
    /// Metrics.
    Metrics {
        #[command(subcommand)]
        cmd: MetricsCmd,
    },
    /// Change the log level of the master and workers (error, warn, info, debug, trace).
    Logging {
        /// Level or filter.
        filter: String,
    },
    /// Save, load or count the state.
    State {
        #[command(subcommand)]
        cmd: StateCmd,
    },
    /// Re-read the configuration file and apply what changed in its listeners and clusters
    /// (as SIGHUP does). A file that does not load changes nothing.
    Reload {
        /// Read this file instead of the one the master started with (it becomes the master's
        /// listeners and clusters; other settings keep their running value).
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
    /// Clusters.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Backends of a cluster.
    Backend {
        #[command(subcommand)]
        cmd: BackendCmd,
    },
    /// Frontends (routes).
    Frontend {
        #[command(subcommand)]
        cmd: FrontendCmd,
    },
    /// Listeners.
    Listener {
        #[command(subcommand)]
        cmd: ListenerCmd,
    },
    /// Follow the master's events (until interrupted).
    Events,
    /// The configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Enable metrics collection.
    Enable,
    /// Disable metrics collection.
    Disable,
    /// Clear collected metrics.
    Clear,
    /// Query metrics.
    Get {
        /// List the available metric names.
        #[arg(short, long)]
        list: bool,
        /// Only these metrics (comma-separated).
        #[arg(short, long, value_delimiter = ',')]
        names: Vec<String>,
        /// Only these clusters.
        #[arg(short = 'k', long, value_delimiter = ',')]
        clusters: Vec<String>,
        /// Only these backends.
        #[arg(short, long, value_delimiter = ',')]
        backends: Vec<String>,
        /// No cluster metrics.
        #[arg(long)]
        no_clusters: bool,
        /// Per worker, not merged.
        #[arg(short, long)]
        workers: bool,
        /// Query again every this many seconds, on the same connection, until interrupted.
        #[arg(short, long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        refresh: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Save the state to a file (a relative path is made absolute against this directory).
    Save {
        /// Where to write.
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Load a state file, all or nothing (a relative path is resolved against the
    /// configuration file's directory by the master).
    Load {
        /// What to read.
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Count of requests received, by verb.
    Stats,
}

/// Load-balancing algorithms, by Sōzu 2.1's names (any case; the dashed forms are
/// accepted too).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LoadBalancing {
    /// Each backend in turn.
    #[value(name = "round_robin", alias = "round-robin")]
    RoundRobin,
    /// A backend at random.
    Random,
    /// The backend with the fewest active connections.
    #[value(name = "least_loaded", alias = "least-loaded")]
    LeastLoaded,
    /// The less loaded of two backends picked at random.
    #[value(name = "power_of_two", alias = "power-of-two")]
    PowerOfTwo,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// List clusters (hashes), or one cluster, or the clusters of a domain.
    List {
        /// Cluster id.
        #[arg(short, long)]
        id: Option<String>,
        /// Domain, with an optional path: example.com/api.
        #[arg(short, long)]
        domain: Option<String>,
    },
    /// Add (or replace) a cluster.
    Add {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
        /// Sticky sessions.
        #[arg(short = 's', long)]
        sticky_session: bool,
        /// Answer every request to this cluster with a 301 to the same address over HTTPS.
        #[arg(short = 'r', long)]
        https_redirect: bool,
        /// The port of that redirection (none given: the HTTPS default, 443).
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        https_redirect_port: Option<u16>,
        /// Send a PROXY protocol header to backends.
        #[arg(long)]
        send_proxy: bool,
        /// Expect a PROXY protocol header from clients.
        #[arg(long)]
        expect_proxy: bool,
        /// How backends are chosen.
        #[arg(long, value_enum, ignore_case = true, default_value = "round_robin")]
        load_balancing_policy: LoadBalancing,
        /// A custom answer of this cluster, `CODE=TEMPLATE` or `CODE=file:///path`: a whole
        /// HTTP response (`HTTP/1.1 503 Busy\r\n\r\nbody`) or just a body. Repeatable.
        #[arg(long = "answer", value_name = "CODE=TEMPLATE")]
        answers: Vec<String>,
        /// The realm a 401 of this cluster's frontends names (the default: the cluster id).
        #[arg(long, value_name = "REALM")]
        www_authenticate: Option<String>,
        /// Credentials its frontends with --required-auth accept:
        /// `user:hex(sha256(password))`. Repeatable.
        #[arg(long = "authorized-hash", value_name = "USER:SHA256")]
        authorized_hashes: Vec<String>,
    },
    /// Remove a cluster with its frontends and backends.
    Remove {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackendCmd {
    /// Add (or replace) a backend.
    Add {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
        /// Backend id, unique in the cluster.
        #[arg(long)]
        backend_id: String,
        /// Backend address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        /// Sticky id.
        #[arg(short, long)]
        sticky_id: Option<String>,
        /// Backup backend.
        #[arg(short, long)]
        backup: Option<bool>,
    },
    /// Remove a backend.
    Remove {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
        /// Backend id.
        #[arg(long)]
        backend_id: String,
        /// Backend address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum FrontendCmd {
    /// HTTP frontends.
    Http {
        #[command(subcommand)]
        cmd: HttpFrontendCmd,
    },
    /// TCP frontends.
    Tcp {
        #[command(subcommand)]
        cmd: TcpFrontendCmd,
    },
    /// List frontends.
    List {
        #[arg(long)]
        http: bool,
        #[arg(long)]
        https: bool,
        #[arg(long)]
        tcp: bool,
        /// Only hostnames containing this.
        #[arg(short, long)]
        domain: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct HttpRoute {
    /// Listener address, ip:port.
    #[arg(short, long)]
    pub address: std::net::SocketAddr,
    /// Host name to match (exact, or `*.example.com`).
    #[arg(long)]
    pub hostname: String,
    /// Path prefix.
    #[arg(short = 'p', long = "path-prefix", conflicts_with_all = ["path_regex", "path_equals"])]
    pub path_prefix: Option<String>,
    /// Path regex.
    #[arg(long)]
    pub path_regex: Option<String>,
    /// Exact path.
    #[arg(long)]
    pub path_equals: Option<String>,
    /// HTTP method.
    #[arg(short, long)]
    pub method: Option<String>,
    /// Tags, 'k=v, k2=v2'.
    #[arg(long)]
    pub tags: Option<String>,
    #[command(flatten)]
    pub policy: FrontendPolicy,
    #[command(subcommand)]
    pub route: Route,
}

/// What a frontend answers itself instead of forwarding.
#[derive(Debug, Args)]
pub struct FrontendPolicy {
    /// `permanent`: answer a 301 to the address the --redirect-scheme and --rewrite-*
    /// options make of the request's; `unauthorized`: answer a 401 asking for
    /// credentials; `forward` (the default): send to the cluster.
    #[arg(long, value_enum, ignore_case = true)]
    pub redirect: Option<Redirect>,
    /// The scheme of that redirection (the default: the request's, http).
    #[arg(long, value_enum, ignore_case = true)]
    pub redirect_scheme: Option<Scheme>,
    /// The redirection's answer: a whole HTTP response or a body, or `file:///path`
    /// (its `Location` is ours).
    #[arg(long, value_name = "TEMPLATE")]
    pub redirect_template: Option<String>,
    /// The Host the request is forwarded (or redirected) with: a template where
    /// `$HOST[0]` is the request's host and, for a `*.` hostname, `$HOST[1]` what the `*`
    /// matched; `$PATH[n]` as in --rewrite-path. Example: `$HOST[1].internal`.
    #[arg(long, value_name = "TEMPLATE")]
    pub rewrite_host: Option<String>,
    /// The path (and query) the request is forwarded (or redirected) with: a template
    /// where `$PATH[0]` is the request's path and query, `$PATH[1]` what follows a
    /// --path-prefix, or `$PATH[n]` the group n of a --path-regex. Example: `/v2$PATH[1]`.
    /// A template with no placeholder drops the query.
    #[arg(long, value_name = "TEMPLATE")]
    pub rewrite_path: Option<String>,
    /// The port of the redirection (the forwarded request's Host keeps none).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub rewrite_port: Option<u16>,
    /// Requests need Basic credentials among the cluster's --authorized-hash ones
    /// (otherwise: 401).
    #[arg(long)]
    pub required_auth: bool,
    /// A header edit, `POSITION=NAME=VALUE` (repeatable). POSITION: `request` (what the
    /// backend gets), `response` (what the client gets from the backend) or `both`. An
    /// empty VALUE removes every NAME field; any other adds one. Removals come first:
    /// to replace, give `NAME=` and `NAME=VALUE`.
    #[arg(long = "header", value_name = "POSITION=NAME=VALUE")]
    pub headers: Vec<String>,
}

/// A frontend's redirection policy.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Redirect {
    Forward,
    Permanent,
    Unauthorized,
}

/// The scheme of a frontend's redirection.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scheme {
    #[value(name = "use-same")]
    Same,
    #[value(name = "use-http")]
    Http,
    #[value(name = "use-https")]
    Https,
}

#[derive(Debug, Subcommand)]
pub enum Route {
    /// Send to this cluster.
    Id {
        /// Cluster id.
        cluster_id: String,
    },
    /// Refuse the requests.
    Deny,
}

#[derive(Debug, Subcommand)]
pub enum HttpFrontendCmd {
    /// Add an HTTP frontend.
    Add(Box<HttpRoute>),
    /// Remove an HTTP frontend.
    Remove(Box<HttpRoute>),
}

#[derive(Debug, Subcommand)]
pub enum TcpFrontendCmd {
    /// Add a TCP frontend.
    Add {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        /// Tags, 'k=v, k2=v2'.
        #[arg(long)]
        tags: Option<String>,
    },
    /// Remove a TCP frontend.
    Remove {
        /// Cluster id.
        #[arg(short, long)]
        id: String,
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum ListenerCmd {
    /// HTTP listeners.
    Http {
        #[command(subcommand)]
        cmd: HttpListenerAction,
    },
    /// TCP listeners.
    Tcp {
        #[command(subcommand)]
        cmd: TcpListenerAction,
    },
    /// List listeners.
    List,
}

/// Options of every listener.
#[derive(Debug, Args)]
pub struct ListenerOptions {
    /// Address clients see (behind NAT or a load balancer), ip:port.
    #[arg(long)]
    pub public_address: Option<std::net::SocketAddr>,
    /// Expect a PROXY protocol header from clients.
    #[arg(long)]
    pub expect_proxy: bool,
    /// Seconds a client connection may stay idle (a new listener: 60).
    #[arg(long)]
    pub front_timeout: Option<u32>,
    /// Seconds a backend connection may stay idle (a new listener: 30).
    #[arg(long)]
    pub back_timeout: Option<u32>,
    /// Seconds to connect to a backend (a new listener: 3).
    #[arg(long)]
    pub connect_timeout: Option<u32>,
}

/// Options of HTTP listeners only.
#[derive(Debug, Args)]
pub struct HttpListenerOptions {
    /// Name of the sticky-session cookie (a new listener: SOZUBALANCEID).
    #[arg(long)]
    pub sticky_name: Option<String>,
    /// Seconds to receive a whole request (a new listener: 10).
    #[arg(long)]
    pub request_timeout: Option<u32>,
    /// Name of the request id header each forwarded request gets (a new listener:
    /// Sozu-Id).
    #[arg(long)]
    pub sozu_id_header: Option<String>,
}

/// Custom answers of a new HTTP listener: files holding a whole HTTP response (or just
/// its body).
#[derive(Debug, Args)]
pub struct AddAnswers {
    /// File of the 404 answer (no frontend matches).
    #[arg(long)]
    pub answer_404: Option<PathBuf>,
    /// File of the 503 answer (no backend available).
    #[arg(long)]
    pub answer_503: Option<PathBuf>,
}

/// Custom answers to replace on an HTTP listener, as files (the same statuses as Sōzu
/// 2.1's CLI).
#[derive(Debug, Args)]
pub struct UpdateAnswers {
    /// File of the 301 answer.
    #[arg(long)]
    pub answer_301: Option<PathBuf>,
    /// File of the 401 answer.
    #[arg(long)]
    pub answer_401: Option<PathBuf>,
    /// File of the 404 answer.
    #[arg(long)]
    pub answer_404: Option<PathBuf>,
    /// File of the 408 answer.
    #[arg(long)]
    pub answer_408: Option<PathBuf>,
    /// File of the 413 answer.
    #[arg(long)]
    pub answer_413: Option<PathBuf>,
    /// File of the 421 answer.
    #[arg(long)]
    pub answer_421: Option<PathBuf>,
    /// File of the 429 answer.
    #[arg(long)]
    pub answer_429: Option<PathBuf>,
    /// File of the 502 answer.
    #[arg(long)]
    pub answer_502: Option<PathBuf>,
    /// File of the 503 answer.
    #[arg(long)]
    pub answer_503: Option<PathBuf>,
    /// File of the 504 answer.
    #[arg(long)]
    pub answer_504: Option<PathBuf>,
    /// File of the 507 answer.
    #[arg(long)]
    pub answer_507: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HttpListenerAction {
    /// Add an HTTP listener (inactive until activated).
    Add {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        #[command(flatten)]
        options: ListenerOptions,
        #[command(flatten)]
        http: HttpListenerOptions,
        /// Send backends an X-Real-IP field naming the client (replacing the client's).
        #[arg(long)]
        send_x_real_ip: bool,
        /// Drop the X-Real-IP field clients send.
        #[arg(long)]
        elide_x_real_ip: bool,
        #[command(flatten)]
        answers: Box<AddAnswers>,
    },
    /// Change an HTTP listener's settings (only the options given).
    Update {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        #[command(flatten)]
        options: ListenerOptions,
        /// Stop expecting a PROXY protocol header.
        #[arg(long, conflicts_with = "expect_proxy")]
        no_expect_proxy: bool,
        #[command(flatten)]
        http: HttpListenerOptions,
        #[command(flatten)]
        answers: Box<UpdateAnswers>,
    },
    #[command(flatten)]
    Common(ListenerCommon),
}

#[derive(Debug, Subcommand)]
pub enum TcpListenerAction {
    /// Add a TCP listener (inactive until activated).
    Add {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        #[command(flatten)]
        options: ListenerOptions,
    },
    /// Change a TCP listener's settings (only the options given).
    Update {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
        #[command(flatten)]
        options: ListenerOptions,
        /// Stop expecting a PROXY protocol header.
        #[arg(long, conflicts_with = "expect_proxy")]
        no_expect_proxy: bool,
    },
    #[command(flatten)]
    Common(ListenerCommon),
}

/// What every kind of listener can do.
#[derive(Debug, Subcommand)]
pub enum ListenerCommon {
    /// Remove a listener.
    Remove {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
    },
    /// Start accepting.
    Activate {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
    },
    /// Stop accepting.
    Deactivate {
        /// Listener address, ip:port.
        #[arg(short, long)]
        address: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration file without contacting anything.
    Check {
        /// Fail on unknown keys.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of a JSON audit file.
    Verify {
        /// The audit_logs_json_target file.
        file: PathBuf,
    },
}

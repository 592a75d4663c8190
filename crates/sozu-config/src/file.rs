//! The file as written: every key optional, defaults applied by `resolve`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileConfig {
    pub command_socket: Option<String>,
    pub worker_count: Option<i64>,
    pub worker_automatic_restart: Option<bool>,
    pub worker_timeout: Option<i64>,
    pub worker_restart_delay_ms: Option<i64>,
    pub worker_restart_max_delay_ms: Option<i64>,
    pub worker_max_restarts: Option<i64>,
    pub worker_restart_window: Option<i64>,
    pub worker_health_check_interval: Option<i64>,
    pub worker_health_check_failures: Option<i64>,
    pub soft_stop_timeout: Option<i64>,
    pub upgrade_timeout: Option<i64>,
    pub max_draining_workers: Option<i64>,
    pub upgrade_binary: Option<String>,
    pub dashboard_socket: Option<String>,
    pub dashboard_max_frame_bytes: Option<i64>,
    pub dashboard_subscriber_queue: Option<i64>,
    pub event_journal_size: Option<i64>,
    pub ctl_command_timeout: Option<i64>,
    pub command_buffer_size: Option<i64>,
    pub max_command_buffer_size: Option<i64>,
    pub saved_state: Option<String>,
    pub automatic_state_save: Option<bool>,
    pub command_allowed_uids: Option<Vec<i64>>,
    pub log_level: Option<String>,
    pub log_target: Option<String>,
    pub log_format: Option<String>,
    pub audit_logs_target: Option<String>,
    pub audit_logs_json_target: Option<String>,
    pub audit_fail_closed: Option<bool>,
    pub pid_file_path: Option<String>,
    pub max_connections: Option<i64>,
    pub min_buffers: Option<i64>,
    pub max_buffers: Option<i64>,
    pub buffer_size: Option<i64>,
    pub front_timeout: Option<i64>,
    pub back_timeout: Option<i64>,
    pub connect_timeout: Option<i64>,
    pub request_timeout: Option<i64>,
    pub activate_listeners: Option<bool>,
    pub handle_process_affinity: Option<bool>,
    pub listeners: Option<Vec<FileListener>>,
    pub clusters: Option<BTreeMap<String, FileCluster>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileListener {
    pub protocol: Option<String>,
    pub address: Option<String>,
    pub public_address: Option<String>,
    pub expect_proxy: Option<bool>,
    pub sticky_name: Option<String>,
    pub sozu_id_header: Option<String>,
    pub send_x_real_ip: Option<bool>,
    pub elide_x_real_ip: Option<bool>,
    pub front_timeout: Option<i64>,
    pub back_timeout: Option<i64>,
    pub connect_timeout: Option<i64>,
    pub request_timeout: Option<i64>,
    /// Files whose content is the body of our answer with that status.
    pub answer_400: Option<String>,
    pub answer_401: Option<String>,
    pub answer_404: Option<String>,
    pub answer_408: Option<String>,
    pub answer_502: Option<String>,
    pub answer_503: Option<String>,
    pub answer_504: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileCluster {
    pub protocol: Option<String>,
    pub load_balancing: Option<String>,
    pub sticky_session: Option<bool>,
    pub https_redirect: Option<bool>,
    pub https_redirect_port: Option<i64>,
    pub send_proxy: Option<bool>,
    pub authorized_hashes: Option<Vec<String>>,
    pub www_authenticate: Option<String>,
    pub answer_503: Option<String>,
    pub frontends: Option<Vec<FileFrontend>>,
    pub backends: Option<Vec<FileBackend>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileFrontend {
    pub address: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub path_type: Option<String>,
    pub method: Option<String>,
    pub position: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub redirect: Option<String>,
    pub redirect_scheme: Option<String>,
    pub redirect_template: Option<String>,
    pub rewrite_host: Option<String>,
    pub rewrite_path: Option<String>,
    pub rewrite_port: Option<i64>,
    pub required_auth: Option<bool>,
    pub headers: Option<Vec<FileHeader>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileHeader {
    pub position: Option<String>,
    pub key: Option<String>,
    pub val: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileBackend {
    pub address: Option<String>,
    pub backend_id: Option<String>,
    pub weight: Option<i64>,
    pub sticky_id: Option<String>,
    pub backup: Option<bool>,
}

//! The configuration file: defaults, validation messages, unknown keys, requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sozu_config::Config;
use sozu_proto::request::RequestType as R;

fn parse(text: &str) -> Result<Config, sozu_config::ConfigError> {
    Config::parse(text, Path::new("/etc/sozu/config.toml"))
}

#[test]
fn the_shipped_default_config_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
    let config = Config::load(&path).unwrap();
    assert!(config.unknown_keys().is_empty(), "{:?}", config.unknown_keys());
    assert_eq!(config.worker_count, 2);
    assert_eq!(config.listeners.len(), 2);
    assert!(config.command_socket.ends_with("target/sozu-run/sozu.sock"));
    assert!(config.command_socket.is_absolute());
    let names: Vec<&str> = config.requests().iter().map(sozu_proto::request_name).collect();
    assert_eq!(
        names,
        [
            "AddHttpListener",
            "AddTcpListener",
            "AddCluster",
            "AddHttpFrontend",
            "AddBackend",
            "AddCluster",
            "AddTcpFrontend",
            "AddBackend",
            "ActivateListener",
            "ActivateListener"
        ]
    );
    // the requests apply cleanly to an empty state
    assert_eq!(config.state().unwrap().cluster_count(), 2);
}

#[test]
fn what_only_the_state_refuses_is_named_by_its_cluster() {
    let tcp = "[[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:5\"\n";
    let cases = [
        (
            "[clusters.web]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\", hostname = \"a\\u202eb\" }]\n"
                .to_string(),
            "clusters.web",
            "hostname \"a\\u{202e}b\" holds a control or formatting character",
        ),
        (
            format!(
                "{tcp}[clusters.db]\nprotocol = \"tcp\"\nbackends = [{{ address = \"127.0.0.1:6\", backend_id = \"b\\n1\" }}]\n"
            ),
            "clusters.db",
            "backend_id \"b\\u{a}1\" holds a control",
        ),
    ];
    for (text, key, message) in cases {
        let e = parse(&text).unwrap().state().unwrap_err();
        assert_eq!(e.key, key, "{text}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}

#[test]
fn defaults_and_relative_paths() {
    let c = parse("saved_state = \"state/s\"\n").unwrap();
    assert_eq!(c.command_socket, Path::new("/etc/sozu/sozu.sock"));
    assert_eq!(c.saved_state.as_deref(), Some(Path::new("/etc/sozu/state/s")));
    assert_eq!(c.worker_timeout, Duration::from_secs(10));
    assert_eq!((c.command_buffer_size, c.max_command_buffer_size), (1_000_000, 2_000_000));
    assert_eq!(c.log_level, "info");
}

#[test]
fn unknown_keys_are_reported_by_name() {
    let c =
        parse("worker_cuont = 3\n[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:1\"\nfoo = 1\n").unwrap();
    assert_eq!(c.unknown_keys(), ["listeners.0.foo", "worker_cuont"]);
}

#[test]
fn invalid_values_name_the_key_and_what_is_allowed() {
    let cases = [
        ("log_level = \"loud\"", "log_level", "allowed: error, warn, info, debug, trace"),
        ("worker_count = 0", "worker_count", "at least 1"),
        ("worker_count = 70000", "worker_count", "out of range"),
        ("automatic_state_save = true", "automatic_state_save", "saved_state"),
        ("log_format = \"xml\"", "log_format", "allowed: text, json"),
        ("[[listeners]]\nprotocol = \"http\"\naddress = \"nope\"", "listeners[0].address", "ip:port"),
        (
            "[[listeners]]\nprotocol = \"quic\"\naddress = \"127.0.0.1:1\"",
            "listeners[0].protocol",
            "allowed: http, tcp",
        ),
        ("[clusters.a]\nprotocol = \"http\"\nload_balancing = \"FASTEST\"", "clusters.a.load_balancing", "allowed"),
        (
            "[clusters.a]\nprotocol = \"http\"\nbackends = [{ address = \"x\" }]",
            "clusters.a.backends[0].address",
            "ip:port",
        ),
        (
            "[clusters.a]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\" }]",
            "clusters.a.frontends[0].hostname",
            "hostname",
        ),
        ("[clusters.a]\nprotocol = \"http\"\nhttps_redirect_port = 0", "clusters.a.https_redirect_port", "1 to 65535"),
        (
            "[clusters.a]\nprotocol = \"http\"\nhttps_redirect_port = 65536",
            "clusters.a.https_redirect_port",
            "out of range",
        ),
        (
            "[clusters.a]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\", hostname = \"h\", redirect = \"LATER\" }]",
            "clusters.a.frontends[0].redirect",
            "allowed: FORWARD, PERMANENT, UNAUTHORIZED",
        ),
        (
            "[clusters.a]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\", hostname = \"h\", redirect_scheme = \"FTP\" }]",
            "clusters.a.frontends[0].redirect_scheme",
            "allowed: USE_SAME",
        ),
        (
            "[clusters.a]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\", hostname = \"h\", headers = [{ position = \"up\", key = \"x\" }] }]",
            "clusters.a.frontends[0].headers[0].position",
            "allowed: REQUEST, RESPONSE, BOTH",
        ),
        (
            "[clusters.a]\nprotocol = \"http\"\nfrontends = [{ address = \"127.0.0.1:1\", hostname = \"h\", headers = [{ position = \"both\" }] }]",
            "clusters.a.frontends[0].headers[0].key",
            "missing",
        ),
        ("command_allowed_uids = [-1]", "command_allowed_uids", "not a uid"),
        ("worker_count = \"two\"", "config.toml", "invalid type"),
        ("this is not toml", "config.toml", "invalid TOML"),
    ];
    for (text, key, message) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.key.contains(key), "{text}: key {} (wanted {key})", e.key);
        assert!(e.message.contains(message), "{text}: {} (wanted {message})", e.message);
    }
}

#[test]
fn frontend_and_cluster_policies_reach_their_requests() {
    let c = parse(
        "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:5\"\nsozu_id_header = \"X-Request-Id\"\n\
         send_x_real_ip = true\n[clusters.web]\nprotocol = \"http\"\n\
         authorized_hashes = [\"alice:00\"]\nwww_authenticate = \"staff\"\nsend_proxy = true\n\
         frontends = [{ address = \"127.0.0.1:5\", hostname = \"h\", redirect = \"permanent\", redirect_scheme = \"use_https\", rewrite_host = \"n\", rewrite_port = 8443, required_auth = true, \
         headers = [{ position = \"request\", key = \"X-Env\", val = \"prod\" }, { position = \"Both\", key = \"X-Trace\" }] }]\n",
    )
    .unwrap();
    let requests = c.requests();
    let Some(R::AddHttpListener(l)) = &requests[0].request_type else { panic!("{requests:?}") };
    assert_eq!(
        (l.sozu_id_header.as_deref(), l.send_x_real_ip, l.elide_x_real_ip),
        (Some("X-Request-Id"), Some(true), None)
    );
    let Some(R::AddCluster(cluster)) = &requests[1].request_type else { panic!("{requests:?}") };
    assert_eq!(
        (cluster.authorized_hashes.as_slice(), cluster.www_authenticate.as_deref()),
        (&["alice:00".to_string()][..], Some("staff"))
    );
    assert_eq!(cluster.proxy_protocol, Some(sozu_proto::ProxyProtocolConfig::SendHeader as i32));
    let Some(R::AddHttpFrontend(f)) = &requests[2].request_type else { panic!("{requests:?}") };
    assert_eq!(f.redirect, Some(sozu_proto::RedirectPolicy::Permanent as i32));
    assert_eq!(f.redirect_scheme, Some(sozu_proto::RedirectScheme::UseHttps as i32));
    assert_eq!((f.rewrite_host.as_deref(), f.rewrite_port, f.required_auth), (Some("n"), Some(8443), Some(true)));
    let h = |position: sozu_proto::HeaderPosition, key: &str, val: &str| sozu_proto::Header {
        position: position as i32,
        key: key.into(),
        val: val.into(),
    };
    use sozu_proto::HeaderPosition as P;
    assert_eq!(f.headers, [h(P::Request, "X-Env", "prod"), h(P::Both, "X-Trace", "")]);
}

#[test]
fn tcp_clusters_make_tcp_frontends() {
    let c = parse(
        "[[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:5\"\n[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{ address = \"127.0.0.1:5\" }]\nbackends = [{ address = \"127.0.0.1:6\" }]\n",
    )
    .unwrap();
    let requests = c.requests();
    assert!(matches!(requests[2].request_type, Some(R::AddTcpFrontend(_))));
    let Some(R::AddBackend(b)) = &requests[3].request_type else { panic!() };
    assert_eq!(b.backend_id, "db-0");
}

#[test]
fn answer_files_are_read_relative_to_the_config_and_a_missing_one_names_its_key() {
    let dir = std::env::temp_dir().join(format!("sozu-config-answers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("404.html"), "<h1>not here</h1>").unwrap();
    std::fs::write(dir.join("503.html"), "<h1>later</h1>").unwrap();
    let text = "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:8080\"\nanswer_404 = \"404.html\"\n\
                [clusters.a]\nprotocol = \"http\"\nanswer_503 = \"503.html\"\n";
    let config = Config::parse(text, &dir.join("config.toml")).unwrap();
    assert!(config.unknown_keys().is_empty(), "{:?}", config.unknown_keys());
    let requests = config.requests();
    let listener = requests.iter().find_map(|r| match &r.request_type {
        Some(R::AddHttpListener(l)) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(listener.unwrap().answers.get("404").map(String::as_str), Some("<h1>not here</h1>"));
    let cluster = requests.iter().find_map(|r| match &r.request_type {
        Some(R::AddCluster(c)) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(cluster.unwrap().answer_503.as_deref(), Some("<h1>later</h1>"));
    let missing = text.replace("404.html", "nope.html");
    let e = Config::parse(&missing, &dir.join("config.toml")).unwrap_err().to_string();
    assert!(e.contains("listeners[0].answer_404") && e.contains("nope.html"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_reads_only_the_top_level_keys_it_needs() {
    let dir = std::env::temp_dir().join(format!("sozu-config-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let load = |text: &str| {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        Config::load_client(&dir.join("config.toml"))
    };
    // what follows the first table header is not parsed: invalid TOML there is no error
    let c = load("command_socket = \"s.sock\"\nctl_command_timeout = 250\n  [clusters.a]\nprotocol = = \"http\"\n")
        .unwrap();
    assert_eq!(c.command_socket, dir.join("s.sock"));
    assert_eq!(c.ctl_command_timeout, Duration::from_millis(250));
    // a line of a multi-line array or string that starts with `[` is not a header: the
    // whole file is read, and the keys after that value are found
    for text in [
        "worker_count = 2\nx = [\n  [1, 2],\n]\ncommand_socket = \"t.sock\"\n[clusters.a]\nprotocol = \"http\"\n",
        "w = \"\"\"\n[not a header\n\"\"\"\ncommand_socket = \"t.sock\"\n",
    ] {
        assert_eq!(load(text).unwrap().command_socket, dir.join("t.sock"), "{text}");
    }
    // invalid TOML before the first header is an error, named as such
    let e = load("command_socket = \n[clusters.a]\n").unwrap_err();
    assert!(e.message.contains("invalid TOML"), "{e}");
    // and so is the cut inside a value that the whole file does not close either
    let e = load("command_socket = \"s.sock\"\nx = [\n[1]\n").unwrap_err();
    assert!(e.message.contains("invalid TOML"), "{e}");
    // the shipped default config reads the same either way
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
    let (client, full) = (Config::load_client(&shipped).unwrap(), Config::load(&shipped).unwrap());
    assert_eq!(client.command_socket, full.command_socket);
    assert_eq!(client.ctl_command_timeout, full.ctl_command_timeout);
    assert_eq!(client.max_command_buffer_size, full.max_command_buffer_size);
    let _ = std::fs::remove_dir_all(&dir);
}

//! From a CLI command to the request Sōzu's CLI would send.

use std::collections::BTreeMap;

use anyhow::bail;
use sozu_proto::request::RequestType as R;
use sozu_proto::*;

use crate::cli::*;

fn tags(text: &Option<String>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in text.as_deref().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else { bail!("tag {pair:?} is not key=value") };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn http_frontend(r: &HttpRoute) -> anyhow::Result<RequestHttpFrontend> {
    let (kind, value) = match (&r.path_prefix, &r.path_regex, &r.path_equals) {
        (_, Some(re), _) => (PathRuleKind::Regex, re.clone()),
        (_, _, Some(eq)) => (PathRuleKind::Equals, eq.clone()),
        (prefix, _, _) => (PathRuleKind::Prefix, prefix.clone().unwrap_or_default()),
    };
    Ok(RequestHttpFrontend {
        cluster_id: match &r.route {
            Route::Id { cluster_id } => Some(cluster_id.clone()),
            Route::Deny => None,
        },
        address: r.address.into(),
        hostname: r.hostname.clone(),
        path: PathRule { kind: kind as i32, value },
        method: r.method.clone(),
        position: RulePosition::Tree as i32,
        tags: tags(&r.tags)?,
        redirect: r.policy.redirect.map(|p| match p {
            Redirect::Forward => RedirectPolicy::Forward as i32,
            Redirect::Permanent => RedirectPolicy::Permanent as i32,
            Redirect::Unauthorized => RedirectPolicy::Unauthorized as i32,
        }),
        redirect_scheme: r.policy.redirect_scheme.map(|s| match s {
            Scheme::Same => RedirectScheme::UseSame as i32,
            Scheme::Http => RedirectScheme::UseHttp as i32,
            Scheme::Https => RedirectScheme::UseHttps as i32,
        }),
        redirect_template: match &r.policy.redirect_template {
            Some(t) => Some(match t.strip_prefix("file://") {
                Some(path) => answer_file("--redirect-template", std::path::Path::new(path))?,
                None => t.clone(),
            }),
            None => None,
        },
        rewrite_host: r.policy.rewrite_host.clone(),
        rewrite_path: r.policy.rewrite_path.clone(),
        rewrite_port: r.policy.rewrite_port.map(u32::from),
        required_auth: r.policy.required_auth.then_some(true),
        headers: r.policy.headers.iter().map(|h| header_edit(h)).collect::<anyhow::Result<_>>()?,
        ..Default::default()
    })
}

/// `POSITION=NAME=VALUE` (`frontend http add --header`).
fn header_edit(spec: &str) -> anyhow::Result<Header> {
    let mut parts = spec.splitn(3, '=');
    let (Some(position), Some(key), Some(val)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--header {spec:?} is not POSITION=NAME=VALUE (VALUE may be empty: the field is removed)")
    };
    let position = match position.trim().to_ascii_lowercase().as_str() {
        "request" => HeaderPosition::Request,
        "response" => HeaderPosition::Response,
        "both" => HeaderPosition::Both,
        other => bail!("--header position {other:?}: allowed: request, response, both"),
    };
    Ok(Header { position: position as i32, key: key.trim().to_string(), val: val.to_string() })
}

/// The contents of an answer file (Sōzu's CLI sends the contents, not the path).
fn answer_file(flag: &str, path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read the {flag} file {}: {e}", path.display()))
}

/// `CODE=TEMPLATE` or `CODE=file:///path` (as Sōzu 2.1's `cluster add --answer`).
fn cluster_answers(specs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let Some((code, value)) = spec.split_once('=') else {
            bail!("--answer {spec:?} is not CODE=TEMPLATE or CODE=file:///path")
        };
        let code = code.trim();
        if !matches!(code.parse::<u16>(), Ok(100..=599)) {
            bail!("--answer {spec:?}: {code:?} is not an HTTP status code");
        }
        let body = match value.strip_prefix("file://") {
            Some(path) => answer_file("--answer", std::path::Path::new(path))?,
            None => value.to_string(),
        };
        out.insert(code.to_string(), body);
    }
    Ok(out)
}

fn common(kind: ListenerType, action: &ListenerCommon) -> R {
    match action {
        ListenerCommon::Remove { address } => {
            R::RemoveListener(RemoveListener { address: (*address).into(), proxy: kind as i32 })
        }
        ListenerCommon::Activate { address } => {
            R::ActivateListener(ActivateListener { address: (*address).into(), proxy: kind as i32, from_scm: false })
        }
        ListenerCommon::Deactivate { address } => {
            R::DeactivateListener(DeactivateListener { address: (*address).into(), proxy: kind as i32, to_scm: false })
        }
    }
}

/// `--expect-proxy` / `--no-expect-proxy` of an update: only what was asked changes.
fn expect_proxy(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

fn tcp_listener(action: &TcpListenerAction) -> R {
    match action {
        TcpListenerAction::Add { address, options: o } => R::AddTcpListener(TcpListenerConfig {
            address: (*address).into(),
            public_address: o.public_address.map(Into::into),
            expect_proxy: o.expect_proxy,
            front_timeout: o.front_timeout.unwrap_or(60),
            back_timeout: o.back_timeout.unwrap_or(30),
            connect_timeout: o.connect_timeout.unwrap_or(3),
            active: false,
        }),
        TcpListenerAction::Update { address, options: o, no_expect_proxy } => {
            R::UpdateTcpListener(UpdateTcpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: expect_proxy(o.expect_proxy, *no_expect_proxy),
                front_timeout: o.front_timeout,
                back_timeout: o.back_timeout,
                connect_timeout: o.connect_timeout,
            })
        }
        TcpListenerAction::Common(c) => common(ListenerType::Tcp, c),
    }
}

fn http_listener(action: &HttpListenerAction) -> anyhow::Result<R> {
    Ok(match action {
        HttpListenerAction::Add { address, options: o, http, send_x_real_ip, elide_x_real_ip, answers: a } => {
            let mut answers = BTreeMap::new();
            for (code, file) in [("404", &a.answer_404), ("503", &a.answer_503)] {
                if let Some(file) = file {
                    answers.insert(code.to_string(), answer_file(&format!("--answer-{code}"), file)?);
                }
            }
            R::AddHttpListener(Box::new(HttpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: o.expect_proxy,
                sticky_name: http.sticky_name.clone().unwrap_or_else(|| "SOZUBALANCEID".into()),
                front_timeout: o.front_timeout.unwrap_or(60),
                back_timeout: o.back_timeout.unwrap_or(30),
                connect_timeout: o.connect_timeout.unwrap_or(3),
                request_timeout: http.request_timeout.unwrap_or(10),
                answers,
                sozu_id_header: http.sozu_id_header.clone(),
                send_x_real_ip: send_x_real_ip.then_some(true),
                elide_x_real_ip: elide_x_real_ip.then_some(true),
                ..Default::default()
            }))
        }
        HttpListenerAction::Update { address, options: o, no_expect_proxy, http, answers: a } => {
            let read = |code: u16, file: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
                file.as_ref().map(|f| answer_file(&format!("--answer-{code}"), f)).transpose()
            };
            let answers = CustomHttpAnswers {
                answer_301: read(301, &a.answer_301)?,
                answer_400: None,
                answer_401: read(401, &a.answer_401)?,
                answer_404: read(404, &a.answer_404)?,
                answer_408: read(408, &a.answer_408)?,
                answer_413: read(413, &a.answer_413)?,
                answer_421: read(421, &a.answer_421)?,
                answer_429: read(429, &a.answer_429)?,
                answer_502: read(502, &a.answer_502)?,
                answer_503: read(503, &a.answer_503)?,
                answer_504: read(504, &a.answer_504)?,
                answer_507: read(507, &a.answer_507)?,
            };
            R::UpdateHttpListener(Box::new(UpdateHttpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: expect_proxy(o.expect_proxy, *no_expect_proxy),
                sticky_name: http.sticky_name.clone(),
                front_timeout: o.front_timeout,
                back_timeout: o.back_timeout,
                connect_timeout: o.connect_timeout,
                request_timeout: http.request_timeout,
                http_answers: (answers != CustomHttpAnswers::default()).then_some(answers),
                sozu_id_header: http.sozu_id_header.clone(),
            }))
        }
        HttpListenerAction::Common(c) => common(ListenerType::Http, c),
    })
}

/// The request for a client command.
pub fn build_request(command: &Command) -> anyhow::Result<Request> {
    let verb = match command {
        Command::Status => R::Status(Status {}),
        Command::Shutdown { hard: false } => R::SoftStop(SoftStop {}),
        Command::Shutdown { hard: true } => R::HardStop(HardStop {}),
        Command::Upgrade { worker: Some(id), .. } => R::UpgradeWorker(*id),
        Command::Upgrade { worker: None, .. } => R::UpgradeMain(UpgradeMain {}),
        Command::Logging { filter } => R::Logging(filter.clone()),
        Command::Reload { file } => {
            R::ReloadConfiguration(file.as_ref().map(|f| f.display().to_string()).unwrap_or_default())
        }
        Command::Metrics { cmd } => match cmd {
            MetricsCmd::Enable => R::ConfigureMetrics(MetricsConfiguration::Enabled as i32),
            MetricsCmd::Disable => R::ConfigureMetrics(MetricsConfiguration::Disabled as i32),
            MetricsCmd::Clear => R::ConfigureMetrics(MetricsConfiguration::Clear as i32),
            MetricsCmd::Get { list, names, clusters, backends, no_clusters, workers, refresh: _ } => {
                R::QueryMetrics(QueryMetricsOptions {
                    list: *list,
                    cluster_ids: clusters.clone(),
                    backend_ids: backends.clone(),
                    metric_names: names.clone(),
                    no_clusters: *no_clusters,
                    workers: *workers,
                })
            }
        },
        Command::State { cmd } => match cmd {
            // like Sōzu's CLI: the save path is made absolute against our directory
            StateCmd::Save { file } => R::SaveState(std::path::absolute(file)?.display().to_string()),
            StateCmd::Load { file } => R::LoadState(file.display().to_string()),
            StateCmd::Stats => R::CountRequests(CountRequests {}),
        },
        Command::Cluster { cmd } => match cmd {
            ClusterCmd::List { id: Some(id), .. } => R::QueryClusterById(id.clone()),
            ClusterCmd::List { domain: Some(d), .. } => {
                let (hostname, path) = match d.split_once('/') {
                    Some((h, p)) => (h.to_string(), Some(format!("/{p}"))),
                    None => (d.clone(), None),
                };
                R::QueryClustersByDomain(QueryClusterByDomain { hostname, path })
            }
            ClusterCmd::List { .. } => R::QueryClustersHashes(QueryClustersHashes {}),
            ClusterCmd::Add {
                id,
                sticky_session,
                https_redirect,
                https_redirect_port,
                send_proxy,
                expect_proxy,
                load_balancing_policy,
                answers,
                www_authenticate,
                authorized_hashes,
            } => {
                let proxy_protocol = match (send_proxy, expect_proxy) {
                    (true, _) => Some(ProxyProtocolConfig::SendHeader as i32),
                    (_, true) => Some(ProxyProtocolConfig::ExpectHeader as i32),
                    _ => None,
                };
                let lb = match load_balancing_policy {
                    LoadBalancing::RoundRobin => LoadBalancingAlgorithms::RoundRobin,
                    LoadBalancing::Random => LoadBalancingAlgorithms::Random,
                    LoadBalancing::LeastLoaded => LoadBalancingAlgorithms::LeastLoaded,
                    LoadBalancing::PowerOfTwo => LoadBalancingAlgorithms::PowerOfTwo,
                };
                R::AddCluster(Box::new(Cluster {
                    cluster_id: id.clone(),
                    sticky_session: *sticky_session,
                    https_redirect: *https_redirect,
                    https_redirect_port: https_redirect_port.map(u32::from),
                    proxy_protocol,
                    load_balancing: lb as i32,
                    answers: cluster_answers(answers)?,
                    www_authenticate: www_authenticate.clone(),
                    authorized_hashes: authorized_hashes.clone(),
                    ..Default::default()
                }))
            }
            ClusterCmd::Remove { id } => R::RemoveCluster(id.clone()),
        },
        Command::Backend { cmd } => match cmd {
            BackendCmd::Add { id, backend_id, address, sticky_id, backup } => R::AddBackend(AddBackend {
                cluster_id: id.clone(),
                backend_id: backend_id.clone(),
                address: (*address).into(),
                sticky_id: sticky_id.clone(),
                load_balancing_parameters: Some(LoadBalancingParams { weight: 0 }),
                backup: *backup,
            }),
            BackendCmd::Remove { id, backend_id, address } => R::RemoveBackend(RemoveBackend {
                cluster_id: id.clone(),
                backend_id: backend_id.clone(),
                address: (*address).into(),
            }),
        },
        Command::Frontend { cmd } => match cmd {
            FrontendCmd::Http { cmd: HttpFrontendCmd::Add(r) } => R::AddHttpFrontend(Box::new(http_frontend(r)?)),
            FrontendCmd::Http { cmd: HttpFrontendCmd::Remove(r) } => R::RemoveHttpFrontend(Box::new(http_frontend(r)?)),
            FrontendCmd::Tcp { cmd: TcpFrontendCmd::Add { id, address, tags: t } } => {
                R::AddTcpFrontend(RequestTcpFrontend {
                    cluster_id: id.clone(),
                    address: (*address).into(),
                    tags: tags(t)?,
                })
            }
            FrontendCmd::Tcp { cmd: TcpFrontendCmd::Remove { id, address } } => {
                R::RemoveTcpFrontend(RequestTcpFrontend {
                    cluster_id: id.clone(),
                    address: (*address).into(),
                    tags: BTreeMap::new(),
                })
            }
            FrontendCmd::List { http, https, tcp, domain } => {
                R::ListFrontends(FrontendFilters { http: *http, https: *https, tcp: *tcp, domain: domain.clone() })
            }
        },
        Command::Listener { cmd } => match cmd {
            ListenerCmd::Http { cmd } => http_listener(cmd)?,
            ListenerCmd::Tcp { cmd } => tcp_listener(cmd),
            ListenerCmd::List => R::ListListeners(ListListeners {}),
        },
        other => bail!("{other:?} is not a request to the master"),
    };
    Ok(verb.into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn request(args: &[&str]) -> anyhow::Result<R> {
        let cli = Cli::try_parse_from(std::iter::once("sozu").chain(args.iter().copied()))?;
        Ok(build_request(&cli.command)?.request_type.expect("a verb"))
    }

    #[test]
    fn load_balancing_policies_by_sozu_names_in_any_case_and_dashed() {
        for (name, want) in [
            ("round_robin", LoadBalancingAlgorithms::RoundRobin),
            ("ROUND_ROBIN", LoadBalancingAlgorithms::RoundRobin),
            ("round-robin", LoadBalancingAlgorithms::RoundRobin),
            ("random", LoadBalancingAlgorithms::Random),
            ("least_loaded", LoadBalancingAlgorithms::LeastLoaded),
            ("power_of_two", LoadBalancingAlgorithms::PowerOfTwo),
            ("Power-Of-Two", LoadBalancingAlgorithms::PowerOfTwo),
        ] {
            let Ok(R::AddCluster(c)) = request(&["cluster", "add", "-i", "a", "--load-balancing-policy", name]) else {
                panic!("{name}")
            };
            assert_eq!(c.load_balancing, want as i32, "{name}");
        }
        assert!(request(&["cluster", "add", "-i", "a", "--load-balancing-policy", "maglev"]).is_err());
        let Ok(R::AddCluster(c)) = request(&["cluster", "add", "-i", "a"]) else { panic!() };
        assert_eq!(c.load_balancing, LoadBalancingAlgorithms::RoundRobin as i32);
    }

    #[test]
    fn cluster_answers_inline_or_from_a_file() {
        let file = std::env::temp_dir().join(format!("sozu-cli-answer-{}", std::process::id()));
        std::fs::write(&file, "HTTP/1.1 503 Busy\r\n\r\nfrom a file").unwrap();
        let from_file = format!("503=file://{}", file.display());
        let r = request(&["cluster", "add", "-i", "a", "--answer", "404=not here", "--answer", &from_file]);
        let _ = std::fs::remove_file(&file);
        let Ok(R::AddCluster(c)) = r else { panic!("{r:?}") };
        assert_eq!(c.answers.get("404").map(String::as_str), Some("not here"));
        assert_eq!(c.answers.get("503").map(String::as_str), Some("HTTP/1.1 503 Busy\r\n\r\nfrom a file"));
        for bad in ["503", "abc=x", "99=x", "503=file:///nonexistent/file"] {
            assert!(request(&["cluster", "add", "-i", "a", "--answer", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_updates_change_only_what_is_given_and_options_fit_the_protocol() {
        let Ok(R::UpdateTcpListener(u)) =
            request(&["listener", "tcp", "update", "-a", "127.0.0.1:1", "--no-expect-proxy"])
        else {
            panic!()
        };
        assert_eq!((u.expect_proxy, u.front_timeout), (Some(false), None));
        let Ok(R::UpdateHttpListener(u)) =
            request(&["listener", "http", "update", "-a", "127.0.0.1:1", "--expect-proxy"])
        else {
            panic!()
        };
        assert_eq!((u.expect_proxy, u.http_answers), (Some(true), None));
        assert!(
            request(&["listener", "http", "update", "-a", "127.0.0.1:1", "--expect-proxy", "--no-expect-proxy"])
                .is_err()
        );
        // HTTP-only options are not offered for TCP listeners
        assert!(request(&["listener", "tcp", "add", "-a", "127.0.0.1:1", "--sticky-name", "x"]).is_err());
        assert!(request(&["listener", "tcp", "update", "-a", "127.0.0.1:1", "--request-timeout", "3"]).is_err());
        let Ok(R::RemoveListener(r)) = request(&["listener", "tcp", "remove", "-a", "127.0.0.1:1"]) else { panic!() };
        assert_eq!(r.proxy, ListenerType::Tcp as i32);
    }

    #[test]
    fn metrics_refresh_is_a_positive_number_of_seconds() {
        assert!(matches!(request(&["metrics", "get", "-r", "2"]), Ok(R::QueryMetrics(_))));
        assert!(request(&["metrics", "get", "-r", "0"]).is_err());
    }
}

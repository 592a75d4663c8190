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
        ..Default::default()
    })
}

fn listener(kind: ListenerType, action: &ListenerAction) -> Request {
    match action {
        ListenerAction::Add { address, options: o } => match kind {
            ListenerType::Tcp => R::AddTcpListener(TcpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: o.expect_proxy,
                front_timeout: o.front_timeout.unwrap_or(60),
                back_timeout: o.back_timeout.unwrap_or(30),
                connect_timeout: o.connect_timeout.unwrap_or(3),
                active: false,
            }),
            _ => R::AddHttpListener(HttpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: o.expect_proxy,
                sticky_name: o.sticky_name.clone().unwrap_or_else(|| "SOZUBALANCEID".into()),
                front_timeout: o.front_timeout.unwrap_or(60),
                back_timeout: o.back_timeout.unwrap_or(30),
                connect_timeout: o.connect_timeout.unwrap_or(3),
                request_timeout: o.request_timeout.unwrap_or(10),
                ..Default::default()
            }),
        },
        ListenerAction::Update { address, options: o } => match kind {
            ListenerType::Tcp => R::UpdateTcpListener(UpdateTcpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: o.expect_proxy.then_some(true),
                front_timeout: o.front_timeout,
                back_timeout: o.back_timeout,
                connect_timeout: o.connect_timeout,
            }),
            _ => R::UpdateHttpListener(UpdateHttpListenerConfig {
                address: (*address).into(),
                public_address: o.public_address.map(Into::into),
                expect_proxy: o.expect_proxy.then_some(true),
                sticky_name: o.sticky_name.clone(),
                front_timeout: o.front_timeout,
                back_timeout: o.back_timeout,
                connect_timeout: o.connect_timeout,
                request_timeout: o.request_timeout,
            }),
        },
        ListenerAction::Remove { address } => {
            R::RemoveListener(RemoveListener { address: (*address).into(), proxy: kind as i32 })
        }
        ListenerAction::Activate { address } => {
            R::ActivateListener(ActivateListener { address: (*address).into(), proxy: kind as i32, from_scm: false })
        }
        ListenerAction::Deactivate { address } => {
            R::DeactivateListener(DeactivateListener { address: (*address).into(), proxy: kind as i32, to_scm: false })
        }
    }
    .into()
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
            MetricsCmd::Get { list, names, clusters, backends, no_clusters, workers } => {
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
            ClusterCmd::Add { id, sticky_session, https_redirect, send_proxy, expect_proxy, load_balancing_policy } => {
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
                R::AddCluster(Cluster {
                    cluster_id: id.clone(),
                    sticky_session: *sticky_session,
                    https_redirect: *https_redirect,
                    proxy_protocol,
                    load_balancing: lb as i32,
                    ..Default::default()
                })
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
            FrontendCmd::Http { cmd: HttpFrontendCmd::Add(r) } => R::AddHttpFrontend(http_frontend(r)?),
            FrontendCmd::Http { cmd: HttpFrontendCmd::Remove(r) } => R::RemoveHttpFrontend(http_frontend(r)?),
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
        Command::Listener { cmd } => {
            return Ok(match cmd {
                ListenerCmd::Http { cmd } => listener(ListenerType::Http, cmd),
                ListenerCmd::Tcp { cmd } => listener(ListenerType::Tcp, cmd),
                ListenerCmd::List => R::ListListeners(ListListeners {}).into(),
            });
        }
        other => bail!("{other:?} is not a request to the master"),
    };
    Ok(verb.into())
}

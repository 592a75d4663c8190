//! Printing answers: a readable table, or the content as JSON (as Sōzu prints it).

use sozu_proto::response_content::ContentType;
use sozu_proto::{Response, RunState};

/// `writeln!` into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Prints a terminal answer (in one write: a table is not a write per line).
pub fn print(response: &Response, json: bool) {
    let content = response.content.as_ref().and_then(|c| c.content_type.as_ref());
    if json {
        let value = content.map_or_else(|| serde_json::json!({}), |c| serde_json::to_value(c).unwrap_or_default());
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    let mut out = String::with_capacity(1024);
    put!(out, "Success: {}", response.message);
    if let Some(c) = content {
        print_content(&mut out, c, "");
    }
    print!("{out}");
}

fn state_name(state: i32) -> &'static str {
    match RunState::try_from(state) {
        Ok(RunState::Running) => "RUNNING",
        Ok(RunState::Stopping) => "STOPPING",
        Ok(RunState::Stopped) => "STOPPED",
        Ok(RunState::NotAnswering) => "NOT_ANSWERING",
        Err(_) => "?",
    }
}

fn print_content(out: &mut String, content: &ContentType, indent: &str) {
    match content {
        ContentType::Workers(w) => {
            put!(out, "{indent}{:<8} {:<10} STATE", "WORKER", "PID");
            for w in &w.vec {
                put!(out, "{indent}{:<8} {:<10} {}", w.id, w.pid, state_name(w.run_state));
            }
        }
        ContentType::FrontendList(f) => {
            put!(out, "{indent}{:<6} {:<22} {:<30} {:<16} CLUSTER", "KIND", "ADDRESS", "HOSTNAME", "PATH");
            for (kind, list) in [("http", &f.http_frontends), ("https", &f.https_frontends)] {
                for f in list {
                    let cluster = f.cluster_id.as_deref().unwrap_or("(deny)");
                    put!(
                        out,
                        "{indent}{kind:<6} {:<22} {:<30} {:<16} {cluster}",
                        f.address.to_string(),
                        f.hostname,
                        f.path.value
                    );
                }
            }
            for f in &f.tcp_frontends {
                put!(
                    out,
                    "{indent}{:<6} {:<22} {:<30} {:<16} {}",
                    "tcp",
                    f.address.to_string(),
                    "-",
                    "-",
                    f.cluster_id
                );
            }
        }
        ContentType::ListenersList(l) => {
            put!(out, "{indent}{:<6} {:<22} ACTIVE", "KIND", "ADDRESS");
            for (a, l) in &l.http_listeners {
                put!(out, "{indent}{:<6} {a:<22} {}", "http", l.active);
            }
            for (a, l) in &l.https_listeners {
                put!(out, "{indent}{:<6} {a:<22} {}", "https", l.active);
            }
            for (a, l) in &l.tcp_listeners {
                put!(out, "{indent}{:<6} {a:<22} {}", "tcp", l.active);
            }
        }
        ContentType::ClusterHashes(h) => {
            put!(out, "{indent}{:<30} HASH", "CLUSTER");
            for (id, hash) in &h.map {
                put!(out, "{indent}{id:<30} {hash:016x}");
            }
        }
        ContentType::Clusters(c) => {
            for info in &c.vec {
                let id = info.configuration.as_ref().map_or("?", |c| c.cluster_id.as_str());
                put!(out, "{indent}cluster {id}");
                for f in info.http_frontends.iter().chain(&info.https_frontends) {
                    put!(out, "{indent}  frontend {} {}{}", f.address, f.hostname, f.path.value);
                }
                for f in &info.tcp_frontends {
                    put!(out, "{indent}  frontend tcp {}", f.address);
                }
                for b in &info.backends {
                    put!(out, "{indent}  backend {} {}", b.backend_id, b.address);
                }
            }
        }
        ContentType::WorkerResponses(w) => {
            for (who, content) in &w.map {
                put!(out, "{indent}{who}:");
                if let Some(c) = &content.content_type {
                    print_content(out, c, &format!("{indent}  "));
                }
            }
        }
        ContentType::RequestCounts(c) => {
            put!(out, "{indent}{:<30} COUNT", "REQUEST");
            for (verb, n) in &c.map {
                put!(out, "{indent}{verb:<30} {n}");
            }
        }
        other => put!(out, "{indent}{}", serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

/// Prints one event of an event stream.
pub fn print_event(response: &Response, json: bool) {
    let Some(ContentType::Event(event)) = response.content.as_ref().and_then(|c| c.content_type.as_ref()) else {
        if !json {
            println!("{}", response.message);
        }
        return;
    };
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
    } else {
        let kind = sozu_proto::EventKind::try_from(event.kind).map_or("?".to_string(), |k| k.as_str_name().to_string());
        println!(
            "{} from {}: cluster={} backend={}",
            kind,
            response.message,
            event.cluster_id.as_deref().unwrap_or("-"),
            event.backend_id.as_deref().unwrap_or("-")
        );
    }
}

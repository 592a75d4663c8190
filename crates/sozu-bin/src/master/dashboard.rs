//! The JSON-lines dashboard socket: one JSON object per line each way.
//!
//! Requests: `{"id": <any>, "method": "hello" | "state" | "command" | "events.subscribe"
//! | "audit.tail", …}`. Answers carry the request's `id`, `ok`, and a `result` or an
//! `error: {code, message}` with stable codes (`invalid_json`, `invalid_utf8`,
//! `invalid_request`, `invalid_command`, `unknown_method`, `frame_too_large`,
//! `unauthorized`, `failure`). Requests are served in order; events arrive as
//! `{"event": {seq, source, kind, …}}` lines and, when a subscriber falls behind, a
//! `{"lagged": {"dropped": n}}` notice replaces what was dropped.

use mio::Token;
use serde_json::{Value, json};
use slog::warn;
use sozu_channel::{ChannelError, LineError};
use sozu_proto::request::RequestType;
use sozu_proto::{Request, RunState};

use super::conn::{Conn, event_json};
use super::server::{Master, Queued};

const CAPABILITIES: &[&str] = &["hello", "state", "command", "events.subscribe", "audit.tail"];

impl Master {
    /// Reads every complete line of a dashboard client into its queue, then serves it.
    pub(super) fn dashboard_readable(&mut self, token: Token) {
        loop {
            let Some(client) = self.clients.get_mut(&token) else { return };
            if client.closing || client.queue.iter().any(|q| matches!(q, Queued::DashError { fatal: true, .. })) {
                break;
            }
            let Conn::Json(json) = &mut client.conn else { return };
            let item = match json.next_line() {
                Ok(None) => break,
                Ok(Some(Ok(line))) => parse_line(&line),
                Ok(Some(Err(LineError::InvalidUtf8))) => Queued::DashError {
                    id: Value::Null,
                    code: "invalid_utf8",
                    message: "the line is not valid UTF-8".into(),
                    fatal: false,
                },
                Ok(Some(Err(e))) => Queued::DashError {
                    id: Value::Null,
                    code: "frame_too_large",
                    message: format!("{e}; closing"),
                    fatal: true,
                },
                Err(ChannelError::Closed) | Err(_) => {
                    self.drop_client(token);
                    return;
                }
            };
            client.queue.push_back(item);
        }
        self.pump_client(token);
    }

    /// Serves one dashboard request.
    pub(super) fn serve_dashboard(&mut self, token: Token, id: Value, method: &str, params: Value) {
        let Some(client) = self.clients.get(&token) else { return };
        if let Some(reason) = self.unauthorized(token) {
            warn!(self.log, "dashboard client {}: {method} refused: {reason}", client.client_id);
            let request = command_request(&params).unwrap_or_default();
            self.audit_refusal(token, &request, &reason);
            self.dash_answer(token, |j| j.error(id, "unauthorized", &reason));
            return;
        }
        match method {
            "hello" => {
                let (client_id, session) = (client.client_id, client.identity.session.to_string());
                let result = json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "capabilities": CAPABILITIES,
                    "connection_id": client_id,
                    "session": session,
                });
                self.dash_answer(token, |j| j.ok(id, result));
            }
            "state" => {
                let result = self.snapshot();
                self.dash_answer(token, |j| j.ok(id, result));
            }
            "command" => match command_request(&params) {
                Ok(request) => {
                    if let Some(Conn::Json(j)) = self.clients.get_mut(&token).map(|c| &mut c.conn) {
                        j.current = Some(id);
                    }
                    self.handle_request(token, request);
                }
                Err(message) => self.dash_answer(token, |j| j.error(id, "invalid_command", &message)),
            },
            "events.subscribe" => {
                let since = params.get("since").and_then(Value::as_u64);
                let replay: Vec<Value> = self
                    .journal
                    .iter()
                    .filter(|(seq, _, _)| since.is_some_and(|s| *seq >= s))
                    .map(|(seq, source, event)| event_json(*seq, source, event))
                    .collect();
                let result = json!({"subscribed": true, "next_seq": self.next_seq, "replayed": replay.len()});
                if let Some(c) = self.clients.get_mut(&token) {
                    c.subscribed = true;
                }
                self.dash_answer(token, |j| {
                    j.subscribed = true;
                    j.ok(id, result)?;
                    for line in &replay {
                        j.event(line);
                    }
                    Ok(())
                });
            }
            "audit.tail" => {
                let n = params.get("n").and_then(Value::as_u64).unwrap_or(20) as usize;
                let skip = self.audit_tail.len().saturating_sub(n);
                let records: Vec<Value> = self.audit_tail.iter().skip(skip).cloned().collect();
                self.dash_answer(token, |j| j.ok(id, json!({"records": records})));
            }
            other => {
                let message = format!("unknown method {other:?}; methods: {}", CAPABILITIES.join(", "));
                self.dash_answer(token, |j| j.error(id, "unknown_method", &message));
            }
        }
    }

    fn dash_answer(
        &mut self,
        token: Token,
        write: impl FnOnce(&mut super::conn::JsonConn) -> Result<(), ChannelError>,
    ) {
        let Some(client) = self.clients.get_mut(&token) else { return };
        let Conn::Json(j) = &mut client.conn else { return };
        if write(j).is_err() {
            self.drop_client(token);
            return;
        }
        self.client_writable(token);
    }

    /// The `state` snapshot.
    fn snapshot(&self) -> Value {
        let run_state = |s: RunState| s.as_str_name();
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|(id, w)| json!({"id": id, "pid": w.pid, "run_state": run_state(w.run_state), "generation": self.boot_generation}))
            .collect();
        let listeners = self.state.listeners_list();
        let listener =
            |kind: &str, addr: &String, active: bool| json!({"kind": kind, "address": addr, "active": active});
        let mut list: Vec<Value> = Vec::new();
        list.extend(listeners.http_listeners.iter().map(|(a, l)| listener("http", a, l.active)));
        list.extend(listeners.https_listeners.iter().map(|(a, l)| listener("https", a, l.active)));
        list.extend(listeners.tcp_listeners.iter().map(|(a, l)| listener("tcp", a, l.active)));
        json!({
            "workers": workers,
            "failed_worker_slots": self.failed_slots,
            "listeners": list,
            "clusters": self.state.cluster_count(),
            "backends": self.state.backend_count(),
            "boot_generation": self.boot_generation,
            "next_event_seq": self.next_seq,
        })
    }
}

/// A received line as a queued item.
fn parse_line(line: &str) -> Queued {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Queued::DashError { id: Value::Null, code: "invalid_json", message: e.to_string(), fatal: false };
        }
    };
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    match value.get("method").and_then(Value::as_str) {
        Some(method) => Queued::Dash { id, method: method.to_string(), params: value.clone() },
        None => Queued::DashError {
            id,
            code: "invalid_request",
            message: "a request is an object with a \"method\"".into(),
            fatal: false,
        },
    }
}

/// `{"request": {"ADD_CLUSTER": {…}}}` → the protobuf request (state-file JSON form).
fn command_request(params: &Value) -> Result<Request, String> {
    let request = params.get("request").ok_or("a command needs \"request\": {\"VERB\": payload}")?;
    let verb: RequestType = serde_json::from_value(request.clone()).map_err(|e| format!("invalid request: {e}"))?;
    Ok(verb.into())
}

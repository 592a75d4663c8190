//! The JSON form of a record (facts §8.3 keys), written with sorted keys.

use std::fmt;

use serde_json::{Map, Value, json};
use ulid::Ulid;

use crate::entry::{Actor, AuditEntry, AuditResult, ErrorCode, Fanout, FanoutStatus};
use crate::sanitize::sanitize;
use crate::time::{format_rfc3339, parse_rfc3339};

/// The record as a JSON object, free text line-sanitized, without `prev`/`digest`.
/// Keys: `ts`, `boot_generation`, `session_ulid`, `request_ulid`, `actor` {`uid`, `gid`,
/// `pid`, `user`, `comm`, `role`}, `client_id`, `connect_ts`, `socket`, `verb`,
/// `target`, `result`, `cluster_id`, `backend_id`, `sozu_version`, `build_git_sha`,
/// `extras` {`error_code`, `reason`, `elapsed_ms`, `fanout`, `request_sha256`, each
/// only when set}.
pub fn json_value(entry: &AuditEntry) -> Value {
    let s = |t: &str| Value::String(sanitize(t).into_owned());
    let o = |t: &Option<String>| t.as_deref().map_or(Value::Null, s);
    let a = &entry.actor;
    let mut extras = Map::new();
    if let Some(code) = entry.error_code {
        extras.insert("error_code".into(), code.as_str().into());
    }
    if let Some(reason) = &entry.reason {
        extras.insert("reason".into(), s(reason));
    }
    if let Some(ms) = entry.elapsed_ms {
        extras.insert("elapsed_ms".into(), ms.into());
    }
    if let Some(f) = entry.fanout {
        extras.insert(
            "fanout".into(),
            json!({"status": f.status.as_str(), "workers_ok": f.workers_ok,
                   "workers_err": f.workers_err, "workers_expected": f.workers_expected}),
        );
    }
    if let Some(sha) = &entry.request_sha256 {
        extras.insert("request_sha256".into(), s(sha));
    }
    json!({
        "ts": format_rfc3339(entry.ts),
        "boot_generation": entry.boot_generation,
        "session_ulid": entry.session.to_string(),
        "request_ulid": entry.request.to_string(),
        "actor": {"uid": a.uid, "gid": a.gid, "pid": a.pid, "user": o(&a.user), "comm": o(&a.comm), "role": a.role()},
        "client_id": entry.client_id,
        "connect_ts": entry.connect_ts.map(format_rfc3339),
        "socket": s(&entry.socket),
        "verb": s(&entry.verb),
        "target": s(&entry.target),
        "result": entry.result.as_str(),
        "cluster_id": o(&entry.cluster_id),
        "backend_id": o(&entry.backend_id),
        "sozu_version": s(&entry.version),
        "build_git_sha": o(&entry.build_git_sha),
        "extras": Value::Object(extras),
    })
}

/// Compact JSON with object keys sorted at every level, whatever serde_json's
/// features: the bytes the hash chain covers.
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A JSON line that is not a record of this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an audit record: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

fn err(what: &str) -> ParseError {
    ParseError(what.to_string())
}

/// Reads back a JSON record (as written by [`JsonSink`](crate::JsonSink); `prev` and
/// `digest` are ignored). Gives the sanitized entry that was recorded.
pub fn parse_json_line(line: &str) -> Result<AuditEntry, ParseError> {
    let v: Value = serde_json::from_str(line).map_err(|e| ParseError(e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| err("not an object"))?;
    let get = |k: &str| obj.get(k).ok_or_else(|| ParseError(format!("missing {k}")));
    let string = |k: &str| -> Result<String, ParseError> {
        get(k)?.as_str().map(str::to_string).ok_or_else(|| ParseError(format!("{k} is not a string")))
    };
    let opt_string = |v: Option<&Value>| -> Result<Option<String>, ParseError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err("expected a string or null")),
        }
    };
    let opt_u64 = |v: Option<&Value>| -> Result<Option<u64>, ParseError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| err("expected an unsigned integer")),
        }
    };
    let ulid = |k: &str| -> Result<Ulid, ParseError> {
        Ulid::from_string(&string(k)?).map_err(|e| ParseError(format!("{k}: {e}")))
    };
    let time = |s: &str| parse_rfc3339(s).ok_or_else(|| ParseError(format!("bad timestamp {s:?}")));
    let u32_of = |v: Option<u64>| v.map(u32::try_from).transpose().map_err(|_| err("out of range"));

    let actor = get("actor")?.as_object().ok_or_else(|| err("actor is not an object"))?;
    let pid = match actor.get("pid") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| err("bad pid"))?),
    };
    let extras = get("extras")?.as_object().ok_or_else(|| err("extras is not an object"))?;
    let fanout = match extras.get("fanout") {
        None => None,
        Some(f) => {
            let n =
                |k: &str| f.get(k).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| err(k));
            let status = f.get("status").and_then(Value::as_str).ok_or_else(|| err("fanout.status"))?;
            Some(Fanout {
                status: FanoutStatus::ALL
                    .into_iter()
                    .find(|s| s.as_str() == status)
                    .ok_or_else(|| err("fanout.status"))?,
                workers_ok: n("workers_ok")?,
                workers_err: n("workers_err")?,
                workers_expected: n("workers_expected")?,
            })
        }
    };
    Ok(AuditEntry {
        ts: time(&string("ts")?)?,
        session: ulid("session_ulid")?,
        request: ulid("request_ulid")?,
        verb: string("verb")?,
        actor: Actor {
            uid: u32_of(opt_u64(actor.get("uid"))?)?,
            gid: u32_of(opt_u64(actor.get("gid"))?)?,
            pid,
            user: opt_string(actor.get("user"))?,
            comm: opt_string(actor.get("comm"))?,
        },
        client_id: opt_u64(obj.get("client_id"))?,
        connect_ts: opt_string(obj.get("connect_ts"))?.map(|s| time(&s)).transpose()?,
        socket: string("socket")?,
        target: string("target")?,
        cluster_id: opt_string(obj.get("cluster_id"))?,
        backend_id: opt_string(obj.get("backend_id"))?,
        result: match string("result")?.as_str() {
            "ok" => AuditResult::Ok,
            "err" => AuditResult::Err,
            other => return Err(ParseError(format!("result {other:?}"))),
        },
        error_code: opt_string(extras.get("error_code"))?
            .map(|c| ErrorCode::from_name(&c).ok_or_else(|| ParseError(format!("error_code {c:?}"))))
            .transpose()?,
        reason: opt_string(extras.get("reason"))?,
        elapsed_ms: opt_u64(extras.get("elapsed_ms"))?,
        fanout,
        request_sha256: opt_string(extras.get("request_sha256"))?,
        version: string("sozu_version")?,
        build_git_sha: opt_string(obj.get("build_git_sha"))?,
        boot_generation: u32_of(opt_u64(obj.get("boot_generation"))?)?.ok_or_else(|| err("missing boot_generation"))?,
    })
}

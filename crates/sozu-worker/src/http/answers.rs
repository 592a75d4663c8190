//! The answers a worker gives itself, when no backend can, and the custom bodies an
//! operator sets for them (a listener's `answers` / `http_answers`, a cluster's
//! `answers` / `answer_503`, keyed by status code; the cluster's win for requests routed
//! to it). A custom answer is the body of our response: we write the status line and the
//! headers (`content-type: text/html`), so a custom body cannot break the framing.

use std::collections::HashMap;
use std::sync::Arc;

/// Custom answer bodies by status code.
pub(crate) type Custom = Arc<HashMap<u16, Arc<str>>>;

/// Custom bodies from an `answers` map (keys that are not status codes are ignored)
/// and the deprecated per-status fields.
pub(crate) fn custom<'a>(
    map: &'a std::collections::BTreeMap<String, String>,
    fields: impl IntoIterator<Item = (u16, Option<&'a String>)>,
) -> Option<Custom> {
    let mut out: HashMap<u16, Arc<str>> = HashMap::new();
    for (status, body) in fields {
        if let Some(body) = body {
            out.insert(status, Arc::from(body.as_str()));
        }
    }
    for (key, body) in map {
        if let Ok(status) = key.trim().parse::<u16>() {
            out.insert(status, Arc::from(body.as_str()));
        }
    }
    (!out.is_empty()).then(|| Arc::new(out))
}

/// A complete response with our short text body, or the operator's `custom` one;
/// `close` adds `Connection: close`.
pub(crate) fn answer_with(status: u16, close: bool, custom: Option<&str>) -> Vec<u8> {
    let (reason, body) = match status {
        400 => ("Bad Request", "The request is malformed or over a size limit."),
        401 => ("Unauthorized", "This address is not served."),
        404 => ("Not Found", "No frontend matches this host and path."),
        408 => ("Request Timeout", "The request took too long to arrive."),
        502 => ("Bad Gateway", "The backend failed to answer properly."),
        503 => ("Service Unavailable", "No backend is available for this cluster."),
        504 => ("Gateway Timeout", "The backend took too long to answer."),
        _ => ("Error", "Error."),
    };
    let connection = if close { "connection: close\r\n" } else { "" };
    let (kind, body) = match custom {
        Some(c) => ("text/html; charset=utf-8", c.to_string()),
        None => ("text/plain; charset=utf-8", format!("{body}\n")),
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
         cache-control: no-cache\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::head::{Parsed, parse_response};

    #[test]
    fn custom_bodies_keep_our_framing() {
        let map = std::collections::BTreeMap::from([
            ("503".to_string(), "<h1>down for maintenance</h1>".to_string()),
            ("nope".to_string(), "ignored".to_string()),
        ]);
        let old = "old 404".to_string();
        let custom = super::custom(&map, [(404, Some(&old)), (502, None)]).unwrap();
        assert_eq!(custom.len(), 2);
        let bytes = super::answer_with(503, false, custom.get(&503).map(|b| &**b));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("\r\n\r\n<h1>down for maintenance</h1>"), "{text}");
        let Parsed::Done(head) = parse_response(&bytes, false) else { panic!() };
        assert_eq!(head.framing, super::super::framing::Framing::Length(29));
        assert!(super::custom(&std::collections::BTreeMap::new(), []).is_none());
    }

    #[test]
    fn answers_are_well_formed_responses() {
        for status in [400, 401, 404, 408, 502, 503, 504] {
            for close in [false, true] {
                let bytes = super::answer_with(status, close, None);
                let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{status}") };
                assert_eq!(head.status, status);
                assert_eq!(head.keep_alive, !close);
                let super::super::framing::Framing::Length(n) = head.framing else { panic!() };
                assert_eq!(head.len + n as usize, bytes.len());
            }
        }
    }
}

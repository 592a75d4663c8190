//! The answers a worker gives itself, when no backend can, and the custom ones an
//! operator sets for them (a listener's `answers` / `http_answers`, a cluster's
//! `answers` / `answer_503`, keyed by status code; the cluster's win for requests routed
//! to it). A custom answer is either a whole response, as Sōzu 2.1's templates are
//! (`HTTP/1.1 503 Busy\r\nRetry-After: 5\r\n\r\nbody`: its status line, its headers and
//! its body are kept), or just a body (`content-type: text/html`). Either way we write the
//! framing headers ourselves (`content-length`, `connection`; a template's own are
//! dropped), so a custom answer cannot break the framing. A redirection's `Location`
//! and a challenge's `WWW-Authenticate` are ours too (a template's own is replaced).
//! A custom answer's `%VARIABLES`, by Sōzu's names, are replaced by their values for
//! the request answered ([`Vars`]); a `%` not starting one is sent as written.

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

/// What a custom answer's `%VARIABLES` stand for, for the request answered. Empty when
/// unknown (a request refused before it was routed has no id).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Vars {
    /// `%REQUEST_ID`: the id the request has (or would have) in `Sozu-Id`.
    pub request_id: String,
    /// Its frontend's cluster (`%CLUSTER_ID`, and `%ROUTE`), `None` for a deny
    /// frontend (`%ROUTE` is `deny`); the default: no frontend matched.
    pub route: Option<Option<String>>,
    /// `%BACKEND_ID`: the backend it went to last.
    pub backend_id: String,
    /// `%DURATION`: the timeout that ran out (`408`, `504`), such as `30s`.
    pub duration: String,
}

/// `text` with every `%NAME` of a known variable replaced: [`Vars`], `%MESSAGE` (our
/// explanation of the status), `%REDIRECT_LOCATION` and `%WWW_AUTHENTICATE` (the
/// values of `field`, when it is that header). Sōzu's parser details are not ours:
/// `%PHASE`, `%CAPACITY` and `%TEMPLATE_NAME` become empty, and
/// `%SUCCESSFULLY_PARSED`, `%PARTIALLY_PARSED` and `%INVALID` `null`, which keeps the
/// scripts of Sōzu's default templates valid.
fn fill<'a>(text: &'a str, message: &str, field: Option<(&str, &str)>, vars: &Vars) -> std::borrow::Cow<'a, str> {
    if !text.contains('%') {
        return std::borrow::Cow::Borrowed(text);
    }
    let field_named = |name: &str| field.filter(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v);
    let values: [(&str, &str); 14] = [
        ("REQUEST_ID", &vars.request_id),
        ("ROUTE", vars.route.as_ref().map_or("", |r| r.as_deref().unwrap_or("deny"))),
        ("CLUSTER_ID", vars.route.as_ref().and_then(|r| r.as_deref()).unwrap_or_default()),
        ("BACKEND_ID", &vars.backend_id),
        ("DURATION", &vars.duration),
        ("MESSAGE", message),
        ("REDIRECT_LOCATION", field_named("location")),
        ("WWW_AUTHENTICATE", field_named("www-authenticate")),
        ("PHASE", ""),
        ("CAPACITY", ""),
        ("TEMPLATE_NAME", ""),
        ("SUCCESSFULLY_PARSED", "null"),
        ("PARTIALLY_PARSED", "null"),
        ("INVALID", "null"),
    ];
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match values.iter().find(|(name, _)| after.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// A complete response with our short text body, or the operator's `custom` one (its
/// variables filled from `vars`); `close` adds `Connection: close`, `field` one more
/// header field (a redirection's `Location`, a challenge's `WWW-Authenticate`; it
/// replaces a template's own).
pub(crate) fn answer_with(
    status: u16,
    close: bool,
    custom: Option<&str>,
    field: Option<(&str, &str)>,
    vars: &Vars,
) -> Vec<u8> {
    let (reason, body) = match status {
        301 => ("Moved Permanently", "This address moved."),
        400 => {
            ("Bad Request", "The request is malformed, over a size limit, or cannot be rewritten as its frontend asks.")
        }
        401 => ("Unauthorized", "This address is not served without credentials."),
        404 => ("Not Found", "No frontend matches this host and path."),
        408 => ("Request Timeout", "The request took too long to arrive."),
        502 => ("Bad Gateway", "The backend failed to answer properly."),
        503 => ("Service Unavailable", "No backend is available for this cluster."),
        504 => ("Gateway Timeout", "The backend took too long to answer."),
        _ => ("Error", "Error."),
    };
    let connection = if close { "connection: close\r\n" } else { "" };
    let extra = field.map(|(name, value)| format!("{name}: {value}\r\n")).unwrap_or_default();
    let filled = custom.map(|c| fill(c, body, field, vars));
    let custom = filled.as_deref();
    if let Some((status_line, headers, body)) = custom.and_then(template) {
        let mut out = format!("{status_line}\r\n");
        for h in headers {
            let replaced =
                field.is_some_and(|(name, _)| h.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name)));
            if !replaced {
                out.push_str(h);
                out.push_str("\r\n");
            }
        }
        out.push_str(&extra);
        out.push_str(&format!("content-length: {}\r\n{connection}\r\n", body.len()));
        out.push_str(body);
        return out.into_bytes();
    }
    let (kind, body) = match custom {
        Some(c) => ("text/html; charset=utf-8", c.to_string()),
        None => ("text/plain; charset=utf-8", format!("{body}\n")),
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}content-type: {kind}\r\ncontent-length: {}\r\n\
         cache-control: no-cache\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A custom answer that is a whole response: its status line (`HTTP/1.x NNN reason`),
/// its well-formed header lines but the framing ones, and its body. `None` when it does
/// not start with a valid status line (then it is a body). Lines may end in CRLF or LF.
fn template(custom: &str) -> Option<(&str, Vec<&str>, &str)> {
    let (first, mut rest) = custom.split_once('\n').unwrap_or((custom, ""));
    let status_line = first.strip_suffix('\r').unwrap_or(first);
    let b = status_line.as_bytes();
    let valid = b.len() >= 12
        && (status_line.starts_with("HTTP/1.0 ") || status_line.starts_with("HTTP/1.1 "))
        && b[9..12].iter().all(u8::is_ascii_digit)
        && (b.len() == 12 || b[12] == b' ')
        && !b.iter().any(|c| c.is_ascii_control() && *c != b'\t');
    if !valid {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
        let line = line.strip_suffix('\r').unwrap_or(line);
        rest = next;
        if line.is_empty() {
            // the blank line, or the end of a template without a body
            return Some((status_line, headers, rest));
        }
        let Some((name, _)) = line.split_once(':') else { continue };
        let token =
            !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        let clean = !line.bytes().any(|c| c.is_ascii_control() && c != b'\t');
        let framing =
            ["content-length", "transfer-encoding", "connection"].iter().any(|f| name.eq_ignore_ascii_case(f));
        if token && clean && !framing {
            headers.push(line);
        }
    }
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
        let bytes = super::answer_with(503, false, custom.get(&503).map(|b| &**b), None, &super::Vars::default());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("\r\n\r\n<h1>down for maintenance</h1>"), "{text}");
        let Parsed::Done(head) = parse_response(&bytes, false) else { panic!() };
        assert_eq!(head.framing, super::super::framing::Framing::Length(29));
        assert!(super::custom(&std::collections::BTreeMap::new(), []).is_none());
    }

    #[test]
    fn templates_keep_their_status_headers_and_body_with_our_framing() {
        let t = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 999\r\n\
                 Connection: keep-alive\r\nbad header line\r\nX-Evil\u{7}: 1\r\n\r\nbusy\nnow";
        for close in [false, true] {
            let bytes = super::answer_with(503, close, Some(t), None, &super::Vars::default());
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"), "{text}");
            assert!(!text.contains("999") && !text.contains("keep-alive") && !text.contains("bad header"), "{text}");
            assert!(!text.contains("X-Evil"), "{text}");
            assert!(text.ends_with("\r\n\r\nbusy\nnow"), "{text}");
            let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{text}") };
            assert_eq!(head.status, 503);
            assert_eq!(head.keep_alive, !close);
            assert_eq!(head.framing, super::super::framing::Framing::Length(8));
        }
        // LF line endings, no body, no reason phrase
        let bytes = super::answer_with(404, false, Some("HTTP/1.0 404\nX-A: b\n"), None, &super::Vars::default());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.0 404\r\nX-A: b\r\ncontent-length: 0\r\n\r\n"), "{text}");
        // not a status line: a body
        for body in ["HTTP/2 503 x\r\n\r\n", "HTTP/1.1 50 x\r\n\r\n", "HTTP/1.1 503\u{0}x\r\n\r\n", "<h1>busy</h1>"] {
            let text =
                String::from_utf8(super::answer_with(503, false, Some(body), None, &super::Vars::default())).unwrap();
            assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html"), "{text}");
            assert!(text.ends_with(body), "{text}");
        }
    }

    #[test]
    fn answers_are_well_formed_responses() {
        for status in [301, 400, 401, 404, 408, 502, 503, 504] {
            for close in [false, true] {
                let bytes = super::answer_with(status, close, None, None, &super::Vars::default());
                let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{status}") };
                assert_eq!(head.status, status);
                assert_eq!(head.keep_alive, !close);
                let super::super::framing::Framing::Length(n) = head.framing else { panic!() };
                assert_eq!(head.len + n as usize, bytes.len());
            }
        }
    }

    #[test]
    fn a_redirection_carries_our_location_even_in_a_template() {
        let url = "https://a.example:8443/x?y=1";
        let text =
            String::from_utf8(super::answer_with(301, false, None, Some(("location", url)), &super::Vars::default()))
                .unwrap();
        assert!(
            text.starts_with("HTTP/1.1 301 Moved Permanently\r\nlocation: https://a.example:8443/x?y=1\r\n"),
            "{text}"
        );
        let t = "HTTP/1.1 301 Moved Permanently\r\nLocation: %REDIRECT_LOCATION\r\nX-A: b\r\n\r\n";
        let bytes = super::answer_with(301, true, Some(t), Some(("location", url)), &super::Vars::default());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("%REDIRECT_LOCATION"), "{text}");
        assert!(text.contains("X-A: b\r\nlocation: https://a.example:8443/x?y=1\r\n"), "{text}");
        let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{text}") };
        assert_eq!((head.status, head.keep_alive), (301, false));
    }

    #[test]
    fn template_variables_are_filled_for_the_request_answered() {
        let vars = super::Vars {
            request_id: "1-2a".into(),
            route: Some(Some("api".into())),
            backend_id: "api-0".into(),
            duration: "30s".into(),
        };
        let t = "HTTP/1.1 504 Gateway Timeout\r\nSozu-Id: %REQUEST_ID\r\nX-Route: %ROUTE\r\n\r\n\
                 {\"cluster\": \"%CLUSTER_ID\", \"backend\": \"%BACKEND_ID\", \"ok\": %INVALID} after %DURATION: \
                 %MESSAGE 100% sure, %UNKNOWN%";
        let bytes = super::answer_with(504, true, Some(t), None, &vars);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 504 Gateway Timeout\r\nSozu-Id: 1-2a\r\nX-Route: api\r\n"), "{text}");
        let body = "{\"cluster\": \"api\", \"backend\": \"api-0\", \"ok\": null} after 30s: \
                    The backend took too long to answer. 100% sure, %UNKNOWN%";
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
        let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{text}") };
        assert_eq!(head.framing, super::super::framing::Framing::Length(body.len() as u64));
        // a bare body too; a redirection's location and a challenge's realm by name
        let text = String::from_utf8(super::answer_with(404, false, Some("<p>%REQUEST_ID</p>"), None, &vars)).unwrap();
        assert!(text.ends_with("<p>1-2a</p>"), "{text}");
        let url = "https://a.example/x";
        let t = "HTTP/1.1 301 Moved\r\n\r\nGo to %REDIRECT_LOCATION (%WWW_AUTHENTICATE)";
        let text = String::from_utf8(super::answer_with(301, false, Some(t), Some(("location", url)), &vars)).unwrap();
        assert!(text.ends_with("Go to https://a.example/x ()"), "{text}");
        // nothing known: the text as written, borrowed
        assert!(matches!(
            super::fill("50% off", "m", None, &super::Vars::default()),
            std::borrow::Cow::Owned(ref s) if s == "50% off"
        ));
        assert!(matches!(super::fill("plain", "m", None, &vars), std::borrow::Cow::Borrowed("plain")));
    }
}

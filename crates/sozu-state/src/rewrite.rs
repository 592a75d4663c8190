//! A frontend's rewrite templates (`rewrite_host`, `rewrite_path`), in Sōzu's grammar:
//! literal text with `$HOST[n]` and `$PATH[n]` placeholders, replaced by the captures
//! of the request that matched the frontend.
//!
//! - `$HOST[0]` is the request's host (without its port); on a wildcard frontend
//!   (`*.example.com`) `$HOST[1]` is what the `*` matched (`api` for
//!   `api.example.com`).
//! - `$PATH[0]` is the request target (path and query); on a prefix rule `$PATH[1]`
//!   is what follows the prefix (query included), and on a regex rule `$PATH[n]` is the
//!   regex's group `n` in the path.
//!
//! Any other `$`, or an index the frontend cannot capture, makes the template invalid:
//! the state refuses the frontend (Sōzu 2.1's workers refuse it too, while its master
//! keeps it). A capture a request does not have (a regex group that took no part in the
//! match) is replaced by nothing.

use sozu_proto::{PathRuleKind, RequestHttpFrontend};

use crate::StateError;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Literal text.
    Text(&'a str),
    /// `$HOST[n]`.
    Host(usize),
    /// `$PATH[n]`.
    Path(usize),
}

/// A parsed template, borrowing its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a>(Vec<Part<'a>>);

impl<'a> Template<'a> {
    /// Parses `text`; `Err` says what is wrong and where.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                parts.push(Part::Text(&rest[..at]));
            }
            let after = &rest[at + 1..];
            let offset = text.len() - rest.len() + at;
            let (kind, inner) = if let Some(inner) = after.strip_prefix("HOST[") {
                (Part::Host as fn(usize) -> Part<'a>, inner)
            } else if let Some(inner) = after.strip_prefix("PATH[") {
                (Part::Path as fn(usize) -> Part<'a>, inner)
            } else {
                return Err(format!("the `$` at byte {offset} starts neither $HOST[n] nor $PATH[n]"));
            };
            let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
            let index = inner[..digits].parse::<usize>().ok().filter(|_| inner[digits..].starts_with(']'));
            let Some(index) = index else {
                return Err(format!("the placeholder at byte {offset} is not $HOST[n] or $PATH[n] with a number n"));
            };
            parts.push(kind(index));
            rest = &inner[digits + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        Ok(Template(parts))
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part<'a>] {
        &self.0
    }

    /// Writes the template with `host` and `path` captures (a missing one gives
    /// nothing) at the end of `out`.
    pub fn expand_into(&self, host: &[&str], path: &[Option<&str>], out: &mut String) {
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Host(i) => out.push_str(host.get(*i).copied().unwrap_or_default()),
                Part::Path(i) => out.push_str(path.get(*i).copied().flatten().unwrap_or_default()),
            }
        }
    }

    fn highest(&self, host: bool) -> Option<usize> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Part::Host(i) if host => Some(*i),
                Part::Path(i) if !host => Some(*i),
                _ => None,
            })
            .max()
    }
}

/// How many `$HOST[n]` captures the frontend's hostname gives: the host, and what a
/// leading `*.` matched.
pub fn host_captures(f: &RequestHttpFrontend) -> usize {
    if f.hostname.starts_with("*.") { 2 } else { 1 }
}

/// How many `$PATH[n]` captures the frontend's path rule gives (`None` for a regex that
/// does not compile): the target, then a prefix's remainder or a regex's groups.
pub fn path_captures(f: &RequestHttpFrontend) -> Option<usize> {
    match PathRuleKind::try_from(f.path.kind) {
        Ok(PathRuleKind::Prefix) => Some(2),
        Ok(PathRuleKind::Regex) => regex::Regex::new(&f.path.value).ok().map(|r| r.captures_len()),
        Ok(PathRuleKind::Equals) | Err(_) => Some(1),
    }
}

/// Bytes a `Host` value may hold (a name, an IPv4 address, or an IPv6 one in brackets,
/// and a port): the rule the workers parse `Host` with, and so the literal text a host
/// template may hold.
pub fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
}

/// Checks a frontend's rewrites: templates in the grammar above whose placeholders the
/// frontend can capture and whose literal text fits a `Host` value or a request
/// target, and a `rewrite_port` that is a port.
pub(crate) fn check(f: &RequestHttpFrontend) -> Result<(), StateError> {
    let invalid = |field: &'static str, template: &str, why: String| StateError::InvalidRewrite {
        field,
        template: template.to_owned(),
        why,
    };
    for (field, template) in [("rewrite_host", &f.rewrite_host), ("rewrite_path", &f.rewrite_path)] {
        let Some(text) = template.as_deref() else { continue };
        let parsed = Template::parse(text).map_err(|why| invalid(field, text, why))?;
        let fits = |b: u8| if field == "rewrite_host" { host_byte(b) } else { b.is_ascii_graphic() };
        let literal_ok = parsed.parts().iter().all(|p| !matches!(p, Part::Text(t) if !t.bytes().all(fits)));
        if !literal_ok {
            let what = if field == "rewrite_host" {
                "its text holds a character a Host value cannot (letters, digits, `.-_[]:` only)"
            } else {
                "its text holds a space, a control or a non-ASCII character (a request target cannot)"
            };
            return Err(invalid(field, text, what.into()));
        }
        let hosts = host_captures(f);
        if let Some(n) = parsed.highest(true).filter(|n| *n >= hosts) {
            let gives = if hosts == 2 { "$HOST[0] and $HOST[1]" } else { "$HOST[0] only" };
            return Err(invalid(field, text, format!("$HOST[{n}] names no capture: {:?} gives {gives}", f.hostname)));
        }
        if let Some(n) = parsed.highest(false).filter(|n| *n > 0) {
            match path_captures(f) {
                None => {
                    return Err(invalid(field, text, format!("the path regex {:?} does not compile", f.path.value)));
                }
                Some(count) if n >= count => {
                    let gives = match count {
                        1 => "$PATH[0] only".to_string(),
                        c => format!("$PATH[0] to $PATH[{}]", c - 1),
                    };
                    return Err(invalid(
                        field,
                        text,
                        format!("$PATH[{n}] names no capture: the path rule gives {gives}"),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    match f.rewrite_port {
        Some(port) if !(1..=65535).contains(&port) => {
            Err(invalid("rewrite_port", &port.to_string(), "a port is 1 to 65535".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use sozu_proto::PathRule;

    use super::*;

    #[test]
    fn templates_parse_into_text_and_placeholders() {
        let t = Template::parse("/v2$PATH[1]?from=$HOST[0]").unwrap();
        assert_eq!(t.parts(), [Part::Text("/v2"), Part::Path(1), Part::Text("?from="), Part::Host(0)]);
        assert_eq!(Template::parse("$PATH[01]").unwrap().parts(), [Part::Path(1)]);
        assert_eq!(Template::parse("plain").unwrap().parts(), [Part::Text("plain")]);
        assert_eq!(Template::parse("").unwrap().parts(), []);
        for bad in ["/a$b", "$$", "$HOST[x]", "$PATH", "$PATH[1", "$HOST[]", "$HOST[99999999999999999999999]", "x$"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Template::parse("/a$b").unwrap_err(), "the `$` at byte 2 starts neither $HOST[n] nor $PATH[n]");
    }

    #[test]
    fn expansion_fills_captures_and_leaves_missing_ones_empty() {
        let t = Template::parse("$HOST[1].internal$PATH[2]|$PATH[1]").unwrap();
        let mut out = String::new();
        t.expand_into(&["api.example.com", "api"], &[Some("/x"), None, Some("/y")], &mut out);
        assert_eq!(out, "api.internal/y|");
    }

    /// Text rebuilt from parts: the template itself, but for leading zeros.
    fn render(t: &Template<'_>) -> String {
        t.parts()
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.to_string(),
                Part::Host(i) => format!("$HOST[{i}]"),
                Part::Path(i) => format!("$PATH[{i}]"),
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_and_fills_without_panicking(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec!["$", "HOST[", "PATH[", "]", "0", "1", "7", "a", "/", "é", "?", "$$"]),
                0..12,
            ),
            captures in proptest::collection::vec(proptest::option::of("[a-z/]{0,4}"), 0..4),
        ) {
            let text: String = pieces.concat();
            if let Ok(t) = Template::parse(&text) {
                // the parts say what the text says: rendered and parsed again, the same
                let rendered = render(&t);
                let again = Template::parse(&rendered);
                proptest::prop_assert_eq!(again.as_ref(), Ok(&t));
                if !text.contains("[0") {
                    proptest::prop_assert_eq!(&rendered, &text);
                }
                // filled with any captures, present or not, in range or not
                let host: Vec<&str> = captures.iter().flatten().map(String::as_str).collect();
                let path: Vec<Option<&str>> = captures.iter().map(|c| c.as_deref()).collect();
                let mut out = String::new();
                t.expand_into(&host, &path, &mut out);
                let literal: usize = t.parts().iter().map(|p| if let Part::Text(x) = p { x.len() } else { 0 }).sum();
                proptest::prop_assert!(out.len() >= literal);
            } else {
                proptest::prop_assert!(text.contains('$'), "only a `$` can make a template invalid: {text:?}");
            }
        }
    }

    fn front(host: &str, kind: PathRuleKind, path: &str) -> RequestHttpFrontend {
        RequestHttpFrontend {
            hostname: host.into(),
            path: PathRule { kind: kind as i32, value: path.into() },
            ..Default::default()
        }
    }

    #[test]
    fn a_frontend_may_only_use_the_captures_it_has() {
        use PathRuleKind::*;
        let with = |mut f: RequestHttpFrontend, host: Option<&str>, path: Option<&str>| {
            f.rewrite_host = host.map(str::to_string);
            f.rewrite_path = path.map(str::to_string);
            check(&f)
        };
        assert_eq!(with(front("*.a.test", Prefix, "/api"), Some("$HOST[1].b"), Some("/v2$PATH[1]")), Ok(()));
        assert_eq!(with(front("a.test", Regex, "^/u/(\\d+)/(\\w+)"), None, Some("/$PATH[2]/$PATH[1]")), Ok(()));
        assert_eq!(with(front("a.test", Equals, "/eq"), Some("$HOST[0]"), Some("/x$PATH[0]")), Ok(()));
        let refused = [
            (
                front("a.test", Prefix, "/"),
                Some("$HOST[1]"),
                None,
                "$HOST[1] names no capture: \"a.test\" gives $HOST[0] only",
            ),
            (front("*.a.test", Prefix, "/"), Some("$HOST[2]"), None, "$HOST[2] names no capture"),
            (front("a.test", Equals, "/eq"), None, Some("$PATH[1]"), "the path rule gives $PATH[0] only"),
            (front("a.test", Regex, "^/(a)"), None, Some("$PATH[2]"), "the path rule gives $PATH[0] to $PATH[1]"),
            (front("a.test", Regex, "^/(a"), None, Some("$PATH[1]"), "does not compile"),
            (front("a.test", Prefix, "/"), Some("a b"), None, "a Host value cannot"),
            (front("a.test", Prefix, "/"), Some("evil/x"), None, "a Host value cannot"),
            (front("a.test", Prefix, "/"), None, Some("/a b"), "a request target cannot"),
            (front("a.test", Prefix, "/"), None, Some("/é"), "a request target cannot"),
            (front("a.test", Prefix, "/"), None, Some("/a$b"), "starts neither"),
        ];
        for (f, host, path, why) in refused {
            let e = with(f, host, path).unwrap_err();
            assert!(e.to_string().contains(why), "{e} / {why}");
        }
        let port = RequestHttpFrontend { rewrite_port: Some(0), ..front("a.test", Prefix, "/") };
        assert!(check(&port).unwrap_err().to_string().contains("a port is 1 to 65535"));
        let port = RequestHttpFrontend { rewrite_port: Some(70000), ..port };
        assert!(check(&port).is_err());
    }
}

//! Cluster policies applied to a routed request before it goes to a backend: the
//! redirection to HTTPS (`https_redirect`, `https_redirect_port`) and sticky sessions
//! (`sticky_session`, the listener's `sticky_name`, the backends' `sticky_id`).

use std::net::SocketAddr;

use sozu_state::ConfigState;

use super::head::RequestHead;

/// Where a cluster with `https_redirect` sends a request: the same host and target over
/// HTTPS, on `https_redirect_port` when it is set and not 443. `None` without it.
pub(super) fn https_location(cluster: &sozu_proto::Cluster, head: &RequestHead) -> Option<String> {
    if !cluster.https_redirect {
        return None;
    }
    let port = cluster.https_redirect_port.filter(|p| *p != 443).map(|p| format!(":{p}")).unwrap_or_default();
    // the host is checked by the parser (letters, digits, `.-_[]:`) and the target holds
    // no space or control byte: nothing here can break the header line
    let target = if head.target.starts_with('/') { head.target.as_str() } else { "/" };
    Some(format!("https://{}{port}{target}", head.host))
}

/// The sticky session of a request to `cluster` (which has `sticky_session`): the
/// listener's cookie name (`sticky_name`, Sōzu's `SOZUBALANCEID` when empty), and the
/// backend the client's cookie names moved first among `candidates` when it is one of
/// them (a backend that is down is not, and the client moves to another one).
pub(super) fn sticky_session(
    state: &ConfigState,
    listener: SocketAddr,
    cluster: &str,
    head: &RequestHead,
    candidates: &mut [(String, SocketAddr)],
) -> Sticky {
    let name = state
        .http_listener(listener)
        .map(|l| l.sticky_name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("SOZUBALANCEID")
        .to_string();
    let sent = head.cookie(&name).map(str::to_string);
    let sticky = Sticky { name, sent, ids: state.sticky_ids(cluster) };
    if let Some(i) = sticky.named().and_then(|b| candidates.iter().position(|(c, _)| c == b)) {
        candidates[..=i].rotate_right(1);
    }
    sticky
}

/// A sticky session's cookie for one request: its name, the sticky id the client sent,
/// and the sticky id of each backend of the cluster. The response says `Set-Cookie`
/// when the backend that answers is not the one the client named.
pub(crate) struct Sticky {
    pub name: String,
    pub sent: Option<String>,
    /// (backend id, sticky id).
    pub ids: Vec<(String, String)>,
}

impl Sticky {
    /// The backend whose sticky id the client sent, if any has it.
    pub fn named(&self) -> Option<&str> {
        let sent = self.sent.as_deref()?;
        self.ids.iter().find(|(_, id)| id == sent).map(|(b, _)| b.as_str())
    }

    /// The `Set-Cookie` line for a response from `backend`, if the client needs one.
    /// None either when the name is not a token or the id not a cookie value (RFC 6265
    /// §4.1.1): a listener's `sticky_name` is not checked by the state, and a header
    /// line must not be broken by what an operator typed.
    pub fn set_cookie(&self, backend: &str) -> Vec<u8> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let octet = |b: u8| b.is_ascii_graphic() && !b"\",;\\".contains(&b);
        match self.ids.iter().find(|(b, _)| b == backend) {
            Some((_, id))
                if self.sent.as_deref() != Some(id.as_str())
                    && self.name.bytes().all(token)
                    && !id.is_empty()
                    && id.bytes().all(octet) =>
            {
                format!("set-cookie: {}={id}; Path=/\r\n", self.name).into_bytes()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sticky;

    fn sticky(name: &str, sent: Option<&str>) -> Sticky {
        Sticky {
            name: name.into(),
            sent: sent.map(Into::into),
            ids: vec![("b1".into(), "alpha".into()), ("b2".into(), "b2".into()), ("b3".into(), "a b".into())],
        }
    }

    #[test]
    fn the_cookie_is_set_when_the_client_did_not_name_the_backend_that_answered() {
        let s = sticky("SOZUBALANCEID", Some("alpha"));
        assert_eq!(s.named(), Some("b1"));
        assert!(s.set_cookie("b1").is_empty());
        assert_eq!(s.set_cookie("b2"), b"set-cookie: SOZUBALANCEID=b2; Path=/\r\n");
        assert!(s.set_cookie("gone").is_empty());
        assert_eq!(sticky("X", Some("nobody")).named(), None);
        assert_eq!(sticky("X", None).set_cookie("b1"), b"set-cookie: X=alpha; Path=/\r\n");
    }

    #[test]
    fn a_name_or_id_that_would_break_the_header_line_sets_nothing() {
        assert!(sticky("LB\r\nX-Evil: 1", None).set_cookie("b1").is_empty());
        assert!(sticky("a;b", None).set_cookie("b1").is_empty());
        assert!(sticky("LB", None).set_cookie("b3").is_empty());
    }
}

//! What the worker's HTTP loop and one session say to each other: the context of a
//! step, what the step did, and where a routed request goes.

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Registry, Token};

use super::answers::{Custom, Vars};
use super::head::RequestHead;
use super::policies::{HeaderEdits, Sticky};

/// What the proxy gives a session for one `step`.
pub(crate) struct Context<'a> {
    pub registry: &'a Registry,
    pub back_token: Token,
    pub accepting: bool,
    /// The route of the head last returned by [`Step::Route`], and what its answers'
    /// variables stand for (its id, its route).
    pub route: Option<(RequestHead, Routed, Vars)>,
    pub now: Instant,
    /// A zeroed buffer every read goes through.
    pub scratch: &'a mut [u8],
    /// Most bytes waiting to be written to one side before reading from the other
    /// stops (`buffer_size` of the worker's configuration).
    pub buf: usize,
    /// The session holds its buffers, or the pool has some for it: an idle session may
    /// read a new request only then.
    pub may_start: bool,
}

/// Where the proxy sent a request.
pub(crate) enum Routed {
    /// Answered by the worker with this status (and the cluster's custom answers).
    Answer(u16, Option<Custom>),
    /// Answered by the worker with a status and a header field of its own: a `301`
    /// with its `Location` (`https_redirect`, a frontend's redirection), a `401` with
    /// its `WWW-Authenticate`; `template` is the frontend's own answer, if it has one.
    Policy { status: u16, field: (&'static str, String), answers: Option<Custom>, template: Option<String> },
    /// To these backends, in the order to try them.
    Backends {
        cluster: String,
        candidates: Vec<(String, SocketAddr)>,
        answers: Option<Custom>,
        sticky: Option<Sticky>,
        edits: Option<Box<HeaderEdits>>,
    },
}

/// What one step did.
pub(crate) enum Step {
    Progress,
    /// Nothing more can move until the next event.
    Idle,
    /// The session is over.
    Closed,
    /// A request head arrived: route it and step again.
    Route(RequestHead),
}

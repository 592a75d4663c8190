#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chain;
mod entry;
mod json;
mod sanitize;
mod sink;
mod text;
mod time;

pub use chain::{ChainBreak, GENESIS, verify};
pub use entry::{Actor, AuditEntry, AuditResult, ErrorCode, Fanout, FanoutStatus};
pub use json::{ParseError, json_value, parse_json_line};
pub use sanitize::{Mode, Sanitized, sanitize, sanitize_kv, truncate};
pub use sink::{AuditError, AuditLog, FailPolicy, FileSink, Fsync, JsonSink, LineWriter, TextSink, WriterSink};
pub use text::{Envelope, render_text};
pub use time::{format_rfc3339, parse_rfc3339};

/// Internals used by the macros. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::text::Envelope;
}

/// The bracket that starts a text audit line:
/// `[<session> <request> <cluster|-> <backend|->]`, every id sanitized (control,
/// bidi, `,`, `=`, space and brackets become `?`).
///
/// Arguments: the session and request ids (anything `Display`), then the cluster and
/// backend ids as `Option<&str>`. Works fully qualified, with no imports.
///
/// ```
/// let line = audit::envelope!("01S", "01R", Some("api"), None::<&str>).to_string();
/// assert_eq!(line, "[01S 01R api -]");
/// ```
#[macro_export]
macro_rules! envelope {
    ($session:expr, $request:expr, $cluster:expr, $backend:expr $(,)?) => {
        $crate::__private::Envelope::new(
            ::std::string::ToString::to_string(&$session),
            ::std::string::ToString::to_string(&$request),
            ::std::option::Option::map($cluster, ::std::string::ToString::to_string),
            ::std::option::Option::map($backend, ::std::string::ToString::to_string),
        )
    };
}

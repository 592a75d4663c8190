//! The sozu configuration file, in Sōzu 2.x's TOML format.
//!
//! [`Config::load`] reads and validates a file: unknown keys are reported by name
//! ([`Config::unknown_keys`]; the caller warns, or refuses with `--strict`), invalid
//! values are errors that name the key and say what is allowed, relative paths are
//! resolved against the file's directory. [`Config::requests`] gives the requests the
//! file's listeners and clusters stand for, in a deterministic order.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod file;
mod resolve;

pub use resolve::{ClusterSpec, Config, ConfigError, ListenerSpec, LogFormat, Protocol};

//! The configuration state of the proxy: listeners, clusters, frontends, backends and
//! certificates, keyed as Sōzu keys them.
//!
//! - [`ConfigState::dispatch`] applies one mutating verb or returns a precise
//!   [`StateError`], and changes nothing on error. Names (cluster and backend ids,
//!   hostnames, paths, methods, sticky ids, tags) holding a control or formatting
//!   character (what [`audit::Mode::Line`] replaces) are refused.
//! - [`ConfigState::generate_requests`] rebuilds the state as requests, in Sōzu's order
//!   and with no hash-map order anywhere; [`ConfigState::diff`] gives the requests that
//!   turn one state into another.
//! - [`save`] / [`load`] read and write Sōzu 2.x state files (`\n\0`-separated JSON
//!   `WorkerRequest` records): saving is atomic (temp file, fsync, rename, fsync of the
//!   directory), loading is streaming with a bounded record size and all-or-nothing;
//!   [`Loader`] does it a slice of records at a time, for an event loop.
//! - [`rewrite`] parses and checks a frontend's `rewrite_host` / `rewrite_path`
//!   templates (`$HOST[n]`, `$PATH[n]`); a frontend whose rewrites cannot work is
//!   refused.
//!
//! Dependencies: `serde_json` (the records are serde JSON, as Sōzu writes them), `sha2`
//! (cluster hashes and certificate fingerprints), `base64`, `memchr` (finding the
//! `\0` that ends each record at SIMD speed; it is already in every build through
//! `serde_json`'s tree), `regex` (a frontend's `$PATH[n]` rewrite placeholders are
//! checked against its path regex's groups; the workers route with the same crate),
//! and this workspace's `audit` (its line-safe character rule decides which names are
//! refused, so the project has one such rule).
//!
//! This crate never touches a socket, and the only files it touches are the ones
//! [`save_atomic`] and [`load_file`] are given.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backends;
mod cert;
mod error;
mod file;
mod hash;
mod ids;
mod loader;
mod query;
mod requests;
pub mod rewrite;
mod route;
mod state;

pub use cert::fingerprint;
pub use error::StateError;
pub use file::{
    LoadError, Loaded, load, load_each, load_file, load_file_each, resolve_path, save, save_atomic, save_records,
    save_state,
};
pub use loader::Loader;
pub use route::Route;
pub use state::{Applied, ConfigState, frontend_key};

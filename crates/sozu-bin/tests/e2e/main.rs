//! End to end: the real `sozu` binary with 2 workers on loopback, driven by the real
//! CLI and by a raw client.
//!
//! Modules: `command` (verbs, frames, clients, state files), `compat` (Sōzu 2.1.1's own
//! CLI and master against ours), `supervision` (crashes,
//! reload, stops, systemd), `traffic` (TCP proxying), `http` (HTTP/1.1 proxying),
//! `policies` (sticky sessions, HTTPS redirection), `dashboard` (JSON-lines socket);
//! `support` starts masters and speaks the protocols.

mod command;
mod compat;
mod dashboard;
mod http;
mod policies;
mod supervision;
mod support;
mod traffic;
mod upgrade;

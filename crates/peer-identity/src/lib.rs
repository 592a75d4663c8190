#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cred;
mod identity;
mod proc;
mod sanitize;
mod users;

pub use cred::{PeerCred, peer_cred, try_peer_cred};
pub use identity::{PeerIdentity, Role};
pub use proc::{parse_comm, parse_start_time, parse_stat_comm, peer_comm, peer_comm_in};
pub use users::{PendingUser, SystemUsers, UserLookup, UserResolver, UserResolverConfig, UserTable};

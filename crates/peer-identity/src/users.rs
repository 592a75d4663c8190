//! uid → account name, off the caller's thread, with a bounded cache.
//!
//! `getpwuid_r` goes through NSS and may block for tens of seconds when SSSD or LDAP
//! is wedged. An event loop must never wait for it, so [`UserResolver::lookup`] only
//! ever reads the cache: a miss is queued (bounded) to a resolver thread and the
//! caller gets a [`PendingUser`] to poll, with a deadline after which the name is
//! recorded as [`UserLookup::Unknown`].

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A source of account names: the system's (NSS) or a test's.
pub trait UserTable: Send + Sync + 'static {
    /// The name of `uid`: `Ok(None)` when no such user exists, `Err` when the lookup
    /// itself failed. May block.
    fn user_name(&self, uid: u32) -> io::Result<Option<String>>;
}

/// The system's account database, through `getpwuid_r`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemUsers;

impl UserTable for SystemUsers {
    fn user_name(&self, uid: u32) -> io::Result<Option<String>> {
        Ok(nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))?.map(|u| u.name))
    }
}

/// What is known of an account name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserLookup {
    /// The account's name.
    Name(String),
    /// The table answered: there is no such account (cached, like a name).
    NoSuchUser,
    /// The table failed, did not answer in time, or the queue was full (not cached).
    Unknown,
}

impl UserLookup {
    /// The name, if one is known.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Name(n) => Some(n),
            _ => None,
        }
    }
}

/// Tuning of a [`UserResolver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserResolverConfig {
    /// Entries kept (names and "no such user"); the oldest is evicted on insert.
    pub cache_capacity: usize,
    /// Lookups waiting for the resolver thread; past it, a miss is `Unknown` at once.
    pub queue_capacity: usize,
    /// How long a [`PendingUser`] waits before settling on `Unknown`.
    pub deadline: Duration,
}

impl Default for UserResolverConfig {
    fn default() -> Self {
        Self { cache_capacity: 16, queue_capacity: 64, deadline: Duration::from_secs(2) }
    }
}

/// Answer slot shared by the resolver thread and the [`PendingUser`]s of one uid.
#[derive(Debug, Default)]
struct Slot {
    answer: Mutex<Option<UserLookup>>,
}

struct Shared {
    cache: Mutex<Cache>,
    in_flight: Mutex<HashMap<u32, Arc<Slot>>>,
    notify: Option<Box<dyn Fn() + Send + Sync>>,
}

#[derive(Debug)]
struct Cache {
    capacity: usize,
    entries: VecDeque<(u32, UserLookup)>,
}

impl Cache {
    fn get(&self, uid: u32) -> Option<UserLookup> {
        self.entries.iter().find(|(u, _)| *u == uid).map(|(_, l)| l.clone())
    }

    fn insert(&mut self, uid: u32, lookup: UserLookup) {
        if self.capacity == 0 {
            return;
        }
        self.entries.retain(|(u, _)| *u != uid);
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((uid, lookup));
    }
}

/// Non-blocking, cached uid → name resolution (see the module docs).
///
/// Dropping the resolver stops its thread once the lookup in progress, if any,
/// returns; a wedged lookup never blocks the drop.
pub struct UserResolver {
    shared: Arc<Shared>,
    queue: SyncSender<(u32, Arc<Slot>)>,
    deadline: Duration,
}

impl std::fmt::Debug for UserResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserResolver").field("cache", &*self.shared.cache.lock()).finish_non_exhaustive()
    }
}

impl UserResolver {
    /// A resolver over `table`.
    pub fn new(table: impl UserTable, config: UserResolverConfig) -> Self {
        Self::build(table, config, None)
    }

    /// A resolver that calls `notify` from its thread each time an answer arrives (for
    /// example to wake an event loop with `mio::Waker::wake`).
    pub fn with_notify(
        table: impl UserTable,
        config: UserResolverConfig,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        Self::build(table, config, Some(Box::new(notify)))
    }

    fn build(table: impl UserTable, config: UserResolverConfig, notify: Option<Box<dyn Fn() + Send + Sync>>) -> Self {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache { capacity: config.cache_capacity, entries: VecDeque::new() }),
            in_flight: Mutex::new(HashMap::new()),
            notify,
        });
        let (queue, jobs) = mpsc::sync_channel::<(u32, Arc<Slot>)>(config.queue_capacity.max(1));
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("peer-identity-users".into())
            .spawn(move || {
                for (uid, slot) in jobs {
                    let cached = worker.cache.lock().get(uid);
                    let answer = cached.unwrap_or_else(|| match table.user_name(uid) {
                        Ok(Some(name)) => UserLookup::Name(name),
                        Ok(None) => UserLookup::NoSuchUser,
                        Err(e) => {
                            log::warn!("user name lookup for uid {uid} failed: {e}");
                            UserLookup::Unknown
                        }
                    });
                    if answer != UserLookup::Unknown {
                        worker.cache.lock().insert(uid, answer.clone());
                    }
                    worker.in_flight.lock().remove(&uid);
                    *slot.answer.lock() = Some(answer);
                    if let Some(notify) = &worker.notify {
                        notify();
                    }
                }
            })
            .expect("spawning the user resolver thread");
        Self { shared, queue, deadline: config.deadline }
    }

    /// What the cache holds for `uid`, without queueing anything.
    pub fn cached(&self, uid: u32) -> Option<UserLookup> {
        self.shared.cache.lock().get(uid)
    }

    /// Never blocks: the cached answer, or a [`PendingUser`] to poll. A full queue
    /// gives `Ok(Unknown)` at once.
    pub fn lookup(&self, uid: u32, now: Instant) -> Result<UserLookup, PendingUser> {
        if let Some(hit) = self.cached(uid) {
            return Ok(hit);
        }
        let deadline = now + self.deadline;
        let mut in_flight = self.shared.in_flight.lock();
        if let Some(slot) = in_flight.get(&uid) {
            return Err(PendingUser { uid, slot: Arc::clone(slot), deadline });
        }
        let slot = Arc::new(Slot::default());
        match self.queue.try_send((uid, Arc::clone(&slot))) {
            Ok(()) => {
                in_flight.insert(uid, Arc::clone(&slot));
                Err(PendingUser { uid, slot, deadline })
            }
            Err(TrySendError::Full(_)) => {
                log::warn!("user name lookup queue full; uid {uid} recorded as unknown");
                Ok(UserLookup::Unknown)
            }
            Err(TrySendError::Disconnected(_)) => Ok(UserLookup::Unknown),
        }
    }
}

/// A lookup in progress. Poll it from the event loop (for example when the resolver's
/// notify fires, or on a timer).
#[derive(Debug)]
pub struct PendingUser {
    uid: u32,
    slot: Arc<Slot>,
    deadline: Instant,
}

impl PendingUser {
    /// The uid being resolved.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// When this lookup gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The answer if it arrived, `Unknown` once `now` is past the deadline, else `None`.
    pub fn poll(&self, now: Instant) -> Option<UserLookup> {
        if let Some(answer) = self.slot.answer.lock().clone() {
            return Some(answer);
        }
        (now >= self.deadline).then_some(UserLookup::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Table {
        calls: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl UserTable for Table {
        fn user_name(&self, uid: u32) -> io::Result<Option<String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            thread::sleep(self.delay);
            match uid {
                0..=999 => Ok(Some(format!("user{uid}"))),
                5000 => Err(io::Error::other("nss down")),
                _ => Ok(None),
            }
        }
    }

    fn wait(p: &PendingUser) -> UserLookup {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(a) = p.poll(Instant::now()) {
                return a;
            }
            assert!(Instant::now() < end);
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn resolver(capacity: usize) -> (UserResolver, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let config =
            UserResolverConfig { cache_capacity: capacity, deadline: Duration::from_secs(5), ..Default::default() };
        (UserResolver::new(Table { calls: Arc::clone(&calls), delay: Duration::ZERO }, config), calls)
    }

    #[test]
    fn names_and_negative_results_are_cached_failures_are_not() {
        let (r, calls) = resolver(16);
        let p = r.lookup(1, Instant::now()).unwrap_err();
        assert_eq!(wait(&p), UserLookup::Name("user1".into()));
        assert_eq!(r.lookup(1, Instant::now()).ok(), Some(UserLookup::Name("user1".into())));
        let p = r.lookup(4000, Instant::now()).unwrap_err();
        assert_eq!(wait(&p), UserLookup::NoSuchUser);
        assert_eq!(r.lookup(4000, Instant::now()).ok(), Some(UserLookup::NoSuchUser));
        let p = r.lookup(5000, Instant::now()).unwrap_err();
        assert_eq!(wait(&p), UserLookup::Unknown);
        assert!(r.cached(5000).is_none(), "failures are retried later");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_oldest() {
        let (r, _) = resolver(2);
        for uid in [1, 2, 3] {
            wait(&r.lookup(uid, Instant::now()).unwrap_err());
        }
        assert!(r.cached(1).is_none());
        assert!(r.cached(2).is_some() && r.cached(3).is_some());
    }

    #[test]
    fn concurrent_lookups_of_one_uid_share_one_query() {
        let calls = Arc::new(AtomicUsize::new(0));
        let table = Table { calls: Arc::clone(&calls), delay: Duration::from_millis(100) };
        let r = UserResolver::new(table, UserResolverConfig::default());
        let a = r.lookup(7, Instant::now()).unwrap_err();
        let b = r.lookup(7, Instant::now()).unwrap_err();
        assert_eq!(wait(&a), wait(&b));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn system_table_knows_root() {
        assert_eq!(SystemUsers.user_name(0).unwrap().as_deref(), Some("root"));
    }
}

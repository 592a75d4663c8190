//! When a proxy walks its sessions for expired deadlines.
//!
//! Each proxy keeps its deadlines in its sessions (last progress plus the timeout of
//! the session's phase) and finds the expired ones by walking all of them. Walking at
//! every turn of the event loop made a busy worker pay for every idle connection it
//! holds: with 4,500 idle keep-alive connections, 40 % of a worker's time under wrk
//! went to that walk. [`Scan`] walks when the earliest deadline the last walk found
//! has come, and otherwise at most once per [`Scan::EVERY`], which is how late a
//! deadline armed since the last walk (by a request, a connect, a read) can be served.

use std::time::{Duration, Instant};

/// The rate limit of one proxy's deadline walks (sans-IO: the caller walks).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// When the last walk was made and the earliest deadline it found.
    last: Option<(Instant, Option<Instant>)>,
}

impl Scan {
    /// The longest a deadline armed between two walks waits past its time (timeouts
    /// are configured in seconds).
    pub(crate) const EVERY: Duration = Duration::from_millis(100);
    /// The shortest sleep given to the loop for deadlines: a session whose deadline
    /// stays past (an answer still being written) does not make the loop spin.
    pub(crate) const MIN_SLEEP: Duration = Duration::from_millis(10);

    /// Whether a walk is due at `now`: the period is over, or the earliest deadline
    /// known has come.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|(at, next)| now >= at + Self::EVERY || next.is_some_and(|n| now >= n))
    }

    /// Records a walk made at `now` that left `next` as the earliest deadline; returns
    /// how long the loop may sleep for these sessions if nothing else happens.
    pub(crate) fn walked(&mut self, now: Instant, next: Option<Instant>) -> Option<Duration> {
        self.last = Some((now, next));
        next.map(|n| n.saturating_duration_since(now).max(Self::MIN_SLEEP))
    }

    /// Between walks, after activity that may have armed deadlines: how long the loop
    /// may sleep, until the earliest deadline known or the next walk.
    pub(crate) fn pending(&self, now: Instant) -> Option<Duration> {
        let (at, next) = self.last?;
        let walk = at + Self::EVERY;
        Some(next.map_or(walk, |n| n.min(walk)).saturating_duration_since(now).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn walks_when_a_deadline_comes_or_the_period_ends_never_at_every_turn() {
        let t0 = Instant::now();
        let mut scan = Scan::default();
        assert!(scan.due(t0), "the first turn walks");
        assert_eq!(scan.pending(t0), None, "nothing known before a walk");
        // a walk finds the earliest deadline 60 s away: with nothing else, sleep that long
        assert_eq!(scan.walked(t0, Some(t0 + 60_000 * MS)), Some(60_000 * MS));
        // turns within the period do not walk; after activity, wake for the next walk
        assert!(!scan.due(t0 + 3 * MS));
        assert_eq!(scan.pending(t0 + 3 * MS), Some(97 * MS));
        assert!(scan.due(t0 + Scan::EVERY));
        // a known deadline sooner than the period: woken for it, and it is walked then
        scan.walked(t0, Some(t0 + 40 * MS));
        assert_eq!(scan.pending(t0 + 10 * MS), Some(30 * MS));
        assert!(!scan.due(t0 + 39 * MS) && scan.due(t0 + 40 * MS));
        // a walk that found nothing: one more walk after the period, then no deadline
        assert_eq!(scan.walked(t0, None), None);
        assert_eq!(scan.pending(t0 + 2 * MS), Some(98 * MS));
        // a deadline left past by a walk is not a busy loop
        assert_eq!(scan.walked(t0 + 100 * MS, Some(t0)), Some(Scan::MIN_SLEEP));
    }
}

//! `handle_process_affinity`: each new worker is pinned to one CPU, the least used by
//! the running workers among the CPUs the master itself may run on. The choice reads
//! the workers' masks from the kernel, so it needs no bookkeeping and holds across a
//! main upgrade (the new master adopts pinned workers).

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use slog::{info, warn};
use sozu_proto::RunState;

use super::server::Master;

/// The CPU that fewest of `pinned` use, among `allowed` (lowest number on a tie).
pub(crate) fn least_used(allowed: &[usize], pinned: &[usize]) -> Option<usize> {
    allowed.iter().copied().min_by_key(|cpu| (pinned.iter().filter(|p| *p == cpu).count(), *cpu))
}

/// The CPUs in a mask.
fn cpus(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect()
}

impl Master {
    /// Pins the new worker `id` (process `pid`) if the configuration asks for it.
    /// `replacing` is the worker an upgrade replaces: its CPU counts as free.
    /// A failure is logged; the worker runs unpinned.
    pub(super) fn pin_worker(&self, id: u32, pid: i32, replacing: Option<u32>) {
        if !self.config.handle_process_affinity {
            return;
        }
        let allowed = match sched_getaffinity(Pid::from_raw(0)) {
            Ok(set) => cpus(&set),
            Err(e) => {
                warn!(self.log, "worker {id} not pinned: reading the master's CPU mask: {e}");
                return;
            }
        };
        // a worker pinned to a single CPU counts for that CPU
        let pinned: Vec<usize> = self
            .workers
            .iter()
            .filter(|(w, s)| **w != id && Some(**w) != replacing && s.run_state == RunState::Running)
            .filter_map(|(_, s)| sched_getaffinity(Pid::from_raw(s.pid)).ok())
            .filter_map(|set| match cpus(&set)[..] {
                [one] => Some(one),
                _ => None,
            })
            .collect();
        let Some(cpu) = least_used(&allowed, &pinned) else { return };
        let mut set = CpuSet::new();
        let pinned = set.set(cpu).and_then(|()| sched_setaffinity(Pid::from_raw(pid), &set));
        match pinned {
            Ok(()) => info!(self.log, "worker {id} (pid {pid}) pinned to CPU {cpu}"),
            Err(e) => warn!(self.log, "worker {id} (pid {pid}) not pinned to CPU {cpu}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::least_used;

    #[test]
    fn workers_spread_over_the_allowed_cpus_lowest_first() {
        assert_eq!(least_used(&[0, 1], &[]), Some(0));
        assert_eq!(least_used(&[0, 1], &[0]), Some(1));
        assert_eq!(least_used(&[0, 1], &[0, 1]), Some(0));
        assert_eq!(least_used(&[0, 1], &[1, 1, 0]), Some(0));
        // CPUs outside the master's mask are never chosen, and pins to them do not count
        assert_eq!(least_used(&[2, 3], &[0, 2]), Some(3));
        assert_eq!(least_used(&[], &[0]), None);
    }
}

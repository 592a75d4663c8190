//! The master's state, which right after a main upgrade may still be in the making on
//! a thread of its own: the new image answers its client, `status` and worker upgrades
//! (none of which reads the state) while the state of 10k clusters is built (~35 ms)
//! on the other core. Anything that reads or changes the state goes through `Deref`,
//! which waits for the build first: nothing ever sees a partial state.

use std::cell::{Cell, OnceCell};
use std::ops::{Deref, DerefMut};
use std::thread::JoinHandle;

use sozu_state::ConfigState;

type Build = JoinHandle<Result<ConfigState, String>>;

/// A [`ConfigState`], ready or being built.
pub(crate) struct StateCell {
    ready: OnceCell<ConfigState>,
    building: Cell<Option<Build>>,
}

impl StateCell {
    /// A state that is ready.
    pub(crate) fn ready(state: ConfigState) -> Self {
        StateCell { ready: OnceCell::from(state), building: Cell::new(None) }
    }

    /// A state being built by `build`.
    pub(crate) fn building(build: Build) -> Self {
        StateCell { ready: OnceCell::new(), building: Cell::new(Some(build)) }
    }

    /// Whether the build is still running (it is waited for on first use anyway).
    pub(crate) fn is_building(&self) -> bool {
        self.ready.get().is_none()
    }

    fn wait(&self) -> &ConfigState {
        self.ready.get_or_init(|| {
            let built = match self.building.take() {
                Some(build) => build.join().unwrap_or_else(|_| Err("the thread building it panicked".into())),
                None => Ok(ConfigState::new()),
            };
            built.unwrap_or_else(|why| {
                // the check ran this same binary on these same bytes and built the state:
                // only a fault of this process gets here, and a master without its state
                // cannot serve (its workers stop with it)
                eprintln!("sozu: fatal: cannot build the state handed over by the main upgrade: {why}");
                std::process::exit(70)
            })
        })
    }
}

impl Deref for StateCell {
    type Target = ConfigState;

    fn deref(&self) -> &ConfigState {
        self.wait()
    }
}

impl DerefMut for StateCell {
    fn deref_mut(&mut self) -> &mut ConfigState {
        self.wait();
        match self.ready.get_mut() {
            Some(state) => state,
            None => unreachable!("wait() initialised it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sozu_proto::Cluster;
    use sozu_proto::request::RequestType;

    fn one_cluster() -> ConfigState {
        let mut s = ConfigState::new();
        s.dispatch(&RequestType::AddCluster(Box::new(Cluster { cluster_id: "c".into(), ..Default::default() })).into())
            .unwrap();
        s
    }

    #[test]
    fn a_state_being_built_is_waited_for_on_first_use() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let build = std::thread::spawn(move || {
            wait.recv().unwrap();
            Ok(one_cluster())
        });
        let mut cell = StateCell::building(build);
        assert!(cell.is_building());
        go.send(()).unwrap();
        assert_eq!(cell.cluster_count(), 1);
        assert!(!cell.is_building());
        *cell = ConfigState::new();
        assert_eq!(cell.cluster_count(), 0);
        let mut ready = StateCell::ready(one_cluster());
        assert!(!ready.is_building());
        assert_eq!(ready.cluster_count(), 1);
        ready.dispatch(&RequestType::RemoveCluster("c".into()).into()).unwrap();
        assert_eq!(ready.cluster_count(), 0);
    }
}

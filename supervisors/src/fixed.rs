//! A `one_for_one` supervisor of a fixed list of children, each a bastion children group of one.
//!
//! bastion restarts a child whose future panicked (or returned `Err`), at once and forever. This
//! module adds what OTP has and bastion lacks: restart kinds, a restart intensity counted in a
//! sliding window whose excess escalates (the supervisor stops and [`FixedSupervisor::wait`]
//! returns the [`Escalation`]: at the root that is the application's non-zero exit), and
//! `which_children` with restart counts. bastion's `OneForAll`/`RestForOne` leave old instances
//! running (bastion-notes), so only `one_for_one` is offered.
use crate::child::{panic_message, ChildInfo, ChildKind, ChildStatus, Exit};
use crate::dynamic::DynamicSupervisor;
use crate::intensity::RestartIntensity;
use crate::observer::{Observer, SupervisorEvent};
use bastion::prelude::*;
use futures_lite::FutureExt;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Instant, SystemTime};

pub type BodyFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One fixed child: `body` makes a fresh instance on every (re)start.
pub struct FixedChildSpec {
    pub id: String,
    pub kind: ChildKind,
    pub body: BodyFn,
    /// For a child that runs a [`DynamicSupervisor`]: its children appear under it.
    pub nested: Option<DynamicSupervisor>,
}

/// The supervisor gave up: more restarts than its intensity allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub supervisor: String,
    pub reason: String,
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.supervisor, self.reason)
    }
}

impl std::error::Error for Escalation {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// bastion refused to deploy the supervisor (its system is stopping).
    Bastion,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bastion refused to start the supervisor")
    }
}

impl std::error::Error for StartError {}

struct ChildState {
    status: ChildStatus,
    starts: u64,
    restarts: u32,
    started_at: SystemTime,
}

struct Inner {
    name: String,
    observer: Observer,
    intensity: Mutex<RestartIntensity>,
    specs: Vec<FixedChildSpec>,
    states: Vec<Mutex<ChildState>>,
    outcome: Mutex<Option<Result<(), Escalation>>>,
    done: event_listener::Event,
    bastion: Mutex<Option<SupervisorRef>>,
}

#[derive(Clone)]
pub struct FixedSupervisor {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// bastion's system is a process-wide singleton; every supervisor of ours hangs under it.
fn bastion_system() {
    static START: Once = Once::new();
    START.call_once(|| {
        Bastion::init();
        Bastion::start();
    });
}

impl FixedSupervisor {
    /// Starts the children in order under a new bastion supervisor.
    pub fn start(
        name: impl Into<String>,
        intensity: RestartIntensity,
        specs: Vec<FixedChildSpec>,
        observer: Observer,
    ) -> Result<Self, StartError> {
        bastion_system();
        let now = SystemTime::now();
        let states = specs
            .iter()
            .map(|_| {
                Mutex::new(ChildState {
                    status: ChildStatus::Running,
                    starts: 0,
                    restarts: 0,
                    started_at: now,
                })
            })
            .collect();
        let inner = Arc::new(Inner {
            name: name.into(),
            observer,
            intensity: Mutex::new(intensity),
            specs,
            states,
            outcome: Mutex::new(None),
            done: event_listener::Event::new(),
            bastion: Mutex::new(None),
        });
        let for_bastion = Arc::clone(&inner);
        let sup_ref = Bastion::supervisor(move |sp| {
            let mut sp = sp.with_strategy(SupervisionStrategy::OneForOne);
            for index in 0..for_bastion.specs.len() {
                let inner = Arc::clone(&for_bastion);
                let name = inner.specs[index].id.clone();
                sp = sp.children(move |children| {
                    children
                        .with_name(name)
                        .with_exec(move |_ctx: BastionContext| run_child(Arc::clone(&inner), index))
                });
            }
            sp
        })
        .map_err(|()| StartError::Bastion)?;
        *lock(&inner.bastion) = Some(sup_ref);
        Ok(FixedSupervisor { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn which_children(&self) -> Vec<ChildInfo> {
        self.inner
            .specs
            .iter()
            .zip(&self.inner.states)
            .map(|(spec, state)| {
                let state = lock(state);
                ChildInfo {
                    id: spec.id.clone(),
                    kind: spec.kind,
                    status: state.status,
                    restarts: state.restarts,
                    started_at: state.started_at,
                    supervisor: spec.nested.is_some(),
                    children: spec
                        .nested
                        .as_ref()
                        .map(DynamicSupervisor::which_children)
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Restarts counted against the intensity right now.
    pub fn recent_restarts(&self) -> usize {
        lock(&self.inner.intensity).recent(Instant::now())
    }

    /// Stops every child (orderly) and resolves `wait` with `Ok` unless it already escalated.
    pub fn stop(&self) {
        self.inner.finish(Ok(()));
    }

    /// Gives up as if the intensity were exceeded (the "crash the root" fault).
    pub fn escalate(&self, reason: impl Into<String>) {
        self.inner.escalate(reason.into());
    }

    /// Resolves when the supervisor has stopped: `Err` when it escalated.
    pub async fn wait(&self) -> Result<(), Escalation> {
        loop {
            if let Some(outcome) = lock(&self.inner.outcome).clone() {
                return outcome;
            }
            let listener = self.inner.done.listen();
            if let Some(outcome) = lock(&self.inner.outcome).clone() {
                return outcome;
            }
            listener.await;
        }
    }

    /// The outcome, if the supervisor has stopped.
    pub fn outcome(&self) -> Option<Result<(), Escalation>> {
        lock(&self.inner.outcome).clone()
    }
}

impl Inner {
    fn finish(&self, outcome: Result<(), Escalation>) {
        {
            let mut slot = lock(&self.outcome);
            if slot.is_some() {
                return;
            }
            *slot = Some(outcome);
        }
        for state in &self.states {
            lock(state).status = ChildStatus::Stopped;
        }
        if let Some(sup_ref) = lock(&self.bastion).take() {
            let _ = sup_ref.stop();
        }
        self.done.notify(usize::MAX);
    }

    fn escalate(&self, reason: String) {
        (self.observer)(&SupervisorEvent::Escalated {
            supervisor: self.name.clone(),
            reason: reason.clone(),
        });
        self.finish(Err(Escalation {
            supervisor: self.name.clone(),
            reason,
        }));
    }

    /// Called at the top of every instance; false when the instance must not run (the
    /// supervisor has stopped, or this restart is one too many).
    fn instance_starting(&self, index: usize) -> bool {
        if lock(&self.outcome).is_some() {
            return false;
        }
        let id = &self.specs[index].id;
        let mut state = lock(&self.states[index]);
        state.starts += 1;
        if state.starts == 1 {
            state.status = ChildStatus::Running;
            drop(state);
            (self.observer)(&SupervisorEvent::Started {
                supervisor: self.name.clone(),
                child: id.clone(),
                kind: self.specs[index].kind,
            });
            return true;
        }
        let recorded = lock(&self.intensity).record(Instant::now());
        if let Err(exceeded) = recorded {
            state.status = ChildStatus::Stopped;
            drop(state);
            self.escalate(format!("{exceeded} (last restart: {id})"));
            return false;
        }
        state.restarts += 1;
        state.status = ChildStatus::Running;
        state.started_at = SystemTime::now();
        let restarts = state.restarts;
        drop(state);
        (self.observer)(&SupervisorEvent::Restarted {
            supervisor: self.name.clone(),
            child: id.clone(),
            kind: self.specs[index].kind,
            restarts,
        });
        true
    }

    fn instance_ended(&self, index: usize, exit: &Exit, restarting: bool) {
        lock(&self.states[index]).status = if restarting {
            ChildStatus::Restarting
        } else {
            ChildStatus::Stopped
        };
        (self.observer)(&SupervisorEvent::Exited {
            supervisor: self.name.clone(),
            child: self.specs[index].id.clone(),
            kind: self.specs[index].kind,
            exit: exit.clone(),
            restarting,
        });
    }
}

/// One instance of a fixed child, as bastion runs it. What it returns tells bastion whether to
/// restart: `Err` or a panic restarts, `Ok` stops.
async fn run_child(inner: Arc<Inner>, index: usize) -> Result<(), ()> {
    if !inner.instance_starting(index) {
        return Ok(());
    }
    let kind = inner.specs[index].kind;
    let body = (inner.specs[index].body)();
    let exit = match AssertUnwindSafe(body).catch_unwind().await {
        Ok(()) => Exit::Normal,
        Err(payload) => {
            let exit = Exit::Panic(panic_message(payload.as_ref()));
            let stopped = lock(&inner.outcome).is_some();
            let restarting = !stopped && kind.restarts_after(&exit);
            inner.instance_ended(index, &exit, restarting);
            if restarting {
                // Let bastion see the panic itself: its restart is the one we count.
                std::panic::resume_unwind(payload);
            }
            return Ok(());
        }
    };
    let stopped = lock(&inner.outcome).is_some();
    let restarting = !stopped && kind.restarts_after(&exit);
    inner.instance_ended(index, &exit, restarting);
    if restarting {
        Err(())
    } else {
        Ok(())
    }
}

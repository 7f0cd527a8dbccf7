//! A supervisor of many short-lived children (peers, rooms), each a bastion lightproc (run by
//! [`crate::scheduler`]).
//!
//! bastion's own children groups are never freed once deployed at run time (see bastion-notes), so a
//! child per connection must not be one. Here a child is a plain lightproc whose future is wrapped to
//! catch its panic and report its end to this supervisor's mailbox; the supervisor applies OTP's
//! rules (kind, restart intensity, escalation). The mailbox and the child table live outside the
//! manager loop ([`DynamicSupervisor::run`]), which is itself a bastion child: when it crashes and
//! is restarted, the children of its previous instance are terminated (as OTP links them), it
//! starts with a clean restart history (as a fresh OTP supervisor does), and the `init` hook
//! starts afresh. Children started while it restarts belong to the new instance and are kept; a
//! child that outlives the grace it is given stays in the table until it ends, so its end is
//! always reported and its `on_exit` always runs.
use crate::child::{panic_message, ChildInfo, ChildKind, ChildStatus, Exit, StopReason};
use crate::intensity::RestartIntensity;
use crate::observer::{Observer, SupervisorEvent};
use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
/// Makes a fresh instance of a child; called on start and on every restart, under the
/// supervisor's table lock, so it must only build the future (not call the supervisor).
pub type StartFn = Box<dyn FnMut() -> BoxFuture + Send>;
/// Asks the running instance to end (it then returns, and its end is reported as usual).
pub type StopFn = Box<dyn Fn(StopReason) + Send + Sync>;
/// Told of every end of an instance, and whether the supervisor starts it again.
pub type ExitFn = Box<dyn FnMut(&Exit, bool) + Send>;
/// Starts the children a fresh supervisor instance must have (after its own restart).
pub type InitFn = Arc<dyn Fn(&DynamicSupervisor) + Send + Sync>;

pub struct ChildSpec {
    pub id: String,
    pub kind: ChildKind,
    pub start: StartFn,
    pub stop: StopFn,
    pub on_exit: Option<ExitFn>,
}

/// Identifies a child of one supervisor for its whole life, across restarts.
pub type ChildKey = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartChildError {
    /// The supervisor is shutting down and takes no new children.
    ShuttingDown,
}

impl fmt::Display for StartChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("supervisor is shutting down")
    }
}

impl std::error::Error for StartChildError {}

enum Msg {
    Exited {
        key: ChildKey,
        incarnation: u64,
        exit: Exit,
    },
    Crash(String),
}

struct Entry {
    spec: ChildSpec,
    status: ChildStatus,
    restarts: u32,
    started_at: SystemTime,
    /// Which instance is current: a report from an older one is stale.
    incarnation: u64,
    /// Which instance of the supervisor started the child (see [`Table::generation`]).
    generation: u64,
}

struct Table {
    next_key: ChildKey,
    /// Boxed: a hash table keeps up to twice as many slots as entries, and a slot is then 16
    /// bytes instead of the entry's 128 (with 19,600 peers, 214 bytes a child became 155).
    entries: HashMap<ChildKey, Box<Entry>>,
    accepting: bool,
    /// Bumped on each restart of the supervisor: children of an older generation belonged to
    /// the instance that went down and are being terminated.
    generation: u64,
}

struct Inner {
    name: String,
    observer: Observer,
    intensity: Mutex<RestartIntensity>,
    table: Mutex<Table>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    runs: AtomicU64,
    init: Mutex<Option<InitFn>>,
    emptied: event_listener::Event,
    /// How long a restart waits for the previous instance's children to end.
    restart_grace: Mutex<Duration>,
}

/// A handle to a dynamic supervisor; clones share it.
#[derive(Clone)]
pub struct DynamicSupervisor {
    inner: Arc<Inner>,
}

// A poisoned lock only means a panic happened while it was held; the table is still consistent
// because every mutation under it is a single insert/remove/field store.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DynamicSupervisor {
    pub fn new(name: impl Into<String>, intensity: RestartIntensity, observer: Observer) -> Self {
        let (tx, rx) = async_channel::unbounded();
        DynamicSupervisor {
            inner: Arc::new(Inner {
                name: name.into(),
                observer,
                intensity: Mutex::new(intensity),
                table: Mutex::new(Table {
                    next_key: 0,
                    entries: HashMap::new(),
                    accepting: true,
                    generation: 0,
                }),
                tx,
                rx,
                runs: AtomicU64::new(0),
                init: Mutex::new(None),
                emptied: event_listener::Event::new(),
                restart_grace: Mutex::new(Duration::from_secs(5)),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The children a restarted instance of this supervisor starts with.
    pub fn set_init(&self, init: InitFn) {
        *lock(&self.inner.init) = Some(init);
    }

    /// How long a restart of this supervisor waits for its previous children to end before
    /// going on without them (they stay tracked; 5 s unless set).
    pub fn set_restart_grace(&self, grace: Duration) {
        *lock(&self.inner.restart_grace) = grace;
    }

    /// False once [`shutdown`](Self::shutdown) has begun: a child asked to stop then is stopped
    /// for good, not because its supervisor restarts.
    pub fn is_accepting(&self) -> bool {
        lock(&self.inner.table).accepting
    }

    /// Whether `key` is a child of the supervisor's current instance that is not being
    /// terminated (a child that outlived a restart's grace is not).
    pub fn is_current(&self, key: ChildKey) -> bool {
        let table = lock(&self.inner.table);
        table.entries.get(&key).is_some_and(|e| {
            e.generation == table.generation && e.status != ChildStatus::Terminating
        })
    }

    pub fn start_child(&self, mut spec: ChildSpec) -> Result<ChildKey, StartChildError> {
        let id = spec.id.clone();
        let kind = spec.kind;
        {
            let mut table = lock(&self.inner.table);
            if !table.accepting {
                return Err(StartChildError::ShuttingDown);
            }
            let key = table.next_key;
            table.next_key += 1;
            let future = (spec.start)();
            if kind == ChildKind::Temporary {
                // Never started again: what its start held (a peer's accepted socket, its
                // mailbox) goes now, not when the child ends. A zero-sized closure: no box.
                spec.start = Box::new(|| -> BoxFuture { Box::pin(std::future::ready(())) });
            }
            let generation = table.generation;
            table.entries.insert(
                key,
                Box::new(Entry {
                    spec,
                    status: ChildStatus::Running,
                    restarts: 0,
                    started_at: SystemTime::now(),
                    incarnation: 0,
                    generation,
                }),
            );
            // Inserted before spawning so that even an instantly finished child finds its entry.
            spawn_instance(&self.inner, key, 0, future);
            drop(table);
            (self.inner.observer)(&SupervisorEvent::Started {
                supervisor: self.inner.name.clone(),
                child: id,
                kind,
            });
            Ok(key)
        }
    }

    /// Asks one child to stop; it is not restarted.
    pub fn terminate_child(&self, key: ChildKey, reason: StopReason) -> bool {
        let mut table = lock(&self.inner.table);
        match table.entries.get_mut(&key) {
            Some(entry) => {
                entry.status = ChildStatus::Terminating;
                (entry.spec.stop)(reason);
                true
            }
            None => false,
        }
    }

    pub fn count(&self) -> usize {
        lock(&self.inner.table).entries.len()
    }

    pub fn which_children(&self) -> Vec<ChildInfo> {
        let table = lock(&self.inner.table);
        let mut rows: Vec<(ChildKey, ChildInfo)> = table
            .entries
            .iter()
            .map(|(key, e)| {
                (
                    *key,
                    ChildInfo {
                        id: e.spec.id.clone(),
                        kind: e.spec.kind,
                        status: e.status,
                        restarts: e.restarts,
                        started_at: e.started_at,
                        supervisor: false,
                        children: Vec::new(),
                    },
                )
            })
            .collect();
        rows.sort_by_key(|(key, _)| *key);
        rows.into_iter().map(|(_, info)| info).collect()
    }

    /// Makes the supervisor's own loop panic, exactly as a bug in it would.
    pub fn crash(&self, reason: impl Into<String>) {
        let _ = self.inner.tx.try_send(Msg::Crash(reason.into()));
    }

    /// The supervisor's loop: the body of the bastion child that owns this supervisor.
    pub async fn run(&self) {
        if self.inner.runs.fetch_add(1, Ordering::SeqCst) > 0 {
            // A restart of the supervisor, which OTP makes a fresh process: a clean restart
            // history (the crashes that made its predecessor give up were counted by its
            // parent), and the children it had are taken down with it. They are gone before the
            // fresh start so that no two instances of one child run at once.
            lock(&self.inner.intensity).reset();
            self.terminate_previous().await;
            let init = lock(&self.inner.init).clone();
            if let Some(init) = init {
                init(self);
            }
        }
        while let Ok(msg) = self.inner.rx.recv().await {
            match msg {
                Msg::Exited {
                    key,
                    incarnation,
                    exit,
                } => self.inner.handle_exit(key, incarnation, exit),
                Msg::Crash(reason) => panic!("{reason}"),
            }
        }
    }

    /// Terminates the children of the instance that went down; those started since (new
    /// connections, rooms made meanwhile) belong to this instance and are left alone.
    async fn terminate_previous(&self) {
        let grace = *lock(&self.inner.restart_grace);
        let generation = {
            let mut table = lock(&self.inner.table);
            table.generation += 1;
            let generation = table.generation;
            for entry in table.entries.values_mut() {
                if entry.generation < generation {
                    entry.status = ChildStatus::Terminating;
                    (entry.spec.stop)(StopReason::SupervisorDown);
                }
            }
            generation
        };
        let previous = |table: &Table| {
            table
                .entries
                .values()
                .filter(|e| e.generation < generation)
                .count()
        };
        let gone = self
            .wait_until(Instant::now() + grace, |t| previous(t) == 0)
            .await;
        if !gone {
            let left = previous(&lock(&self.inner.table));
            log::warn!(
                "{}: {left} children of its previous instance did not stop within {grace:?}; \
                 going on without them (their ends are still handled)",
                self.inner.name
            );
        }
    }

    /// Handles exit reports until `done` holds for the table (true) or `until` passes (false).
    /// The mailbox is drained here too: the manager loop may be the thing that is down.
    async fn wait_until(&self, until: Instant, done: impl Fn(&Table) -> bool) -> bool {
        enum Next {
            Msg(Msg),
            Removed,
            Timeout,
        }
        loop {
            let listener = self.inner.emptied.listen();
            if done(&lock(&self.inner.table)) {
                return true;
            }
            let next = async {
                match self.inner.rx.recv().await {
                    Ok(msg) => Next::Msg(msg),
                    // Never: `inner` holds a sender.
                    Err(_) => Next::Timeout,
                }
            }
            .or(async {
                // A terminated child's end is handled where it ends (see `ExitReport`).
                listener.await;
                Next::Removed
            })
            .or(async {
                async_io::Timer::at(until).await;
                Next::Timeout
            })
            .await;
            match next {
                Next::Msg(Msg::Exited {
                    key,
                    incarnation,
                    exit,
                }) => self.inner.handle_exit(key, incarnation, exit),
                Next::Msg(Msg::Crash(_)) | Next::Removed => {}
                Next::Timeout => return done(&lock(&self.inner.table)),
            }
        }
    }

    /// Orderly shutdown: no new children, every child asked to stop, wait for them (bounded).
    /// Returns how many children did not end within the deadline.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.shutdown_with(StopReason::Shutdown, deadline).await
    }

    /// As [`shutdown`](Self::shutdown), telling the children why.
    pub async fn shutdown_with(&self, reason: StopReason, deadline: Duration) -> usize {
        lock(&self.inner.table).accepting = false;
        self.terminate_all(reason, deadline).await
    }

    async fn terminate_all(&self, reason: StopReason, deadline: Duration) -> usize {
        {
            let mut table = lock(&self.inner.table);
            for entry in table.entries.values_mut() {
                entry.status = ChildStatus::Terminating;
                (entry.spec.stop)(reason);
            }
        }
        if self
            .wait_until(Instant::now() + deadline, |t| t.entries.is_empty())
            .await
        {
            return 0;
        }
        // Still tracked: when they do end, their `on_exit` runs (see `ExitReport`).
        let left = self.count();
        log::warn!(
            "{}: {left} children did not stop within {deadline:?}",
            self.inner.name
        );
        left
    }

    /// Resolves once the supervisor has no children (at once if it has none).
    pub async fn until_empty(&self) {
        self.until_at_most(0).await
    }

    /// Resolves once the supervisor has at most `n` children.
    pub async fn until_at_most(&self, n: usize) {
        loop {
            if lock(&self.inner.table).entries.len() <= n {
                return;
            }
            let listener = self.inner.emptied.listen();
            if lock(&self.inner.table).entries.len() <= n {
                return;
            }
            listener.await;
        }
    }
}

impl Inner {
    /// Whether the instance `incarnation` of `key` is being terminated: its end restarts
    /// nothing, so it may be handled where it happens.
    fn is_terminating(&self, key: ChildKey, incarnation: u64) -> bool {
        lock(&self.table)
            .entries
            .get(&key)
            .is_some_and(|e| e.incarnation == incarnation && e.status == ChildStatus::Terminating)
    }

    fn handle_exit(self: &Arc<Self>, key: ChildKey, incarnation: u64, exit: Exit) {
        let inner = self;
        let mut table = lock(&inner.table);
        let Some(entry) = table.entries.get_mut(&key) else {
            return;
        };
        if entry.incarnation != incarnation {
            return;
        }
        let wanted =
            entry.status != ChildStatus::Terminating && entry.spec.kind.restarts_after(&exit);
        let allowed = if wanted {
            lock(&inner.intensity).record(Instant::now())
        } else {
            Ok(())
        };
        let restarting = wanted && allowed.is_ok();
        let (id, kind) = (entry.spec.id.clone(), entry.spec.kind);
        (inner.observer)(&SupervisorEvent::Exited {
            supervisor: inner.name.clone(),
            child: id.clone(),
            kind,
            exit: exit.clone(),
            restarting,
        });
        if let Some(on_exit) = entry.spec.on_exit.as_mut() {
            on_exit(&exit, restarting);
        }
        if restarting {
            entry.restarts += 1;
            entry.incarnation += 1;
            entry.status = ChildStatus::Running;
            entry.started_at = SystemTime::now();
            let future = (entry.spec.start)();
            let (restarts, incarnation) = (entry.restarts, entry.incarnation);
            spawn_instance(inner, key, incarnation, future);
            drop(table);
            (inner.observer)(&SupervisorEvent::Restarted {
                supervisor: inner.name.clone(),
                child: id,
                kind,
                restarts,
            });
            return;
        }
        table.entries.remove(&key);
        drop(table);
        // Waiters check their own threshold; a wake-up per exit is cheap when nobody waits.
        inner.emptied.notify(usize::MAX);
        if let Err(exceeded) = allowed {
            let reason = format!("{exceeded} (last: {id} {exit})");
            (inner.observer)(&SupervisorEvent::Escalated {
                supervisor: inner.name.clone(),
                reason: reason.clone(),
            });
            // Escalate as OTP does: this supervisor terminates, and its parent sees it crash.
            panic!("{}: {reason}", inner.name);
        }
    }
}

/// Reports the end of an instance, including being dropped unfinished (its lightproc cancelled).
///
/// The end of a child that was asked to stop is handled at once, where it happens: it restarts
/// nothing and cannot escalate, and so its cleanup (`on_exit`) never depends on the manager
/// loop, which may be down or gone (a restart in progress, a shutdown past its deadline). Any
/// other end goes through the supervisor's mailbox, whose loop applies OTP's rules.
struct ExitReport {
    supervisor: Weak<Inner>,
    key: ChildKey,
    incarnation: u64,
    exit: Option<Exit>,
}

impl ExitReport {
    fn finish(mut self, exit: Exit) {
        self.exit = Some(exit);
    }
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let Some(inner) = self.supervisor.upgrade() else {
            return;
        };
        let exit = self.exit.take().unwrap_or(Exit::Terminated);
        if inner.is_terminating(self.key, self.incarnation) {
            inner.handle_exit(self.key, self.incarnation, exit);
            return;
        }
        let _ = inner.tx.try_send(Msg::Exited {
            key: self.key,
            incarnation: self.incarnation,
            exit,
        });
    }
}

fn spawn_instance(inner: &Arc<Inner>, key: ChildKey, incarnation: u64, future: BoxFuture) {
    let report = ExitReport {
        supervisor: Arc::downgrade(inner),
        key,
        incarnation,
        exit: None,
    };
    // A lightproc that runs detached and reports its own end.
    crate::scheduler::spawn(async move {
        let exit = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(()) => Exit::Normal,
            Err(payload) => Exit::Panic(panic_message(payload.as_ref())),
        };
        report.finish(exit);
    });
}

//! The scheduler of dynamic children (peers, rooms): bastion lightprocs, run by threads that
//! also poll for I/O, as the BEAM's schedulers do.
//!
//! On bastion's pool, a socket's readiness travelled from async-io's reactor thread to a
//! `bastion-driver` thread: a context switch and a round of epoll bookkeeping per batch of
//! events, which put a relayed message at 1.75× the CPU of a minimal tokio relay (perf,
//! bench/README.md). Here every thread runs queued lightprocs and, when there are none, waits
//! in the [`reactor`](crate::reactor) that the connections' sockets are registered with: a
//! socket's event, the process it wakes and the processes that one wakes in turn all run on the
//! thread that saw the event.
//!
//! The processes are the same lightprocs bastion's `spawn!` makes (`lightproc`, bastion's
//! process type, with a `ProcStack`); only the queue they are scheduled on is ours. The static
//! part of the tree (the supervisors, the listener) is supervised by bastion but runs here too,
//! through [`on_scheduler`]: bastion's pool only waits for it and restarts it.
//!
//! The scheduler is started by the first spawn, often from one of bastion's threads, which
//! bastion pins to one CPU each: sized from that thread's affinity it had one thread, and its
//! threads inherited the pin. So it sizes itself from the process's CPU set (the main thread's,
//! which is what `taskset` or a cgroup gave the process) and gives each of its threads that
//! whole set: one thread per CPU the process may use, none pinned.
use crate::reactor::reactor;
use concurrent_queue::ConcurrentQueue;
use lightproc::prelude::{LightProc, ProcStack, RecoverableHandle};
use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

/// Processes run before the thread looks at the reactor again: a busy thread still reads its
/// sockets, and no process waits long behind a burst.
const BATCH: usize = 128;

/// Events read from the reactor in one wait.
const EVENTS: usize = 256;

struct Scheduler {
    queue: ConcurrentQueue<LightProc>,
    /// Threads waiting in the reactor, or about to: a new process must wake one of them.
    sleepers: AtomicUsize,
}

thread_local! {
    /// True while one of the scheduler's threads is running processes or handing out the
    /// reactor's events: what it schedules then, it runs itself next.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `future` as a lightproc on the scheduler; it runs detached to its end.
pub(crate) fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (proc, handle) = LightProc::recoverable(future, schedule, ProcStack::default());
    // Dropping the handle detaches the process; it reports its own end (see `dynamic`).
    drop(handle);
    proc.schedule();
}

/// Runs `future` on the scheduler and waits for it from wherever this is awaited (a static
/// child on bastion's pool): its I/O is then handled on the thread that reads the reactor's
/// events, and what it spawns runs there next. A panic comes back here as the same panic, and
/// dropping the returned future cancels the process.
///
/// For the listener: on bastion's pool, each accept hopped from the reactor to a bastion thread
/// and its connection back to the scheduler (bench/README.md, "the setup profile").
pub fn on_scheduler<F>(future: F) -> OnScheduler<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let caught = futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(future));
    let (proc, handle) = LightProc::recoverable(caught, schedule, ProcStack::default());
    proc.schedule();
    OnScheduler { handle }
}

/// The end of a process started by [`on_scheduler`].
pub struct OnScheduler<T> {
    handle: RecoverableHandle<std::thread::Result<T>>,
}

impl<T> Future for OnScheduler<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.handle).poll(cx) {
            Poll::Ready(Some(Ok(value))) => Poll::Ready(value),
            Poll::Ready(Some(Err(panic))) => std::panic::resume_unwind(panic),
            // Only a cancel ends it without an output, and only our drop cancels.
            Poll::Ready(None) => panic!("a process on the scheduler was cancelled"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for OnScheduler<T> {
    fn drop(&mut self) {
        // A no-op once the process has ended.
        self.handle.cancel();
    }
}

fn schedule(proc: LightProc) {
    let scheduler = scheduler();
    if let Err(e) = scheduler.queue.push(proc) {
        // The queue is unbounded and never closed: unreachable, but never lose a process.
        e.into_inner().run();
        return;
    }
    // A process woken by a running process, or by an event a thread read, runs on that thread
    // next; others (an accept, a supervisor) call a thread in, as does work piling up.
    if !RUNNING.with(Cell::get) || scheduler.queue.len() > 1 {
        // Pairs with the fence of a thread going to sleep: either it sees this process in the
        // queue, or this sees it among the sleepers.
        fence(Ordering::SeqCst);
        if scheduler.sleepers.load(Ordering::SeqCst) > 0 {
            reactor().notify();
        }
    }
}

/// Starts the threads, if no process has yet: they are the ones that wait in the reactor.
pub(crate) fn start() {
    scheduler();
}

fn scheduler() -> &'static Scheduler {
    static SCHEDULER: OnceLock<&'static Scheduler> = OnceLock::new();
    SCHEDULER.get_or_init(|| {
        let scheduler: &'static Scheduler = Box::leak(Box::new(Scheduler {
            queue: ConcurrentQueue::unbounded(),
            sleepers: AtomicUsize::new(0),
        }));
        let cpus = affinity::of_process();
        let threads = cpus.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            affinity::count,
        );
        for i in 0..threads {
            std::thread::Builder::new()
                .name(format!("scheduler-{i}"))
                .spawn(move || {
                    if let Some(cpus) = &cpus {
                        affinity::set_current(cpus);
                    }
                    run(scheduler)
                })
                .expect("cannot start a scheduler thread");
        }
        scheduler
    })
}

#[cfg(target_os = "linux")]
mod affinity {
    use rustix::process::getpid;
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

    /// The CPUs the process may run on: the main thread's set (a thread's own id is its
    /// process's id only for the main thread), whichever thread asks.
    pub(super) fn of_process() -> Option<CpuSet> {
        match sched_getaffinity(Some(getpid())) {
            Ok(cpus) if cpus.count() > 0 => Some(cpus),
            Ok(_) => None,
            Err(e) => {
                log::warn!(
                    "scheduler: cannot read the process's CPU set ({e}); sizing from this thread's"
                );
                None
            }
        }
    }

    pub(super) fn count(cpus: &CpuSet) -> usize {
        usize::try_from(cpus.count()).unwrap_or(1).max(1)
    }

    /// Undoes a pin inherited from the thread that started this one.
    pub(super) fn set_current(cpus: &CpuSet) {
        if let Err(e) = sched_setaffinity(None, cpus) {
            log::warn!(
                "scheduler: cannot unpin {:?} ({e})",
                std::thread::current().name()
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    /// Elsewhere the standard library's answer is all there is.
    #[derive(Clone, Copy)]
    pub(super) struct CpuSet;

    pub(super) fn of_process() -> Option<CpuSet> {
        None
    }

    pub(super) fn count(_: &CpuSet) -> usize {
        1
    }

    pub(super) fn set_current(_: &CpuSet) {}
}

fn run(scheduler: &'static Scheduler) {
    let reactor = reactor();
    let mut events = Vec::with_capacity(EVENTS);
    let mut wakers = Vec::new();
    loop {
        let mut ran = 0;
        RUNNING.with(|r| r.set(true));
        while ran < BATCH {
            let Ok(proc) = scheduler.queue.pop() else {
                break;
            };
            proc.run();
            ran += 1;
        }
        RUNNING.with(|r| r.set(false));
        // After a full batch the sockets are read without waiting, so a busy thread still
        // hears them; with nothing left to run it waits for an event or a notify.
        let block = ran < BATCH;
        if block {
            scheduler.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !scheduler.queue.is_empty() {
                scheduler.sleepers.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
        }
        reactor.wait(&mut events, block);
        if block {
            scheduler.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        RUNNING.with(|r| r.set(true));
        reactor.dispatch(&events, &mut wakers);
        RUNNING.with(|r| r.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_processes_and_wakes_them_from_other_threads() {
        let (tx, rx) = mpsc::channel();
        let (wake_tx, wake_rx) = async_channel::bounded::<u32>(1);
        spawn(async move {
            // Woken by a send from a thread that is not the scheduler's.
            let n = wake_rx.recv().await.unwrap_or(0);
            tx.send(n + 1).ok();
        });
        std::thread::spawn(move || wake_tx.send_blocking(41).ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(42));
    }

    /// Thousands of wake-ups from threads that are not the scheduler's, each while its threads
    /// are asleep in the reactor or about to be: none is lost (the notifier's flag once stuck
    /// when its eventfd was read away between a write and the edge's collection).
    #[test]
    fn no_wake_up_from_outside_is_lost() {
        // Four ping-pongs, each between a thread of its own and a process: every ping finds the
        // scheduler's threads asleep or going to sleep, and wakes one.
        let players: Vec<_> = (0..4)
            .map(|_| {
                let (ping, pinged) = async_channel::bounded::<u32>(1);
                let (pong, ponged) = mpsc::channel();
                spawn(async move {
                    while let Ok(n) = pinged.recv().await {
                        if pong.send(n).is_err() {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    for i in 0..3000u32 {
                        ping.send_blocking(i).ok();
                        assert_eq!(
                            ponged.recv_timeout(Duration::from_secs(10)),
                            Ok(i),
                            "a process woken from outside did not run"
                        );
                    }
                })
            })
            .collect();
        for player in players {
            player.join().expect("every ping answered");
        }
    }

    #[test]
    fn on_scheduler_gives_back_the_output_and_the_panic() {
        let on = std::thread::current().id();
        let ran_on =
            futures_lite::future::block_on(on_scheduler(
                async move { std::thread::current().id() },
            ));
        assert_ne!(
            ran_on, on,
            "ran on the caller's thread, not the scheduler's"
        );
        let panicked = std::panic::catch_unwind(|| {
            futures_lite::future::block_on(on_scheduler(async { panic!("injected listener") }))
        });
        let payload = panicked.expect_err("the panic comes back to the caller");
        assert_eq!(crate::panic_message(payload.as_ref()), "injected listener");
    }

    #[test]
    fn dropping_on_scheduler_cancels_the_process() {
        struct Dropped(mpsc::Sender<()>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.send(()).ok();
            }
        }
        let (tx, rx) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let held = Dropped(tx);
        let running = on_scheduler(async move {
            let _held = held;
            started_tx.send(()).ok();
            std::future::pending::<()>().await
        });
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("started");
        assert!(rx.try_recv().is_err());
        drop(running);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the cancelled process's future is dropped");
    }

    #[test]
    fn a_panicking_process_does_not_stop_the_scheduler() {
        spawn(async { panic!("injected") });
        let (tx, rx) = mpsc::channel();
        for i in 0..1000u32 {
            let tx = tx.clone();
            spawn(async move {
                futures_lite::future::yield_now().await;
                tx.send(i).ok();
            });
        }
        let mut got: Vec<u32> = (0..1000)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)))
            .collect::<Result<_, _>>()
            .expect("every process ran");
        got.sort_unstable();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn waits_on_async_io_sockets_too() {
        let (tx, rx) = mpsc::channel();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        spawn(async move {
            let stream = async_net::TcpStream::connect(addr).await;
            let mut stream = stream.expect("connect");
            let mut buf = [0u8; 5];
            let read = futures_lite::AsyncReadExt::read_exact(&mut stream, &mut buf).await;
            tx.send(read.map(|_| buf).ok()).ok();
        });
        let (mut server, _) = listener.accept().expect("accept");
        std::io::Write::write_all(&mut server, b"hello").expect("write");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Some(*b"hello"))
        );
    }
}

//! The scheduler's reactor: client sockets added once to an edge-triggered epoll set, which the
//! scheduler's threads wait on when they have nothing to run.
//!
//! async-io's sources are one-shot: each time a connection had read its socket dry and waited
//! again, async-io re-armed it with an `epoll_ctl`, 0.9 to 1.2 per relayed message, and each of
//! its waits re-armed a notifier and a timer as well (`perf stat`, bench/README.md). Here a
//! socket is added once with `EPOLLET` and leaves the set when it is closed; waiting is one
//! `epoll_wait`. Each direction of a socket keeps a tick, moved on by every event, and the waker
//! of the task waiting on it: a task that saw the socket dry at tick `t` waits until the tick is
//! no longer `t`, so an edge that arrives between its read and its wait is never lost.
//!
//! Only the sockets of connections use it. The listening sockets, outbound connections and
//! async-io's timers stay on async-io, whose own thread drives them.
use atomic_waker::AtomicWaker;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use slab::Slab;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

/// The epoll key of the reactor's own eventfd. A socket's key is its slab index plus one in the
/// low 32 bits and its registration's generation in the high 32 (see [`Key`]).
const NOTIFY_KEY: u64 = 0;

pub(crate) struct Reactor {
    epoll: OwnedFd,
    /// Written to wake a thread out of `epoll_wait` (new work for the scheduler).
    notifier: OwnedFd,
    /// Set by a notify until a waiting thread has taken it: notifies in between cost nothing.
    notified: AtomicBool,
    sources: Mutex<Slab<Arc<Readiness>>>,
    /// The generation of the next registration.
    generations: AtomicU32,
}

/// A registration's epoll key: its slot and its generation.
///
/// A socket is not taken out of the set before it is closed, and an event another thread has
/// already read from `epoll_wait` is dispatched after the close: by slot alone, it would reach
/// whichever socket took the slot next. A reset's event (`HUP`, `ERR`) then marked that live
/// socket closed, and its reads spun on `EAGAIN` at 100 % of a scheduler thread until the
/// client went (tests/resume.rs lost relays that way). The generation tells them apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key {
    slot: usize,
    generation: u32,
}

impl Key {
    fn data(self) -> io::Result<u64> {
        let slot = u32::try_from(self.slot)
            .ok()
            .and_then(|s| s.checked_add(1))
            .ok_or_else(|| {
                io::Error::other("more sockets than the reactor's keys can tell apart")
            })?;
        Ok(u64::from(self.generation) << 32 | u64::from(slot))
    }

    /// `None` for the notifier's key.
    fn of(data: u64) -> Option<Key> {
        let slot = usize::try_from(data & u64::from(u32::MAX))
            .ok()?
            .checked_sub(1)?;
        Some(Key {
            slot,
            generation: (data >> 32) as u32,
        })
    }
}

/// What a socket's events have said, per direction.
#[derive(Default)]
struct Readiness {
    read: Direction,
    write: Direction,
    /// Which registration of its slot this is.
    generation: u32,
}

#[derive(Default)]
struct Direction {
    tick: AtomicUsize,
    waker: AtomicWaker,
    /// The peer hung up or the socket failed: no edge will come again, so from then on this
    /// direction is always ready, and reads or writes find out what is left (tokio keeps
    /// "read closed" the same way). Without it, a read that came back short after a reset
    /// waited for an edge that never came, with frames still queued.
    closed: AtomicBool,
}

/// Where a direction's events stood when its task last found the socket dry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tick(usize);

impl Direction {
    fn tick(&self) -> Tick {
        Tick(self.tick.load(Ordering::Acquire))
    }

    fn poll_moved(&self, cx: &mut Context<'_>, since: Tick) -> Poll<()> {
        if self.tick() != since || self.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // A waker of another task waiting on this direction is woken, not dropped, as
        // async-io does: it then polls again and registers itself anew.
        if let Some(old) = self.waker.take() {
            if !old.will_wake(cx.waker()) {
                old.wake();
            }
        }
        self.waker.register(cx.waker());
        // An event between the first look and the registration woke nobody: look again.
        if self.tick() != since {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn fire(&self, closed: bool, wakers: &mut Vec<Waker>) {
        if closed {
            self.closed.store(true, Ordering::Release);
        }
        self.tick.fetch_add(1, Ordering::AcqRel);
        if let Some(waker) = self.waker.take() {
            wakers.push(waker);
        }
    }
}

pub(crate) fn reactor() -> &'static Reactor {
    static REACTOR: OnceLock<Reactor> = OnceLock::new();
    REACTOR.get_or_init(|| Reactor::new().expect("cannot create the scheduler's epoll set"))
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notifier = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &notifier,
            EventData::new_u64(NOTIFY_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Reactor {
            epoll,
            notifier,
            notified: AtomicBool::new(false),
            sources: Mutex::new(Slab::new()),
            generations: AtomicU32::new(0),
        })
    }

    fn sources(&self) -> MutexGuard<'_, Slab<Arc<Readiness>>> {
        // The table holds no invariant a panic could break halfway.
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes one thread waiting in [`Reactor::wait`].
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            // Fails only when the counter is full, and then a wake-up is pending anyway.
            let _ = rustix::io::write(&self.notifier, &1u64.to_ne_bytes());
        }
    }

    /// Waits for events (or only collects those already there, if `block` is false) into
    /// `events`, which keeps its capacity.
    pub(crate) fn wait(&self, events: &mut Vec<epoll::Event>, block: bool) {
        events.clear();
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let timeout = if block { None } else { Some(&zero) };
        match epoll::wait(&self.epoll, spare_capacity(events), timeout) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                // Not expected from a valid epoll set; do not spin on it.
                log::error!("scheduler: epoll_wait failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    /// Moves the ticks of the sockets in `events` and wakes their tasks (after the table's lock
    /// is released: a wake-up schedules a process).
    pub(crate) fn dispatch(&self, events: &[epoll::Event], wakers: &mut Vec<Waker>) {
        if events.is_empty() {
            return;
        }
        {
            let sources = self.sources();
            for event in events {
                let data = event.data.u64();
                if data == NOTIFY_KEY {
                    // The counter is reset before the flag, never after: epoll reports an
                    // edge only if the eventfd is still readable when the edge is collected,
                    // so a notify whose write was read away here would be lost with the flag
                    // left set. A notify skipped while the flag is still set is not lost: its
                    // process is in the queue, which this thread runs before it sleeps (the
                    // SeqCst order of the flag and the scheduler's fences make sure it sees it).
                    let mut counter = [0u8; 8];
                    // EAGAIN means another thread already reset it.
                    let _ = rustix::io::read(&self.notifier, &mut counter);
                    self.notified.store(false, Ordering::SeqCst);
                    continue;
                }
                // An event of a socket closed since it was read: its slot is free, or another
                // registration's (see `Key`).
                let Some(readiness) = Key::of(data).and_then(|key| {
                    sources
                        .get(key.slot)
                        .filter(|r| r.generation == key.generation)
                }) else {
                    continue;
                };
                let flags = event.flags;
                let failed = flags.intersects(EventFlags::HUP | EventFlags::ERR);
                if flags.intersects(EventFlags::IN | EventFlags::RDHUP) || failed {
                    let closed = failed || flags.contains(EventFlags::RDHUP);
                    readiness.read.fire(closed, wakers);
                }
                if flags.contains(EventFlags::OUT) || failed {
                    readiness.write.fire(failed, wakers);
                }
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }
}

/// A non-blocking socket (or any file descriptor) in the reactor's set, which it leaves when
/// this is dropped.
pub struct Registered<T: AsFd> {
    io: T,
    slot: usize,
    readiness: Arc<Readiness>,
}

impl<T: AsFd> Registered<T> {
    /// Adds `io`, which must already be non-blocking, to the set (one `epoll_ctl`).
    /// Its events are read by the scheduler's threads, which this starts if need be: a task
    /// on any executor can wait on it.
    pub fn new(io: T) -> io::Result<Registered<T>> {
        crate::scheduler::start();
        let reactor = reactor();
        let generation = reactor.generations.fetch_add(1, Ordering::Relaxed);
        let readiness = Arc::new(Readiness {
            generation,
            ..Readiness::default()
        });
        let slot = reactor.sources().insert(Arc::clone(&readiness));
        let key = Key { slot, generation };
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        let added = key.data().and_then(|data| {
            Ok(epoll::add(
                &reactor.epoll,
                &io,
                EventData::new_u64(data),
                flags,
            )?)
        });
        if let Err(e) = added {
            reactor.sources().remove(slot);
            return Err(e);
        }
        Ok(Registered {
            io,
            slot,
            readiness,
        })
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Read events so far: take it before a read, and wait with it if the read finds nothing.
    pub fn read_tick(&self) -> Tick {
        self.readiness.read.tick()
    }

    /// Ready once a read event came after `since`.
    pub fn poll_readable(&self, cx: &mut Context<'_>, since: Tick) -> Poll<()> {
        self.readiness.read.poll_moved(cx, since)
    }

    pub fn write_tick(&self) -> Tick {
        self.readiness.write.tick()
    }

    pub fn poll_writable(&self, cx: &mut Context<'_>, since: Tick) -> Poll<()> {
        self.readiness.write.poll_moved(cx, since)
    }
}

impl<T: AsFd> Drop for Registered<T> {
    fn drop(&mut self) {
        // No EPOLL_CTL_DEL: closing the descriptor, right after this, takes it out of the set,
        // and saves a system call per connection. Only the slot is freed here.
        reactor().sources().remove(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        (server, client)
    }

    /// A writer that filled the socket waits, and is woken when the other side reads: the
    /// write event of an edge-triggered socket reaches a task that registered after `EAGAIN`.
    #[test]
    fn a_full_socket_wakes_its_writer_when_the_reader_drains_it() {
        let (server, mut client) = pair();
        let socket = Registered::new(server).expect("register");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut written = 0usize;
            let mut waits = 0usize;
            futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| loop {
                let tick = socket.write_tick();
                match socket.get_ref().write(&[1u8; 65536]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if socket.poll_writable(cx, tick).is_pending() {
                            waits += 1;
                            if waits > 1 {
                                return Poll::Ready(());
                            }
                            return Poll::Pending;
                        }
                    }
                    Err(e) => panic!("write failed: {e}"),
                }
            }));
            tx.send(written).ok();
        });
        // The writer fills the socket and waits; reading it all makes room, which wakes it.
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let written = loop {
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            match client.read(&mut buf) {
                Ok(n) => read += n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read failed: {e}"),
            }
            if let Ok(written) = rx.try_recv() {
                break written;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the writer was not woken (read {read} bytes)"
            );
        };
        assert!(written > 0 && read > 0);
    }

    /// Once the peer has hung up, a direction is ready at any tick: no edge would come again,
    /// and a read that came back short then must not wait for one.
    #[test]
    fn a_socket_whose_peer_hung_up_stays_ready() {
        let (server, client) = pair();
        let socket = Registered::new(server).expect("register");
        let dry = socket.read_tick();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Woken by the hang-up's event.
            futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
                socket.poll_readable(cx, dry)
            }));
            let now = socket.read_tick();
            let again = futures_lite::future::block_on(futures_lite::future::poll_once(
                futures_lite::future::poll_fn(|cx| socket.poll_readable(cx, now)),
            ));
            tx.send(again.is_some()).ok();
        });
        drop(client);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "ready again at the tick of the hang-up's event"
        );
    }

    /// An event read from `epoll_wait` before its socket closed, dispatched after another
    /// socket took the slot: a reset's `HUP` used to mark that live socket closed for good, and
    /// its reads then spun on `EAGAIN` until its client went.
    #[test]
    fn a_stale_event_does_not_reach_the_socket_that_took_its_slot() {
        // The slab gives the slot just freed to the next socket, unless a socket of another
        // test took it in between: then try again.
        for _ in 0..50 {
            let (server, _client) = pair();
            let old = Registered::new(server).expect("register");
            let stale = Key {
                slot: old.slot,
                generation: old.readiness.generation,
            };
            drop(old);
            let (server, _client) = pair();
            let new = Registered::new(server).expect("register");
            if new.slot != stale.slot {
                continue;
            }
            let tick = new.read_tick();
            let reset = epoll::Event {
                flags: EventFlags::IN | EventFlags::OUT | EventFlags::HUP | EventFlags::ERR,
                data: EventData::new_u64(stale.data().expect("key")),
            };
            reactor().dispatch(&[reset], &mut Vec::new());
            assert_eq!(
                new.read_tick(),
                tick,
                "the stale event moved the new socket's tick"
            );
            assert!(!new.readiness.read.closed.load(Ordering::Acquire));
            assert!(!new.readiness.write.closed.load(Ordering::Acquire));
            // The new socket's own events still reach it.
            let own = epoll::Event {
                flags: EventFlags::IN,
                data: EventData::new_u64(
                    Key {
                        slot: new.slot,
                        generation: new.readiness.generation,
                    }
                    .data()
                    .expect("key"),
                ),
            };
            reactor().dispatch(&[own], &mut Vec::new());
            assert_ne!(new.read_tick(), tick);
            return;
        }
        panic!("no slot was reused in 50 tries");
    }

    #[test]
    fn a_key_gives_back_its_slot_and_generation_and_never_the_notifiers() {
        for key in [
            Key {
                slot: 0,
                generation: 0,
            },
            Key {
                slot: 7,
                generation: u32::MAX,
            },
            Key {
                slot: u32::MAX as usize - 1,
                generation: 3,
            },
        ] {
            let data = key.data().expect("fits");
            assert_ne!(data, NOTIFY_KEY);
            assert_eq!(Key::of(data), Some(key));
        }
        assert_eq!(Key::of(NOTIFY_KEY), None);
        assert!(Key {
            slot: u32::MAX as usize,
            generation: 0
        }
        .data()
        .is_err());
    }

    /// Data sent before the task waits, between its read and its wait, or after it: each is
    /// read, and a slot freed by one socket serves the next.
    #[test]
    fn reads_every_edge_and_reuses_slots() {
        for round in 0..3u8 {
            let (server, mut client) = pair();
            let socket = Registered::new(server).expect("register");
            client.write_all(&[round]).expect("write");
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| loop {
                    let tick = socket.read_tick();
                    let mut buf = [0u8; 16];
                    match socket.get_ref().read(&mut buf) {
                        Ok(0) => return Poll::Ready(()),
                        Ok(n) => {
                            got.extend_from_slice(&buf[..n]);
                            tx.send(()).ok();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if socket.poll_readable(cx, tick).is_pending() {
                                return Poll::Pending;
                            }
                        }
                        Err(e) => panic!("read failed: {e}"),
                    }
                }));
                got
            });
            rx.recv_timeout(Duration::from_secs(10))
                .expect("first byte");
            client.write_all(&[round + 10]).expect("write");
            rx.recv_timeout(Duration::from_secs(10))
                .expect("second byte");
            drop(client);
            let got = reader.join().expect("reader");
            assert_eq!(got, vec![round, round + 10]);
        }
    }
}

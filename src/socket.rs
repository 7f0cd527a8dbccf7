//! A client's TCP socket that remembers when it has been read dry.
//!
//! async-io's `Async<TcpStream>` makes a `recv` on every poll, and the connection loop is polled
//! for every message its mailbox gets: relaying one message cost three `recvfrom` calls, two of
//! them answering `EAGAIN` (measured with `perf stat`, bench/README.md). Like tokio, this socket
//! takes a read that returned less than it asked for, or `EAGAIN`, as "drained", and makes no
//! system call until the reactor has woken it for this socket.
//!
//! That wake-up is seen by a waker of the socket's own ([`ReadWake`]), not by asking async-io
//! again: its `poll_readable` can answer "not yet" right after the event that woke the task
//! (the event's tick can equal the one recorded at registration), which async-io's own reads
//! survive because they always try the `recv` first. Trusting it alone stalled connections for
//! up to a second under load.
use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::task::AtomicWaker;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub struct Socket {
    io: Arc<Async<TcpStream>>,
    /// False once a read came back short or empty-handed: wait for the reactor before the next.
    readable: bool,
    /// `read_wake` as a `Waker`, made once: async-io keeps it while the socket waits.
    waker: Waker,
    read_wake: Arc<ReadWake>,
}

/// The waker the reactor calls when the socket becomes readable: it notes that, then wakes the
/// connection's task.
#[derive(Default)]
struct ReadWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Socket {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Ends the connection with a reset once the socket is closed: what the kernel still holds
    /// for a client that does not read is dropped, not sent. Reads and writes end at once.
    pub fn abort(&self) {
        self.reset_on_close();
        let tcp = self.io.get_ref();
        // Fails only on a socket that is already gone, which is what we want.
        let _ = tcp.shutdown(std::net::Shutdown::Both);
    }

    /// Sends a FIN: the client reads the end of the stream, and may still write (async-io's
    /// `poll_close` only flushes).
    pub fn shutdown_write(&self) {
        // Fails only on a socket that is already gone, which is what we want.
        let _ = self.io.get_ref().shutdown(std::net::Shutdown::Write);
    }

    /// Makes the socket's close a reset (SO_LINGER 0), and nothing else: with no shutdown, no
    /// FIN goes first, so the client sees only the RST (a fault rule's `reset`).
    pub fn reset_on_close(&self) {
        // Fails only on a socket that is already gone, which is what we want.
        let _ =
            socket2::SockRef::from(self.io.get_ref()).set_linger(Some(std::time::Duration::ZERO));
    }
}

impl From<async_net::TcpStream> for Socket {
    fn from(stream: async_net::TcpStream) -> Self {
        let read_wake = Arc::new(ReadWake::default());
        Socket {
            io: stream.into(),
            readable: true,
            waker: Waker::from(Arc::clone(&read_wake)),
            read_wake,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if !this.readable {
                // The task's waker first: a wake-up from now on reaches this very poll's task.
                this.read_wake.task.register(cx.waker());
                let woken = this.read_wake.woken.swap(false, Ordering::Acquire);
                // Asked even when woken, so that async-io forgets the event it delivered.
                let mut ours = Context::from_waker(&this.waker);
                match this.io.poll_readable(&mut ours) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if woken => {}
                    Poll::Pending => return Poll::Pending,
                }
                this.readable = true;
            }
            match this.io.get_ref().read(buf) {
                Ok(n) => {
                    this.readable = n == buf.len() && n > 0;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => this.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    /// Short reads, reads of exactly the buffer, and data arriving after the socket was read dry
    /// all come through, over a real loopback connection.
    #[test]
    fn reads_everything_across_drained_states() {
        futures_lite::future::block_on(async {
            let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = async_net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut socket = Socket::from(server);
            assert_eq!(socket.peer_addr().unwrap(), client.local_addr().unwrap());

            client.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 16];
            let n = socket.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert!(!socket.readable, "a short read counts as drained");

            // Data sent after the drain, before the reader waits for the reactor, comes through.
            client.write_all(&[7u8; 40]).await.unwrap();
            let mut got = Vec::new();
            let mut small = [0u8; 8];
            while got.len() < 40 {
                let n = socket.read(&mut small).await.unwrap();
                got.extend_from_slice(&small[..n]);
            }
            assert_eq!(got, vec![7u8; 40]);

            socket.write_all(b"back").await.unwrap();
            let mut back = [0u8; 4];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"back");

            drop(client);
            assert_eq!(socket.read(&mut buf).await.unwrap(), 0, "end of stream");
        });
    }
}

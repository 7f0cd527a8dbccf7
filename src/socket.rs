//! A client's TCP socket, registered with the scheduler's edge-triggered reactor.
//!
//! Its events come from [`supervisors::reactor`]: the socket is added to the epoll set once and
//! never re-armed, where async-io re-armed it after every wait (1.2 `epoll_ctl` per relayed
//! message, bench/README.md). A read that returned less than it asked for, or `EAGAIN`, counts
//! as "drained", as in tokio: no system call is made until an event has come for this socket
//! since that read (a relayed message used to cost three `recvfrom`, two of them `EAGAIN`).
use futures_lite::{AsyncRead, AsyncWrite};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use supervisors::reactor::{Registered, Tick};

pub struct Socket {
    io: Registered<TcpStream>,
    /// Set when a read came back short or empty-handed: the read events as they stood before
    /// that read. The next read waits until an event has come since.
    drained_at: Option<Tick>,
}

impl Socket {
    /// Makes `tcp` non-blocking and adds it to the reactor.
    pub fn new(tcp: TcpStream) -> io::Result<Socket> {
        tcp.set_nonblocking(true)?;
        Ok(Socket {
            io: Registered::new(tcp)?,
            drained_at: None,
        })
    }

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

    /// Sends a FIN: the client reads the end of the stream, and may still write.
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

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(seen) = this.drained_at {
                ready!(this.io.poll_readable(cx, seen));
                this.drained_at = None;
            }
            // Taken before the read: an event during the read moves it, so nothing is missed.
            let tick = this.io.read_tick();
            match this.io.get_ref().read(buf) {
                Ok(n) => {
                    // Zero is the end of the stream (or an empty buffer): that does not wait.
                    if n > 0 && n < buf.len() {
                        this.drained_at = Some(tick);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => this.drained_at = Some(tick),
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
        let this = self.get_mut();
        loop {
            let tick = this.io.write_tick();
            match this.io.get_ref().write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.io.poll_writable(cx, tick));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket has no buffer of its own to flush.
        Poll::Ready(Ok(()))
    }

    /// Only flushes, as async-io's did: the connection decides between a FIN
    /// ([`Socket::shutdown_write`]) and a reset.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A listening socket in the same reactor: an accept runs on the scheduler's thread that read
/// its event, and so does the connection it starts (`listener`).
pub struct Listening {
    io: Registered<TcpListener>,
}

impl Listening {
    /// Makes `listener` non-blocking and adds it to the reactor.
    pub fn new(listener: TcpListener) -> io::Result<Listening> {
        listener.set_nonblocking(true)?;
        Ok(Listening {
            io: Registered::new(listener)?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The next connection. Edge-triggered: `EAGAIN` waits for an event since the attempt.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        futures_lite::future::poll_fn(|cx| loop {
            // Taken before the attempt: a connection arriving during it moves the tick.
            let tick = self.io.read_tick();
            match self.io.get_ref().accept() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.io.poll_readable(cx, tick));
                }
                done => return Poll::Ready(done),
            }
        })
        .await
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
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = async_net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().unwrap();
            let mut socket = Socket::new(server).unwrap();
            assert_eq!(socket.peer_addr().unwrap(), client.local_addr().unwrap());

            client.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 16];
            let n = socket.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert!(
                socket.drained_at.is_some(),
                "a short read counts as drained"
            );

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

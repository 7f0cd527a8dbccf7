//! A server's WebSocket over an accepted stream: RFC 6455 framing with tungstenite's types
//! (`FrameHeader` parses and formats the headers, `Message`, `CloseFrame` and `Error` are the
//! ones the rest of the server speaks), and buffers of our own.
//!
//! Why not tungstenite's `WebSocketStream`: its read buffer keeps its capacity for the life of
//! the connection (at least `read_buffer_size`, then the largest frame ever read: an SDP offer),
//! and so does its write buffer. An idle connection held both; with 20,000 of them that was the
//! largest piece of their memory (bench/README.md, issue 20). Here a read goes into the thread's
//! scratch buffer, and a connection keeps only what is left of a frame that has not fully
//! arrived; frames to send are formatted into a buffer that is freed once written.
//!
//! Only what a server needs: client frames must be masked, no extension is negotiated (a
//! reserved bit fails the connection), control frames are final and at most 125 bytes, a text
//! message is valid UTF-8, and a message or frame over the limit fails with `MessageTooLong`.
//! The errors are tungstenite's, so that the connection maps them to close codes as before.
use async_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use async_tungstenite::tungstenite::protocol::frame::FrameHeader;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{
    error::{CapacityError, ProtocolError},
    Bytes, Error, Message, Utf8Bytes,
};
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The reads of every connection on a thread go here first: most reads hold whole frames, and
/// only the rest of a frame cut by the read is kept by its connection.
const SCRATCH: usize = 16 * 1024;

/// Formatted frames above this are written before more are taken: a batch of relays does not
/// grow the buffer without bound while the client reads slowly.
const WRITE_HIGH: usize = 64 * 1024;

/// The least a connection's own buffer grows by when a frame's rest is awaited.
const MIN_READ: usize = 4 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Binary,
}

pub struct WebSocket<S> {
    stream: S,
    /// Bytes read and not yet taken as frames, from `at`: the start of a frame whose rest has
    /// not arrived, or frames after the one a read returned. Freed when all is taken.
    unread: Vec<u8>,
    at: usize,
    /// A fragmented message so far.
    fragments: Option<(Kind, Vec<u8>)>,
    /// Frames to write, from `written`. Freed when all is written.
    unsent: Vec<u8>,
    written: usize,
    max_message: usize,
    /// Our close frame is queued or sent: nothing but reads from here on.
    closing: bool,
    /// The client's close came, or the stream ended or failed: reads are over.
    ended: bool,
}

impl<S> WebSocket<S> {
    /// The server's end of a WebSocket on `stream`, after the 101; `read` is what came after
    /// the upgrade request in the same reads. Messages and frames are limited to `max_message`
    /// bytes.
    pub fn new(stream: S, read: Vec<u8>, max_message: usize) -> Self {
        WebSocket {
            stream,
            unread: read,
            at: 0,
            fragments: None,
            unsent: Vec::new(),
            written: 0,
            max_message,
            closing: false,
            ended: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Formats `message` into the write buffer.
    fn queue(&mut self, message: Message) -> Result<(), Error> {
        if self.closing {
            return Err(Error::Protocol(ProtocolError::SendAfterClosing));
        }
        match message {
            Message::Text(text) => self.put(OpCode::Data(Data::Text), text.as_bytes()),
            Message::Binary(data) => self.put(OpCode::Data(Data::Binary), &data),
            Message::Ping(data) => self.put(OpCode::Control(Control::Ping), &data),
            Message::Pong(data) => self.put(OpCode::Control(Control::Pong), &data),
            Message::Close(close) => {
                self.closing = true;
                let mut payload = Vec::new();
                if let Some(CloseFrame { code, reason }) = close {
                    payload.extend_from_slice(&u16::from(code).to_be_bytes());
                    payload.extend_from_slice(reason.as_bytes());
                }
                self.put(OpCode::Control(Control::Close), &payload);
            }
            // A fault rule's hand-made frame, written as it is.
            Message::Frame(frame) => frame.format(&mut self.unsent)?,
        }
        Ok(())
    }

    /// A final, unmasked frame (a server's frames are never masked).
    fn put(&mut self, opcode: OpCode, payload: &[u8]) {
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        // Writing into a `Vec` cannot fail.
        let _ = header.format(payload.len() as u64, &mut self.unsent);
        self.unsent.extend_from_slice(payload);
    }

    /// The first whole frame at the start of `buf`: how many bytes it took and the message it
    /// completes, if any; `None` if the frame has not fully arrived.
    fn take_frame(&mut self, buf: &[u8]) -> Result<Option<(usize, Option<Message>)>, Error> {
        let mut cursor = Cursor::new(buf);
        let Some((header, len)) = FrameHeader::parse(&mut cursor)? else {
            return Ok(None);
        };
        let too_long = || {
            Error::Capacity(CapacityError::MessageTooLong {
                size: usize::try_from(len).unwrap_or(usize::MAX),
                max_size: self.max_message,
            })
        };
        let len = match usize::try_from(len) {
            Ok(len) if len <= self.max_message => len,
            _ => return Err(too_long()),
        };
        let start = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        let Some(payload) = start.checked_add(len).and_then(|end| buf.get(start..end)) else {
            return Ok(None);
        };
        let Some(mask) = header.mask else {
            return Err(Error::Protocol(ProtocolError::UnmaskedFrameFromClient));
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Error::Protocol(ProtocolError::NonZeroReservedBits));
        }
        let message = self.on_frame(&header, payload, mask)?;
        Ok(Some((start + len, message)))
    }

    /// What a whole frame means: a message, or nothing yet (a fragment, a repeated close).
    fn on_frame(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
        mask: [u8; 4],
    ) -> Result<Option<Message>, Error> {
        match header.opcode {
            OpCode::Control(control) => {
                if !header.is_final {
                    return Err(Error::Protocol(ProtocolError::FragmentedControlFrame));
                }
                if payload.len() > 125 {
                    return Err(Error::Protocol(ProtocolError::ControlFrameTooBig));
                }
                let mut data = Vec::with_capacity(payload.len());
                unmask_into(payload, mask, &mut data);
                match control {
                    Control::Close => self.on_close(data),
                    Control::Ping => {
                        // Answered at the next flush; not once our close is on its way.
                        if !self.closing {
                            self.put(OpCode::Control(Control::Pong), &data);
                        }
                        Ok(Some(Message::Ping(Bytes::from(data))))
                    }
                    Control::Pong => Ok(Some(Message::Pong(Bytes::from(data)))),
                    Control::Reserved(i) => {
                        Err(Error::Protocol(ProtocolError::UnknownControlFrameType(i)))
                    }
                }
            }
            OpCode::Data(data) => {
                let kind = match (data, self.fragments.as_mut()) {
                    (Data::Continue, None) => {
                        return Err(Error::Protocol(ProtocolError::UnexpectedContinueFrame))
                    }
                    (Data::Continue, Some((_, so_far))) => {
                        let size = so_far.len().saturating_add(payload.len());
                        if size > self.max_message {
                            return Err(Error::Capacity(CapacityError::MessageTooLong {
                                size,
                                max_size: self.max_message,
                            }));
                        }
                        unmask_into(payload, mask, so_far);
                        if !header.is_final {
                            return Ok(None);
                        }
                        return match self.fragments.take() {
                            Some((kind, whole)) => complete(kind, whole).map(Some),
                            None => Ok(None),
                        };
                    }
                    (_, Some(_)) => {
                        return Err(Error::Protocol(ProtocolError::ExpectedFragment(data)))
                    }
                    (Data::Text, None) => Kind::Text,
                    (Data::Binary, None) => Kind::Binary,
                    (Data::Reserved(i), None) => {
                        return Err(Error::Protocol(ProtocolError::UnknownDataFrameType(i)))
                    }
                };
                let mut whole = Vec::with_capacity(payload.len());
                unmask_into(payload, mask, &mut whole);
                if header.is_final {
                    complete(kind, whole).map(Some)
                } else {
                    self.fragments = Some((kind, whole));
                    Ok(None)
                }
            }
        }
    }

    /// The client's close: reads end here. A code a client may not send reads as 1002, as
    /// tungstenite reported it (and cowboy answers it).
    fn on_close(&mut self, data: Vec<u8>) -> Result<Option<Message>, Error> {
        let close = match data.as_slice() {
            [] => None,
            [_] => return Err(Error::Protocol(ProtocolError::InvalidCloseSequence)),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                let reason = std::str::from_utf8(reason)?;
                Some(if code.is_allowed() || self.closing {
                    CloseFrame {
                        code,
                        reason: reason.to_owned().into(),
                    }
                } else {
                    CloseFrame {
                        code: CloseCode::Protocol,
                        reason: Utf8Bytes::from_static("Protocol violation"),
                    }
                })
            }
        };
        self.ended = true;
        Ok(Some(Message::Close(close)))
    }
}

/// A whole message's payload as its message.
fn complete(kind: Kind, payload: Vec<u8>) -> Result<Message, Error> {
    Ok(match kind {
        Kind::Text => Message::Text(Utf8Bytes::from(String::from_utf8(payload)?)),
        Kind::Binary => Message::Binary(Bytes::from(payload)),
    })
}

/// Appends `payload` unmasked (RFC 6455 §5.3) to `out`.
fn unmask_into(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(payload.len());
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        out.extend_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // Whole words keep the mask's phase: the rest starts at its first byte.
    out.extend(
        words
            .remainder()
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m),
    );
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Queues our close frame and writes everything queued. Reads go on (the client's close).
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.queue(Message::Close(frame))?;
        futures_lite::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Writes the queued frames, then frees their buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Some(rest) = self.unsent.get(self.written..).filter(|r| !r.is_empty()) {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.written += n;
        }
        self.unsent = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// The next message from what is buffered and what one read brings.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            // What an earlier read left (moved out for the parse, which needs `self`).
            if self.at < self.unread.len() {
                let unread = std::mem::take(&mut self.unread);
                let taken = match unread.get(self.at..) {
                    Some(buffered) => self.take_frame(buffered),
                    None => Ok(None),
                };
                self.unread = unread;
                if let Some((taken, message)) = taken? {
                    self.at += taken;
                    if self.at >= self.unread.len() {
                        self.unread = Vec::new();
                        self.at = 0;
                    }
                    match message {
                        Some(message) => return Poll::Ready(Ok(message)),
                        None => continue,
                    }
                }
                ready!(self.poll_read_more(cx))?;
                continue;
            }
            // Nothing kept: read into the thread's scratch buffer, and keep only the rest.
            if let Some(message) = ready!(self.poll_read_fresh(cx))? {
                return Poll::Ready(Ok(message));
            }
        }
    }

    /// Reads into the scratch buffer; takes the first frame from it and keeps what follows.
    fn poll_read_fresh(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>, Error>> {
        SCRATCH_BUF.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Not reachable (no read polls another); a buffer of its own if it were.
                let mut own = vec![0; SCRATCH];
                return self.take_fresh(cx, &mut own);
            };
            self.take_fresh(cx, &mut scratch)
        })
    }

    fn take_fresh(
        &mut self,
        cx: &mut Context<'_>,
        scratch: &mut [u8],
    ) -> Poll<Result<Option<Message>, Error>> {
        let n = ready!(Pin::new(&mut self.stream).poll_read(cx, scratch))?;
        let Some(read) = scratch.get(..n).filter(|r| !r.is_empty()) else {
            return Poll::Ready(Err(self.end_of_stream()));
        };
        let (taken, message) = self.take_frame(read)?.unwrap_or((0, None));
        if let Some(rest) = read.get(taken..).filter(|r| !r.is_empty()) {
            self.unread = rest.to_vec();
            self.at = 0;
        }
        Poll::Ready(Ok(message))
    }

    /// Reads the rest of a frame into the connection's own buffer.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.at > 0 {
            self.unread.drain(..self.at);
            self.at = 0;
        }
        // The whole frame if its header is in, else its longest header.
        let needed = match FrameHeader::parse(&mut Cursor::new(&self.unread)) {
            Ok(Some((header, len))) => usize::try_from(len)
                .unwrap_or(usize::MAX)
                .saturating_add(header.len(len)),
            _ => 14,
        };
        let have = self.unread.len();
        let want = needed.saturating_sub(have).max(MIN_READ);
        self.unread.resize(have + want, 0);
        let read = Pin::new(&mut self.stream).poll_read(cx, &mut self.unread[have..]);
        let n = match read {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                self.unread.truncate(have);
                return Poll::Ready(Err(Error::Io(e)));
            }
            Poll::Pending => {
                self.unread.truncate(have);
                return Poll::Pending;
            }
        };
        self.unread.truncate(have + n);
        if n == 0 {
            return Poll::Ready(Err(self.end_of_stream()));
        }
        Poll::Ready(Ok(()))
    }

    /// The stream ended: after a close handshake that is its end, otherwise a lost network.
    fn end_of_stream(&self) -> Error {
        if self.closing {
            Error::ConnectionClosed
        } else {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_util::Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let next = ready!(this.poll_message(cx));
        if next.is_err() {
            // After an error nothing more is read: the connection closes.
            this.ended = true;
            this.unread = Vec::new();
            this.at = 0;
        }
        Poll::Ready(Some(next))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_util::Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.unsent.len() - this.written > WRITE_HIGH {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().queue(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.stream).poll_flush(cx)).map_err(Error::Io))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let key = [1, 2, 3, 4];
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        f
    }

    /// What issue 20 asks of an idle connection: no read or write buffer of its own once a
    /// frame has been read whole and the answer written.
    #[test]
    fn an_idle_socket_keeps_no_buffer() {
        futures_lite::future::block_on(async {
            let mut wire = client_frame(0x81, b"hello");
            wire.extend_from_slice(&client_frame(0x01, b"cut "));
            wire.extend_from_slice(&client_frame(0x80, b"in two"));
            let mut ws = WebSocket::new(futures_lite::io::Cursor::new(wire), Vec::new(), 1024);
            let first = ws.next().await.expect("a message").expect("valid");
            assert_eq!(first, Message::text("hello"));
            assert!(
                ws.unread.capacity() > 0,
                "the frames after the first are kept"
            );
            let second = ws.next().await.expect("a message").expect("valid");
            assert_eq!(second, Message::text("cut in two"));
            assert_eq!(ws.unread.capacity(), 0, "all read: nothing kept");
            assert!(ws.fragments.is_none());
            ws.send(Message::text("answer")).await.expect("written");
            assert_eq!(ws.unsent.capacity(), 0, "all written: nothing kept");
        });
    }

    #[test]
    fn unmasking_keeps_the_key_phase_past_whole_words() {
        let key = [0x11, 0x22, 0x33, 0x44];
        for len in 0..20 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let masked: Vec<u8> = plain
                .iter()
                .zip(key.iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect();
            let mut out = Vec::new();
            unmask_into(&masked, key, &mut out);
            assert_eq!(out, plain, "length {len}");
        }
    }
}

//! A message with a fault rule's wire plan (docs/faults.md, "Wire actions"): written otherwise
//! than as one text frame at once, or the connection ends instead. Every wait and write here
//! is raced against the mailbox's control orders, as the plain writes are: a stalled or
//! throttled receiver still obeys overflow (the slow-reader close), stop and crash.
use super::{close, guarded, interruptible, obey, End, Stuck, Written, Ws};
use crate::faults::wire::{self, Plan};
use crate::mailbox::{Faulted, Inbox};
use crate::peer::{Command, Handler};
use async_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use futures_lite::AsyncWriteExt;
use futures_util::SinkExt;
use std::time::{Duration, Instant};

/// The reason an injected reset is logged with (no close frame carries it).
const RESET: &str = "fault: reset";

/// Carries out `faulted`'s plan in its documented order: stall, reset, close before, the
/// message (its text changed, fragmented, throttled), close after. `Err`: the connection ended.
pub(super) async fn carry_out(
    ws: &mut Ws,
    handler: &mut impl Handler,
    inbox: &Inbox,
    faulted: Faulted,
) -> Result<(), End> {
    let Faulted { msg, plan } = faulted;
    if let Some(stall) = plan.stall {
        // Neither read nor written meanwhile: what is sent to this peer piles up in its
        // mailbox, up to the slow-reader bound.
        let pause = interruptible(inbox, crate::deadline::after(stall)).await;
        if let Written::Interrupted(c) = pause {
            return Err(obey(ws, inbox, c, Stuck::No).await);
        }
    }
    if plan.reset {
        // The connection ends right after this, and its socket's close is then the reset.
        ws.get_ref().reset_on_close();
        return Err(End::Injected(CloseCode::Abnormal, RESET.into()));
    }
    let closing = plan
        .close
        .map(|(code, reason, after)| (CloseCode::from(code), reason, after));
    if let Some((code, reason, false)) = closing {
        close(ws, code, reason.as_str()).await;
        return Err(End::Injected(code, reason.as_str().to_owned()));
    }
    if let Some(msg) = msg {
        let write = match guarded(ws, || handler.handle_info(msg)).await {
            Some(Command::Send(Message::Text(text))) => {
                let text = plan
                    .change_text(text.as_str())
                    .map_or(text, Utf8Bytes::from);
                interruptible(inbox, write(ws, text, &plan)).await
            }
            Some(Command::Send(other)) => {
                let sent = async { ws.send(other).await.map_err(|_| End::Closed) };
                interruptible(inbox, sent).await
            }
            Some(Command::Close(code, why)) => {
                close(ws, code, why).await;
                return Err(End::Server(code, why.to_owned()));
            }
            None => Written::Done(Ok(())),
        };
        match write {
            Written::Done(Ok(())) => {}
            Written::Done(Err(end)) => return Err(end),
            Written::Interrupted(c) => return Err(obey(ws, inbox, c, Stuck::Yes).await),
        }
    }
    if let Some((code, reason, true)) = closing {
        close(ws, code, reason.as_str()).await;
        return Err(End::Injected(code, reason.as_str().to_owned()));
    }
    Ok(())
}

/// The text as `plan.frames` frames (a text frame, then continuations), written at
/// `plan.bytes_per_s` if set.
async fn write(ws: &mut Ws, text: Utf8Bytes, plan: &Plan) -> Result<(), End> {
    let cuts = plan
        .frames
        .map_or_else(Vec::new, |n| wire::cuts(text.as_str(), n));
    let bytes = Bytes::from(text);
    let mut frames = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for end in cuts.iter().copied().chain([bytes.len()]) {
        let opcode = if frames.is_empty() {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        frames.push(Frame::message(
            bytes.slice(start..end),
            opcode,
            end == bytes.len(),
        ));
        start = end;
    }
    let Some(rate) = plan.bytes_per_s else {
        for frame in frames {
            ws.feed(Message::Frame(frame))
                .await
                .map_err(|_| End::Closed)?;
        }
        return ws.flush().await.map_err(|_| End::Closed);
    };
    // Throttled: the frames are encoded here and written to the socket at the rate, under
    // the WebSocket (whose buffer is flushed first, so that nothing is written out of order).
    ws.flush().await.map_err(|_| End::Closed)?;
    let mut encoded = Vec::with_capacity(bytes.len() + 14 * frames.len());
    for frame in frames {
        frame.format(&mut encoded).map_err(|_| End::Closed)?;
    }
    paced(ws, &encoded, rate).await
}

/// Writes `data` in 20 pieces a second (at most 64 KiB each), each once the rate allows it:
/// the last byte leaves `len / rate` seconds after the first.
async fn paced(ws: &mut Ws, data: &[u8], rate: u64) -> Result<(), End> {
    let piece = usize::try_from(rate / 20)
        .unwrap_or(usize::MAX)
        .clamp(1, 64 * 1024);
    let start = Instant::now();
    let mut sent: u64 = 0;
    for chunk in data.chunks(piece) {
        let stream = ws.get_mut();
        stream.write_all(chunk).await.map_err(|_| End::Closed)?;
        stream.flush().await.map_err(|_| End::Closed)?;
        sent += chunk.len() as u64;
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            crate::deadline::after(due - now).await;
        }
    }
    Ok(())
}

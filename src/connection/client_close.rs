//! The answer to a close the client started: the client's code with an empty reason, as the
//! Erlang original's cowboy sends it (`{close, Code, <<>>}`; no code at all is answered with an
//! empty close). The WebSocket (src/websocket.rs) queues no reply of its own to a close; the
//! reply below is written on the socket.
use super::{End, Ws, CLOSE_LINGER};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_lite::{AsyncWriteExt, FutureExt};

/// Answers the client's close and ends the connection as the client's departure.
///
/// Nothing else of ours is in the WebSocket's write buffer here: every write the loop makes is
/// flushed before the loop reads the next frame, so the reply cannot land inside another frame.
pub(super) async fn answer(ws: &mut Ws, received: Option<&CloseFrame>) -> End {
    let reply = reply_frame(received);
    let write = async {
        let stream = ws.get_mut();
        stream.write_all(&reply).await?;
        stream.flush().await
    };
    let written = async { write.await.is_ok() }
        .or(async {
            crate::deadline::after(CLOSE_LINGER).await;
            false
        })
        .await;
    if !written {
        // A client that sends its close but reads nothing: the reply would never arrive.
        ws.get_ref().abort();
    }
    End::ClientClose(received.map(|f| u16::from(f.code)))
}

/// The whole close frame the server sends (unmasked, RFC 6455 §5.5.1): the code alone.
///
/// The code is the one the WebSocket reports, which is already 1002 for a code a client may not
/// send (cowboy answers those 1002 too).
pub(super) fn reply_frame(received: Option<&CloseFrame>) -> Vec<u8> {
    match received {
        None => vec![0x88, 0x00],
        Some(frame) => {
            let [hi, lo] = u16::from(frame.code).to_be_bytes();
            vec![0x88, 0x02, hi, lo]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn the_reply_is_the_code_without_the_reason() {
        let bye = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        assert_eq!(reply_frame(Some(&bye)), [0x88, 0x02, 0x03, 0xe8]);
        let away = CloseFrame {
            code: CloseCode::from(4321),
            reason: "going away".into(),
        };
        assert_eq!(reply_frame(Some(&away)), [0x88, 0x02, 0x10, 0xe1]);
        assert_eq!(reply_frame(None), [0x88, 0x00]);
    }
}

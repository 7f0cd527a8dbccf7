//! Resumable peers of `/socket/:room` (docs/rooms-protocol.md, "Resume"): join with
//! `?resumable=1`, check every frame's `seq`, drop the TCP connection, resume.
use super::{within, Client, TestServer, WAIT};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;

pub struct ResumablePeer {
    /// None between a drop and the resume.
    pub client: Option<Client>,
    pub id: String,
    pub token: String,
    pub window_ms: u64,
    /// The seq of the last frame received (0: none yet).
    pub last_seq: u64,
    pub room: String,
    pub addr: SocketAddr,
    pub headers: Vec<(String, String)>,
}

/// How a resume ended.
pub enum Outcome {
    Resumed(Box<ResumablePeer>),
    /// `resume_failed`'s reason and the close code after it.
    Failed(String, u16),
}

impl ResumablePeer {
    pub async fn join(server: &TestServer, room: &str) -> ResumablePeer {
        Self::join_at(server.addr(), room, &[]).await
    }

    pub async fn join_at(addr: SocketAddr, room: &str, headers: &[(&str, &str)]) -> ResumablePeer {
        let path = format!("/socket/{room}?resumable=1");
        let mut client = Client::connect_with(addr, &path, headers).await;
        let welcome = client.recv_json().await;
        assert_eq!(welcome["event"], "authenticated", "{welcome}");
        assert!(welcome.get("seq").is_none(), "the welcome is not numbered");
        let data = &welcome["data"];
        let token = data["resume"]["token"]
            .as_str()
            .expect("authenticated.data.resume.token")
            .to_owned();
        ResumablePeer {
            client: Some(client),
            id: data["peer_id"].as_str().expect("peer_id").to_owned(),
            token,
            window_ms: data["resume"]["window_ms"].as_u64().expect("window_ms"),
            last_seq: 0,
            room: room.to_owned(),
            addr,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The next message; its `seq` must follow the last one's, and is recorded.
    pub async fn recv_json(&mut self) -> Value {
        let mut m = self.conn().recv_json().await;
        let seq = m["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("a frame to a resumable peer without seq: {m}"));
        assert_eq!(seq, self.last_seq + 1, "seq out of order: {m}");
        self.last_seq = seq;
        if let Some(o) = m.as_object_mut() {
            o.remove("seq");
        }
        m
    }

    pub async fn expect_event(&mut self, event: &str) -> Value {
        let m = self.recv_json().await;
        assert_eq!(m["event"], event, "expected {event}, got {m}");
        m["data"].clone()
    }

    pub async fn send(&mut self, message: Value) {
        self.conn().send(&message.to_string()).await;
    }

    pub fn conn(&mut self) -> &mut Client {
        self.client.as_mut().expect("a connected peer")
    }

    pub async fn ack(&mut self) {
        let seq = self.last_seq;
        self.send(json!({"event": "ack", "data": {"seq": seq}, "to": []}))
            .await;
    }

    /// The TCP connection ends with a reset (SO_LINGER 0): no close frame, no FIN.
    pub fn reset(&mut self) {
        if let Some(client) = self.client.take() {
            socket2::SockRef::from(client.ws.get_ref())
                .set_linger(Some(std::time::Duration::ZERO))
                .expect("SO_LINGER");
        }
    }

    /// Leaves for good: a close 1000 handshake, read to its end (a socket dropped with unread
    /// frames would reset, and the server could lose the close to the reset).
    pub async fn leave(&mut self) {
        if let Some(mut client) = self.client.take() {
            let normal = async_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = client.ws.close(Some(normal)).await;
            let _ = within(WAIT, "the close handshake", async {
                while let Some(Ok(_)) = client.ws.next().await {}
            })
            .await;
        }
    }

    /// The TCP connection ends with a FIN, without a close frame (a vanished network after the
    /// client's last frames were read).
    pub fn hang_up(&mut self) {
        drop(self.client.take());
    }

    /// The connection as it is now, kept open (half-open, as the server sees it), for a
    /// resume from elsewhere.
    pub fn take_connection(&mut self) -> Option<Client> {
        self.client.take()
    }

    /// A new connection that resumes this peer's session from `self.last_seq`.
    pub async fn resume(self) -> Outcome {
        let (id, token, last_seq) = (self.id.clone(), self.token.clone(), self.last_seq);
        self.resume_as(&id, &token, last_seq).await
    }

    /// A resume with whatever the test says.
    pub async fn resume_as(mut self, id: &str, token: &str, last_seq: u64) -> Outcome {
        self.reset();
        let request = json!({
            "event": "resume",
            "data": {"peer_id": id, "token": token, "last_seq": last_seq}
        });
        let (outcome, _) = resume_raw(
            self.addr,
            &self.room,
            &self.headers_ref(),
            &request.to_string(),
        )
        .await;
        match outcome {
            RawOutcome::Resumed(client, data) => {
                assert_eq!(data["peer_id"], self.id, "{data}");
                assert_eq!(data["window_ms"], self.window_ms, "{data}");
                let new_token = data["token"].as_str().expect("a new token").to_owned();
                assert_ne!(new_token, self.token, "the token rotates on every resume");
                Outcome::Resumed(Box::new(ResumablePeer {
                    client: Some(*client),
                    token: new_token,
                    ..self
                }))
            }
            RawOutcome::Failed(reason, code) => Outcome::Failed(reason, code),
        }
    }

    fn headers_ref(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// A resume that must succeed.
    pub async fn resumed(self) -> ResumablePeer {
        match self.resume().await {
            Outcome::Resumed(p) => *p,
            Outcome::Failed(reason, code) => panic!("resume failed: {reason} ({code})"),
        }
    }
}

pub enum RawOutcome {
    /// The connection, and `resumed`'s data.
    Resumed(Box<Client>, Value),
    Failed(String, u16),
}

/// Opens `/socket/<room>?resume=1` and sends `first` as its first frame; also returns how long
/// the answer took after the request was sent.
pub async fn resume_raw(
    addr: SocketAddr,
    room: &str,
    headers: &[(&str, &str)],
    first: &str,
) -> (RawOutcome, std::time::Duration) {
    let path = format!("/socket/{room}?resume=1");
    let mut client = Client::connect_with(addr, &path, headers).await;
    client.send(first).await;
    let sent = std::time::Instant::now();
    let answer = client.recv_json().await;
    let took = sent.elapsed();
    match answer["event"].as_str() {
        Some("resumed") => (
            RawOutcome::Resumed(Box::new(client), answer["data"].clone()),
            took,
        ),
        Some("resume_failed") => {
            let reason = answer["data"]["reason"]
                .as_str()
                .expect("a reason")
                .to_owned();
            let code = client.expect_close().await;
            (RawOutcome::Failed(reason, u16::from(code)), took)
        }
        _ => panic!("expected resumed or resume_failed, got {answer}"),
    }
}

/// Reads what a client still gets until the server closes it; returns the close code.
pub async fn close_code(client: &mut Client) -> u16 {
    within(WAIT, "a close frame", async {
        loop {
            match client.ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
}

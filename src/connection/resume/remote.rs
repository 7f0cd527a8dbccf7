//! A resume that reached this node for a session another node of the cluster holds (a load
//! balancer cannot know where a session lives): the connection is passed through to that node,
//! which resumes it as if the client had come to it (docs/cluster.md, "Resume across nodes").
//! This node only carries frames both ways; the session, its kept frames and its membership stay
//! where they are.
use super::{fail, Failure};
use crate::connection::{close, End, Ws};
use crate::http;
use crate::mailbox::{Control, Inbox};
use crate::rtcserver_app::Shared;
use async_net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::StreamExt;
use futures_util::SinkExt;
use std::time::Duration;

/// How long reaching the other node may take.
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// The request headers the other node needs to authenticate the same user (and to check the
/// page's origin) as this node did.
pub(in crate::connection) struct Credentials(Vec<(String, String)>);

pub(in crate::connection) fn credentials(request: &http::Request) -> Credentials {
    Credentials(
        request
            .headers
            .iter()
            .filter(|(name, _)| matches!(name.as_str(), "cookie" | "authorization" | "origin"))
            .cloned()
            .collect(),
    )
}

/// Opens `/socket/<room>?resume=1` on the node at `node` with the client's credentials, sends
/// it the client's `resume` request, then carries frames both ways until one side ends.
pub(in crate::connection) async fn pipe(
    shared: &Shared,
    mut client: Ws,
    inbox: &Inbox,
    node: &str,
    room: &str,
    credentials: &Credentials,
    first: &str,
) -> End {
    let connect = async { Some(upstream(shared, node, room, credentials).await) };
    let timeout = async {
        crate::deadline::after(CONNECT_WAIT).await;
        None
    };
    let mut up = match futures_lite::future::or(connect, timeout).await {
        Some(Ok(up)) => up,
        Some(Err(e)) => {
            log::warn!("resume: the node at {node} holding the session cannot be reached: {e}");
            return fail(&mut client, Failure::Unknown).await;
        }
        None => {
            log::warn!("resume: the node at {node} holding the session did not answer in time");
            return fail(&mut client, Failure::Unknown).await;
        }
    };
    log::info!("resume in room {room}: passed through to the node at {node}");
    if up.send(Message::text(first)).await.is_err() {
        return fail(&mut client, Failure::Unknown).await;
    }
    carry(&mut client, &mut up, inbox).await
}

async fn upstream(
    shared: &Shared,
    node: &str,
    room: &str,
    credentials: &Credentials,
) -> Result<WebSocketStream<TcpStream>, String> {
    let mut request = format!("ws://{node}/socket/{room}?resume=1")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    for (name, value) in &credentials.0 {
        let name = async_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| e.to_string())?;
        let value = value
            .parse()
            .map_err(|_| "an unreadable header".to_owned())?;
        request.headers_mut().insert(name, value);
    }
    let tcp = TcpStream::connect(node).await.map_err(|e| e.to_string())?;
    let (ws, _) = async_tungstenite::client_async_with_config(request, tcp, Some(shared.ws_config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

enum Step {
    FromClient(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    FromNode(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Control(Control),
}

/// Frames both ways, in order; a close from either side is passed on with its code.
async fn carry(client: &mut Ws, up: &mut WebSocketStream<TcpStream>, inbox: &Inbox) -> End {
    loop {
        let step = {
            let from_client = async { Step::FromClient(client.next().await) };
            let from_node = async { Step::FromNode(up.next().await) };
            let control = async { Step::Control(inbox.control().await) };
            futures_lite::future::or(control, futures_lite::future::or(from_client, from_node))
                .await
        };
        match step {
            Step::FromClient(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => {
                if up.send(m).await.is_err() {
                    close(client, CloseCode::Away, "session node unreachable").await;
                    return End::Server(CloseCode::Away, "session node unreachable".into());
                }
            }
            Step::FromClient(Some(Ok(Message::Close(frame)))) => {
                // The client's close, passed on: a close 1000 ends the session there.
                let _ = up.close(frame.clone()).await;
                return super::super::client_close::answer(client, frame.as_ref()).await;
            }
            Step::FromClient(Some(Ok(_))) => {
                // The pong to a ping is queued: send it now.
                let _ = client.flush().await;
            }
            // The client's network went: the other node sees its connection end the same way.
            Step::FromClient(_) => return End::Closed,
            Step::FromNode(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => {
                if client.send(m).await.is_err() {
                    return End::Closed;
                }
            }
            Step::FromNode(Some(Ok(Message::Close(frame)))) => {
                let (code, reason) = frame.map_or((CloseCode::Normal, String::new()), |f| {
                    (f.code, f.reason.as_str().to_owned())
                });
                let _ = up.flush().await;
                close(client, code, &reason).await;
                return End::Server(code, reason);
            }
            Step::FromNode(Some(Ok(_))) => {
                let _ = up.flush().await;
            }
            Step::FromNode(_) => {
                close(client, CloseCode::Away, "session node unreachable").await;
                return End::Server(CloseCode::Away, "session node unreachable".into());
            }
            Step::Control(control) => {
                // This node stops (or its process was crashed): the client goes, and the other
                // node keeps the session for a resume, as for a dropped connection.
                let _ = up
                    .close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "".into(),
                    }))
                    .await;
                let (code, why) = match control {
                    Control::Stop(supervisors::StopReason::Shutdown) => {
                        (CloseCode::Away, "server shutting down")
                    }
                    _ => (CloseCode::Error, "internal error"),
                };
                close(client, code, why).await;
                if control == Control::Crash {
                    panic!("injected crash of a resume passed through");
                }
                return End::Server(code, why.to_owned());
            }
        }
    }
}

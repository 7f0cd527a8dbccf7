//! HTTPS and WSS end to end, with a certificate the test makes for itself.
mod common;

use async_net::TcpStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use futures_rustls::client::TlsStream;
use futures_rustls::rustls;
use futures_rustls::TlsConnector;
use rtcserver::tls::TlsFiles;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A self-signed certificate for 127.0.0.1 and localhost, in a fresh folder.
struct Certificate {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Certificate {
    fn new(tag: &str) -> Certificate {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a certificate");
        let dir = std::env::temp_dir().join(format!("rtcserver-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("cert.pem"), key.cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.signing_key.serialize_pem()).expect("write key");
        Certificate {
            der: key.cert.der().clone(),
            dir,
        }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
        }
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    async fn tls(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        within(
            WAIT,
            "the TLS handshake",
            self.connector().connect(name, tcp),
        )
        .await
        .expect("TLS handshake with our own certificate")
    }

    async fn wss(&self, addr: SocketAddr, path: &str) -> WebSocketStream<TlsStream<TcpStream>> {
        let tls = self.tls(addr).await;
        let (ws, _) = within(
            WAIT,
            "the WebSocket handshake",
            async_tungstenite::client_async(format!("wss://127.0.0.1:{}{path}", addr.port()), tls),
        )
        .await
        .expect("WebSocket over TLS");
        ws
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn recv_text(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> String {
    match within(WAIT, "a message", ws.next()).await {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn the_book_protocol_and_named_rooms_work_over_wss_and_the_page_over_https() {
    run(async {
        let cert = Certificate::new("both");
        let server = server_with(|c| c.tls = Some(cert.files()));
        let tls_addr = server.handle.tls_addr().expect("a TLS port");
        assert_ne!(tls_addr, server.addr(), "TLS is beside the plain port");

        let mut https = cert.tls(tls_addr).await;
        https
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut page = Vec::new();
        within(WAIT, "the page", https.read_to_end(&mut page))
            .await
            .unwrap();
        let page = String::from_utf8_lossy(&page);
        assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
        assert!(page.contains("<html"), "{page}");

        // A book call: one peer over WSS, the other over plain WS, same rooms.
        let mut a = cert.wss(tls_addr, "/").await;
        a.send(Message::text(r#"{"type":"GETROOM","value":""}"#))
            .await
            .unwrap();
        let reply = recv_text(&mut a).await;
        let room: u32 = reply
            .strip_prefix(r#"{"type":"GETROOM","value":"#)
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"));
        let mut b = server.client().await;
        b.send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
            .await;
        b.send(r#"{"type":"offer","sdp":"v=0"}"#).await;
        assert_eq!(recv_text(&mut a).await, r#"{"type":"offer","sdp":"v=0"}"#);
        a.send(Message::text(r#"{"type":"answer"}"#)).await.unwrap();
        assert_eq!(b.recv_text().await, r#"{"type":"answer"}"#);

        let mut n = cert.wss(tls_addr, "/socket/secure-room").await;
        let welcome = recv_text(&mut n).await;
        assert!(
            welcome.starts_with(r#"{"event":"authenticated""#),
            "{welcome}"
        );

        a.close(None).await.unwrap();
        n.close(None).await.unwrap();
        drop((a, n));
        b.close().await;
        server.assert_clean().await;
    });
}

#[test]
fn tls_only_has_no_plain_port_and_bad_files_stop_the_start() {
    run(async {
        let cert = Certificate::new("only");
        let server = server_with(|c| {
            c.tls = Some(cert.files());
            c.tls_only = true;
        });
        assert_eq!(server.addr(), server.handle.tls_addr().unwrap());
        let mut ws = cert.wss(server.addr(), "/").await;
        ws.send(Message::text(r#"{"type":"GETROOM"}"#))
            .await
            .unwrap();
        assert!(recv_text(&mut ws)
            .await
            .starts_with(r#"{"type":"GETROOM","value":"#));
        // Plain HTTP on the TLS port is not a TLS handshake: dropped, never served.
        let answer = raw_http(server.addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!answer.contains("200 OK"), "{answer}");
        ws.close(None).await.unwrap();
        drop(ws);
        server.assert_clean().await;

        let mut config = rtcserver::Config::ephemeral();
        config.tls = Some(TlsFiles {
            cert: cert.dir.join("missing.pem"),
            key: cert.dir.join("key.pem"),
        });
        let error = rtcserver::start(config)
            .err()
            .expect("no start without a certificate");
        assert!(error.to_string().contains("missing.pem"), "{error}");
    });
}

/// README "Named rooms: `/socket/<room>`" (a target that is not a path is 400), on the TLS port
/// (issue 14, item 7): an answer, not a crash of the connection's process.
#[test]
fn a_target_that_is_not_a_path_is_400_over_https() {
    run(async {
        let cert = Certificate::new("odd-target");
        let server = server_with(|c| c.tls = Some(cert.files()));
        let tls_addr = server.handle.tls_addr().expect("a TLS port");
        for line in ["GET \u{e9} HTTP/1.1", "GET ?x HTTP/1.1", "GET #x HTTP/1.1"] {
            let mut https = cert.tls(tls_addr).await;
            https
                .write_all(format!("{line}\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = Vec::new();
            within(WAIT, "the answer", https.read_to_end(&mut answer))
                .await
                .unwrap();
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 400 "), "{line}: {answer:.80}");
        }
        server.assert_clean().await;
    });
}

/// docs/flags.md, `--allowed-origins`, over TLS: the same 403 before the upgrade.
#[test]
fn an_unlisted_origin_gets_403_over_wss_too() {
    run(async {
        let cert = Certificate::new("origins");
        let server = server_with(|c| {
            c.tls = Some(cert.files());
            c.allowed_origins = "https://a.example".parse().expect("origins");
        });
        let tls_addr = server.handle.tls_addr().expect("a TLS port");
        for (path, origin, status) in [
            ("/", "https://b.example", "403"),
            ("/socket/lobby", "https://b.example", "403"),
            ("/", "https://a.example", "101"),
        ] {
            let mut wss = cert.tls(tls_addr).await;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE_HEADERS}Origin: {origin}\r\n\r\n"
            );
            wss.write_all(request.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                within(WAIT, "the answer", wss.read_exact(&mut byte))
                    .await
                    .unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status} ")),
                "{path} from {origin}: {head}"
            );
        }
        server.assert_clean().await;
    });
}

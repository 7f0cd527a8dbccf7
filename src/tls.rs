//! TLS (HTTPS and WSS) with rustls: the certificate files, and the one stream type the
//! connection code reads and writes whether or not TLS is under it.
use crate::socket::Socket;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::rustls;
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Where the certificate chain and its key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub enum TlsError {
    Cert(PathBuf, String),
    Key(PathBuf, String),
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Cert(p, e) => write!(f, "certificate {}: {e}", p.display()),
            TlsError::Key(p, e) => write!(f, "private key {}: {e}", p.display()),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Reads the PEM files and makes the acceptor (HTTP/1.1 only: WebSockets upgrade from it).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key(files.key.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Cert(path.to_owned(), e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(path.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            path.to_owned(),
            "no certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// A client connection, plain or TLS.
pub enum Stream {
    Plain(Socket),
    /// Boxed: a TLS session is large, and most connections are plain.
    Tls(Box<TlsStream<Socket>>),
}

impl Stream {
    /// Resets the connection (see [`Socket::abort`]).
    pub fn abort(&self) {
        match self {
            Stream::Plain(s) => s.abort(),
            Stream::Tls(s) => s.get_ref().0.abort(),
        }
    }

    /// The socket's close will be a reset (see [`Socket::reset_on_close`]).
    pub fn reset_on_close(&self) {
        match self {
            Stream::Plain(s) => s.reset_on_close(),
            Stream::Tls(s) => s.get_ref().0.reset_on_close(),
        }
    }

    /// Stops sending: TLS's close_notify first, then a FIN (see [`Socket::shutdown_write`]).
    pub async fn shutdown_write(&mut self) {
        if let Stream::Tls(tls) = self {
            let _ = futures_lite::AsyncWriteExt::close(tls.as_mut()).await;
        }
        match self {
            Stream::Plain(s) => s.shutdown_write(),
            Stream::Tls(s) => s.get_ref().0.shutdown_write(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

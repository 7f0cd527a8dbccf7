//! The admin API's HTTP/1.1: one request per connection, read within a deadline and bounded in
//! size, answered with `Connection: close`. Small on purpose: the admin API is a tool beside the
//! server, not a web framework.
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::fmt;
use std::time::Duration;

/// Longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request body accepted: a `POST /faults/populate` of a hundred rules fits.
pub const MAX_BODY: usize = 64 * 1024;
/// A body for `POST /faults/replay`: a saved fault log (about 200 bytes a record).
pub const MAX_REPLAY_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 48;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    /// After `?`, undecoded; empty when there is none.
    pub query: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_value(&self.query, name)
    }
}

/// The value of `name` in `application/x-www-form-urlencoded` text.
pub fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name).then(|| percent_decode(v))?
    })
}

/// `None` when the escapes do not decode to UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(crate::http::hex_byte(bytes.get(i + 1..i + 3)?)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[derive(Debug)]
pub enum ReadError {
    Timeout,
    Closed,
    HeadTooLarge,
    /// Over the path's limit, which it names.
    BodyTooLarge(usize),
    Malformed(String),
    /// `Transfer-Encoding` (chunked bodies are not needed by any client of this API).
    LengthRequired,
    Io(std::io::Error),
}

impl ReadError {
    /// The status to answer with; `None` when there is nobody to answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Timeout => Some(408),
            ReadError::HeadTooLarge => Some(431),
            ReadError::BodyTooLarge(_) => Some(413),
            ReadError::Malformed(_) => Some(400),
            ReadError::LengthRequired => Some(411),
            ReadError::Closed | ReadError::Io(_) => None,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("no complete request within the time allowed"),
            ReadError::Closed => f.write_str("closed before a request"),
            ReadError::HeadTooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            ReadError::BodyTooLarge(max) => write!(f, "request body over {max} bytes"),
            ReadError::Malformed(e) => write!(f, "malformed request: {e}"),
            ReadError::LengthRequired => {
                f.write_str("send the body with Content-Length, not Transfer-Encoding")
            }
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// The head, once complete: the request (without its body) and the head's length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(ReadError::Malformed(format!(
            "the request target {:?} does not start with /",
            crate::http::Shown(target)
        )));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = req
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| ReadError::Malformed(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_owned(), value.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, ReadError>>()?;
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: Vec::new(),
        },
        len,
    )))
}

/// Reads one request, head and body, within `timeout`.
pub async fn read<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Request, ReadError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let (mut request, head_len) = loop {
            let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(parsed) = parse_head(&buf)? {
                if parsed.1 > MAX_HEAD {
                    return Err(ReadError::HeadTooLarge);
                }
                break parsed;
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
        };
        if request.header("transfer-encoding").is_some() {
            return Err(ReadError::LengthRequired);
        }
        let length = match request.header("content-length") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ReadError::Malformed(format!("Content-Length {v:?}")))?,
        };
        let max = if request.path == "/faults/replay" {
            MAX_REPLAY_BODY
        } else {
            MAX_BODY
        };
        if length > max {
            return Err(ReadError::BodyTooLarge(max));
        }
        let mut body = buf.split_off(head_len);
        while body.len() < length {
            let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Malformed(
                    "body shorter than Content-Length".into(),
                ));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        request.body = body;
        Ok(request)
    };
    futures_lite::future::or(read, async {
        async_io::Timer::after(timeout).await;
        Err(ReadError::Timeout)
    })
    .await
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    head_only: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
            head_only: false,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Self::new(status, "application/json", body)
    }

    /// `{"error": message, "status": status}`: every refusal of the admin API looks like this.
    pub fn error(status: u16, message: impl fmt::Display) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": message.to_string(), "status": status }),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// For HEAD: the same head, no body.
    pub fn head_only(mut self) -> Self {
        self.head_only = true;
        self
    }

    pub fn head(&self) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    pub async fn write<S: futures_lite::AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> std::io::Result<()> {
        stream.write_all(self.head().as_bytes()).await?;
        if !self.head_only {
            stream.write_all(&self.body).await?;
        }
        stream.flush().await
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Request, ReadError> {
        futures_lite::future::block_on(read(
            &mut futures_lite::io::Cursor::new(text.as_bytes().to_vec()),
            Duration::from_secs(1),
        ))
    }

    #[test]
    fn a_post_with_a_body_and_a_query() {
        let r = read_all(
            "POST /crash?target=room%3A12&x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/crash"));
        assert_eq!(r.query_param("target").as_deref(), Some("room:12"));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("y"), None);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("HOST"), Some("a"));
    }

    #[test]
    fn limits_and_malformed_requests_have_their_status() {
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let cases = [
            (big, 413),
            ("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n".into(), 400),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                411,
            ),
            ("GET / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc".into(), 400),
            ("NOT HTTP\r\n\r\n".into(), 400),
            ("GET ?x HTTP/1.1\r\n\r\n".into(), 400),
            ("GET * HTTP/1.1\r\n\r\n".into(), 400),
            (
                format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD)),
                431,
            ),
        ];
        for (text, status) in cases {
            let err = read_all(&text).unwrap_err();
            assert_eq!(err.status(), Some(status), "{err} for {text:.60}");
        }
        assert!(matches!(read_all(""), Err(ReadError::Closed)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%-1"), None);
    }

    #[test]
    fn errors_are_json_with_their_status() {
        let r = Response::error(404, "no such room");
        assert!(r.head().starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"error\":\"no such room\",\"status\":404}\n"
        );
    }
}

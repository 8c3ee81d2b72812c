//! Just enough HTTP/1.1 for the fake: requests with a `Content-Length`
//! body, kept-alive connections, and the ways a real server fails: an
//! answer that never comes, and a connection reset (TCP RST) instead of an
//! answer.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Json {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Keep the connection open and silent until the client gives up.
    Hang,
    /// Reset the connection without answering.
    Reset,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::Json {
            status: 200,
            body: body.into(),
            retry_after: None,
        }
    }

    pub fn error(status: u16, code: i64, msg: &str) -> Reply {
        Reply::Json {
            status,
            body: serde_json::json!({"code": code, "msg": msg}).to_string(),
            retry_after: None,
        }
    }
}

/// Serves one connection until it closes, answering with `handle`.
pub async fn serve(stream: TcpStream, stop: CancellationToken, handle: impl Fn(Request) -> Reply) {
    let mut stream = BufReader::new(stream);
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            request = read_request(&mut stream) => request,
        };
        let Some(request) = request else { return };
        match handle(request) {
            Reply::Json {
                status,
                body,
                retry_after,
            } => {
                let extra = retry_after
                    .map(|secs| format!("Retry-After: {secs}\r\n"))
                    .unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
                    reason(status),
                    body.len()
                );
                let stream = stream.get_mut();
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
            Reply::Hang => {
                // Until the client closes its side, or the fake stops.
                let mut sink = [0u8; 1024];
                let deadline = tokio::time::sleep(Duration::from_secs(120));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = &mut deadline => return,
                        read = stream.read(&mut sink) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        },
                    }
                }
            }
            Reply::Reset => {
                let _ = stream.get_ref().set_zero_linger();
                return;
            }
        }
    }
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

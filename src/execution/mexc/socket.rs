//! The websocket of MEXC's user data stream: connecting with a
//! `listenKey`, subscribing to channels, MEXC's own `PING`, and the frames
//! that arrive, decoded ([`super::push`]). Websocket pings are answered by
//! the websocket library as frames are read.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::push::{FrameError, Push, decode};
use super::transport::tls_config;

/// Why the socket failed or closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user data stream: {0}")]
pub struct SocketError(pub String);

/// What arrived on the socket.
#[derive(Debug)]
pub enum Arrived {
    /// A binary frame, decoded or not.
    Push(Box<Result<Push, FrameError>>),
    /// A text answer (to a subscription or a `PING`).
    Answer(Value),
    /// Anything else the server sent (a websocket ping or pong).
    Other,
}

/// One connection of the user data stream.
pub struct PushSocket {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl std::fmt::Debug for PushSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushSocket")
    }
}

impl PushSocket {
    /// Connects to `ws_url?listenKey=key` (TLS for `wss://`, with the same
    /// roots as the REST client), within `timeout`.
    pub async fn connect(ws_url: &str, key: &str, timeout: Duration) -> Result<Self, SocketError> {
        let mut url = url::Url::parse(ws_url)
            .map_err(|e| SocketError(format!("MEXC_WS_URL {ws_url:?}: {e}")))?;
        url.query_pairs_mut().append_pair("listenKey", key);
        let tls = tls_config().map_err(|e| SocketError(e.to_string()))?;
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(Connector::Rustls(Arc::new(tls))),
        );
        let (socket, _) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| SocketError(format!("no connection within {timeout:?}")))?
            .map_err(|e| SocketError(format!("connecting: {e}")))?;
        Ok(PushSocket { socket })
    }

    /// Asks for `channels`; the answer arrives as an [`Arrived::Answer`].
    pub async fn subscribe(&mut self, channels: &[&str]) -> Result<(), SocketError> {
        self.send_json(json!({"method": "SUBSCRIPTION", "params": channels}))
            .await
    }

    /// MEXC's keep-alive request; answered with `PONG`.
    pub async fn ping(&mut self) -> Result<(), SocketError> {
        self.send_json(json!({"method": "PING"})).await
    }

    async fn send_json(&mut self, request: Value) -> Result<(), SocketError> {
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| SocketError(format!("sending: {e}")))
    }

    /// The next thing to arrive; `Err` once the connection is closed or
    /// broken.
    pub async fn next(&mut self) -> Result<Arrived, SocketError> {
        match self.socket.next().await {
            None => Err(SocketError("closed".into())),
            Some(Err(e)) => Err(SocketError(format!("reading: {e}"))),
            Some(Ok(Message::Binary(frame))) => Ok(Arrived::Push(Box::new(decode(&frame)))),
            Some(Ok(Message::Text(text))) => Ok(Arrived::Answer(
                serde_json::from_str(&text).unwrap_or(Value::String(text.to_string())),
            )),
            Some(Ok(Message::Close(frame))) => Err(SocketError(format!(
                "closed by MEXC{}",
                frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
            ))),
            Some(Ok(_)) => Ok(Arrived::Other),
        }
    }

    /// Closes the connection politely (bounded: a dead peer does not hold
    /// it up).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.close(None)).await;
    }
}

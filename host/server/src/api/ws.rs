//! `GET /api/v1/ws`: live pushes of new messages. The server pings every
//! heartbeat interval and closes a connection that stays silent for three;
//! a connection whose queue overflows is closed with code 4008 and the
//! client resyncs with `GET …/messages?after=SEQ`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::auth::Auth;
use super::AppState;

/// Close code for "you fell behind; resync by seq".
pub const CLOSE_LAGGING: u16 = 4008;

/// Clients only send pongs and closes; frames this large are refused.
const MAX_INCOMING: usize = 4 << 10;

pub async fn upgrade(State(state): State<AppState>, auth: Auth, ws: WebSocketUpgrade) -> Response {
    // Small buffers keep an idle connection cheap; they grow while a large
    // frame passes through. The defaults (128 KiB each way) would make
    // every idle connection cost a quarter of a megabyte.
    ws.read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| session(state, auth.user.id, socket))
}

async fn session(state: AppState, user: String, socket: WebSocket) {
    let hub = state.host.messaging.hub().clone();
    let mut sub = hub.subscribe(&user);
    let (mut sink, mut stream) = socket.split();
    let heartbeat = state.config.heartbeat;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut shutdown = state.shutdown.clone();
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            frame = sub.rx.recv() => match frame {
                Some(frame) => {
                    if sink.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        break None;
                    }
                }
                None => break Some(if sub.lagged.load(Ordering::Relaxed) {
                    (CLOSE_LAGGING, "too far behind; resync by seq")
                } else {
                    (1011, "server closed the stream")
                }),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    break Some((1001, "no heartbeat"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            },
            _ = shutdown.changed() => break Some((1001, "server shutting down")),
        }
    };
    hub.unsubscribe(&user, sub.id);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

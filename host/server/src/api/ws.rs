//! `GET /api/v1/ws`: live pushes of new messages, and sending messages
//! without a request per message.
//!
//! The server pushes `{"type":"message","message":…}`; it pings every
//! heartbeat interval and closes a connection that stays silent for three;
//! a connection whose queue overflows is closed with code 4008 and the
//! client resyncs with `GET …/messages?after=SEQ`.
//!
//! A client sends `{"type":"send","conversation_id","client_id","text"}`
//! and gets `{"type":"sent","client_id","created","message"}` once the
//! message is durable (instead of the message's push, which goes to every
//! other session of the conversation's members, and at its place among the
//! pushes: the hub gives the session its turn there), or `{"type":"error","client_id","status","error"}`
//! with the same status and error the HTTP route would answer (and
//! `retry_after_secs` where the route sends `Retry-After`). Sends are
//! stored in the order they arrive and acknowledged in that order; a client
//! may have up to [`MAX_IN_FLIGHT`] unacknowledged (past that the server
//! stops reading until acknowledgements go out). A send repeated with its
//! client id is stored once, as over HTTP, so a client that lost its
//! connection before an acknowledgement sends again. The session is checked
//! for every send and every heartbeat, and a logout or password change in
//! this process, or in another on the bus, closes the session's connections
//! at once: after a logout,
//! a password change or a revocation the connection is closed with code
//! 4001. A user holds at most
//! `max-live-connections-per-user` sessions in this process: past that the
//! handshake gets `429` (and one that raced past the check, code 1008). A
//! connection that has [`MAX_REFUSED`] frames refused at once (over the
//! send limit, for a conversation it is not in, or no send at all) within
//! [`REFUSED_WINDOW`] is closed with code 1008: a client that heeds
//! `retry_after_secs` never comes near it, one that floods gets no more
//! answers to ignore.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Auth;
use super::error::ApiError;
use super::AppState;
use superapp_services::identity::{IdentityError, User};
use superapp_services::messaging::{
    Hub, Message as ChatMessage, MessagingError, MAX_CLIENT_ID_BYTES,
};

/// Close code for "you fell behind; resync by seq".
pub const CLOSE_LAGGING: u16 = 4008;

/// Close code for "the session ended (logout, revocation, expiry)".
pub const CLOSE_SESSION_ENDED: u16 = 4001;

/// Close code for "this user holds too many live connections" (a handshake
/// that raced past the check; the rest get `429` before upgrading).
pub const CLOSE_TOO_MANY: u16 = 1008;

/// Frames refused at once (throttled, refused as a send, or malformed)
/// within [`REFUSED_WINDOW`] before the connection is closed with 1008.
pub const MAX_REFUSED: usize = 200;

/// The window [`MAX_REFUSED`] counts in.
pub const REFUSED_WINDOW: Duration = Duration::from_secs(10);

/// Refusals of one connection in the current window.
struct Refusals {
    since: Instant,
    count: usize,
}

impl Refusals {
    fn new() -> Refusals {
        Refusals {
            since: Instant::now(),
            count: 0,
        }
    }

    /// Count one; whether the connection has now had too many.
    fn too_many(&mut self) -> bool {
        if self.since.elapsed() > REFUSED_WINDOW {
            *self = Refusals::new();
        }
        self.count += 1;
        self.count >= MAX_REFUSED
    }
}

/// Sends one connection may have stored but not yet acknowledged.
pub const MAX_IN_FLIGHT: usize = 64;

/// Bytes of frames buffered before they are written without a flush.
const WRITE_BATCH: usize = 16 << 10;

/// Frames of one kind sent in one write: what is ready at once (one flush
/// settles many sends; one message may be pushed while others queue).
const BATCH_FRAMES: usize = 64;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    from_proxy: Option<axum::Extension<crate::proxies::FromTrustedProxy>>,
    auth: Auth,
    ws: WebSocketUpgrade,
) -> Response {
    let from_proxy = from_proxy.is_some_and(|p| p.0 .0);
    if super::auth::cross_site_cookie(&headers, from_proxy) {
        tracing::warn!(
            origin = ?headers.get(axum::http::header::ORIGIN),
            host = ?headers.get(axum::http::header::HOST),
            forwarded_host = ?headers.get("x-forwarded-host"),
            "a cookie-signed WebSocket handshake from another origin was refused (behind a proxy, pass the public Host with its port, or X-Forwarded-Host from a proxy in trusted-proxies)"
        );
        return ApiError::cross_site().into_response();
    }
    let hub = state.host.messaging.hub();
    if hub.sessions_of(&auth.user.id) >= state.config.max_live_per_user {
        return ApiError::too_many_live(state.config.max_live_per_user).into_response();
    }
    // Small buffers keep an idle connection cheap; they grow while a large
    // frame passes through. The defaults (128 KiB each way) would make
    // every idle connection cost a quarter of a megabyte. Frames are
    // written when the session flushes (after each batch of what is
    // ready) or once this much is waiting. A frame may be as large as a
    // request body.
    let max_incoming = state.config.max_body_bytes;
    ws.read_buffer_size(4 << 10)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(max_incoming)
        .max_frame_size(max_incoming)
        .on_upgrade(move |socket| session(state, auth, socket))
}

/// How a session ends after reading failed: a frame over the limit is
/// refused with 1009 (message too big), which tells the client not to send
/// it again; a frame that breaks the protocol (unmasked, reserved bits or
/// opcodes, a bad fragment) with 1002, a text frame that is not UTF-8 with
/// 1007; anything else means the connection is gone.
fn closing_for(error: axum::Error, limit: usize) -> Option<(u16, &'static str)> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            tracing::debug!(limit, "a WebSocket frame over the limit; closing with 1009");
            Some((1009, "frame too large: at most max-body-bytes"))
        }
        Some(tungstenite::Error::Protocol(e)) => {
            tracing::debug!(error = %e, "a WebSocket protocol violation; closing with 1002");
            Some((1002, "protocol error"))
        }
        Some(tungstenite::Error::Utf8(_)) => Some((1007, "text frames must be UTF-8")),
        _ => None,
    }
}

/// What a client may send (pongs and closes aside).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Incoming {
    Send {
        conversation_id: String,
        client_id: String,
        text: String,
    },
}

/// A send's acknowledgement.
#[derive(Serialize)]
struct Sent<'a> {
    r#type: &'static str,
    client_id: &'a str,
    created: bool,
    message: &'a ChatMessage,
}

/// The frame that answers one send, once it is ready to go out: `Ok` the
/// acknowledgement of a stored message, `Err` an error.
type Ack = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

fn answered(frame: String) -> Ack {
    Box::pin(std::future::ready(Err(frame)))
}

fn error_frame(client_id: Option<&str>, e: ApiError) -> String {
    // One the send could not have carried is not echoed (the error says
    // what is wrong with it): a frame of a megabyte's client_id is not
    // answered with another.
    let client_id = client_id.filter(|c| c.len() <= MAX_CLIENT_ID_BYTES);
    let mut frame = json!({
        "type": "error",
        "client_id": client_id,
        "status": e.status.as_u16(),
        "error": { "code": e.code, "message": e.message },
    });
    // What the route's `Retry-After` header would say.
    if let Some(secs) = e.retry_after {
        frame["retry_after_secs"] = secs.into();
    }
    frame.to_string()
}

/// The user behind `token` now, or `None` when the session has ended.
/// A store that cannot answer is not an ended session.
fn still_signed_in(state: &AppState, token: &str) -> Result<Option<User>, ApiError> {
    match state.host.identity.authenticate(token) {
        Ok(user) => Ok(Some(user)),
        Err(IdentityError::Unauthenticated(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What became of one incoming frame.
enum Received {
    /// Taken: its acknowledgement, to go out in order; `true` when this
    /// send stored the message, whose acknowledgement then waits for the
    /// session's turn ([`Hub::is_ack_turn`]).
    Taken(Ack, bool),
    /// Refused at once (over the send limit, not the sender's to make, or
    /// not a send): the error frame.
    Refused(Ack),
    /// The session has ended.
    Ended,
}

/// Store one incoming text frame's send and return its acknowledgement.
async fn receive(state: &AppState, token: &str, origin: u64, text: &str) -> Received {
    let (conversation_id, client_id, text) = match serde_json::from_str::<Incoming>(text) {
        Ok(Incoming::Send {
            conversation_id,
            client_id,
            text,
        }) => (conversation_id, client_id, text),
        Err(e) => {
            let frame = error_frame(None, ApiError::bad_request(format!("bad frame: {e}")));
            return Received::Refused(answered(frame));
        }
    };
    let me = match still_signed_in(state, token) {
        Ok(Some(me)) => me,
        Ok(None) => return Received::Ended,
        Err(e) => return Received::Taken(answered(error_frame(Some(&client_id), e)), false),
    };
    let staged = state
        .host
        .messaging
        .stage(&me, &conversation_id, &client_id, &text, Some(origin))
        .await;
    // Refused before anything was stored: the sender's doing (a store
    // that fails is not, and is answered as taken).
    let staged = match staged {
        Err(MessagingError::Store(e)) => Err(MessagingError::Store(e)),
        Err(e) => {
            let frame = error_frame(Some(&client_id), e.into());
            return Received::Refused(answered(frame));
        }
        ok => ok,
    };
    let created = staged.as_ref().is_ok_and(|s| s.created());
    let answer = Box::pin(async move {
        match async { staged?.settle().await }.await {
            Ok((message, created)) => Ok(serde_json::to_string(&Sent {
                r#type: "sent",
                client_id: &client_id,
                created,
                message: &message,
            })
            .expect("frames serialize")),
            Err(e) => Err(error_frame(Some(&client_id), e.into())),
        }
    });
    Received::Taken(answer, created)
}

/// A session's answers still to go out, in the order of their sends (the
/// queue allocates at the first send, so a session that only listens
/// carries none). The acknowledgement of a message its send stored goes
/// out at the session's turn in its stream ([`Hub::is_ack_turn`], counted
/// in `turns`), which comes where the others are pushed that message: so
/// acknowledgements and pushed messages reach the client in seq order.
#[derive(Default)]
struct Acks {
    queue: VecDeque<Pending>,
    turns: usize,
}

struct Pending {
    answer: Ack,
    /// A stored message's acknowledgement: goes at its turn.
    waits_turn: bool,
    /// The answer, once its future gave it (kept here, so that a
    /// `next` dropped by `select!` loses nothing).
    ready: Option<Result<String, String>>,
}

impl Acks {
    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push_back(&mut self, answer: Ack, waits_turn: bool) {
        self.queue.push_back(Pending {
            answer,
            waits_turn,
            ready: None,
        });
    }

    /// The next answer, once it is ready and, for a stored message's
    /// acknowledgement, its turn has come.
    async fn next(&mut self) -> Option<String> {
        let head = self.queue.front_mut()?;
        if head.ready.is_none() {
            head.ready = Some((&mut head.answer).await);
        }
        if head.waits_turn && matches!(head.ready, Some(Ok(_))) {
            if self.turns == 0 {
                // Durable, and its turn is on the way to this session.
                return std::future::pending().await;
            }
            self.turns -= 1;
        }
        match self.queue.pop_front()?.ready? {
            Ok(frame) | Err(frame) => Some(frame),
        }
    }

    /// A turn came: the answers up to the one it is for (those before it
    /// are durable by then, or about to be, as is that one).
    async fn take_turn(&mut self, out: &mut Vec<Message>) {
        self.turns += 1;
        while self.turns > 0 {
            if self.queue.is_empty() {
                self.turns = 0;
                break;
            }
            if let Some(frame) = self.next().await {
                out.push(Message::Text(frame.into()));
            }
        }
    }

    /// The next answer whether or not its turn came (the connection is
    /// closing).
    async fn next_any(&mut self) -> Option<String> {
        let head = self.queue.pop_front()?;
        let ready = match head.ready {
            Some(ready) => ready,
            None => head.answer.await,
        };
        match ready {
            Ok(frame) | Err(frame) => Some(frame),
        }
    }
}

/// Write `frames` with one flush.
async fn send_all(
    sink: &mut SplitSink<WebSocket, Message>,
    frames: impl Iterator<Item = Message>,
) -> Result<(), axum::Error> {
    for frame in frames {
        sink.feed(frame).await?;
    }
    sink.flush().await
}

async fn session(state: AppState, auth: Auth, socket: WebSocket) {
    let (user, token) = (auth.user.id, auth.token);
    let hub = state.host.messaging.hub().clone();
    let (mut sink, mut stream) = socket.split();
    // Watching for the session's end from before it registers, and checked
    // once after: a logout during the handshake is not missed.
    let mut session_end = state.host.identity.watch_session(&token, &user);
    // Checked again where the session registers: handshakes that raced
    // past the check above are closed here.
    let Some(mut sub) = hub.subscribe_within(&user, state.config.max_live_per_user) else {
        let frame = CloseFrame {
            code: CLOSE_TOO_MANY,
            reason: "too many live connections for this user".into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        return;
    };
    let heartbeat = state.config.heartbeat;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut shutdown = state.shutdown.clone();
    let mut last_heard = Instant::now();
    let mut acks = Acks::default();
    let mut refusals = Refusals::new();
    let flooding = (1008, "too many refused frames; heed retry_after_secs");
    let ended = (CLOSE_SESSION_ENDED, "the session ended; sign in again");
    let mut closed_by_client = false;
    let close = if matches!(still_signed_in(&state, &token), Ok(None)) {
        Some(ended)
    } else {
        loop {
            tokio::select! {
                // A logout of this session here closes it now, not at the
                // next heartbeat.
                _ = session_end.ended() => {
                    if let Ok(None) = still_signed_in(&state, &token) {
                        break Some(ended);
                    }
                },
                frame = sub.rx.recv() => match frame {
                    Some(frame) => {
                        // Nothing pushed after a logout that came first, even
                        // when both were ready at once; and while the bus is
                        // down, which would carry the news of a logout in
                        // another process, nothing pushed unchecked.
                        let unheard = !hub.hears_ended_sessions();
                        if (session_end.noticed() || unheard) && matches!(still_signed_in(&state, &token), Ok(None)) {
                            break Some(ended);
                        }
                        let mut batch = vec![frame];
                        while batch.len() < BATCH_FRAMES {
                            match sub.rx.try_recv() {
                                Ok(frame) => batch.push(frame),
                                Err(_) => break,
                            }
                        }
                        let mut frames = Vec::with_capacity(batch.len());
                        for frame in &batch {
                            if Hub::is_ack_turn(frame) {
                                acks.take_turn(&mut frames).await;
                            } else {
                                frames.push(Message::Text(frame.as_ref().into()));
                            }
                        }
                        if send_all(&mut sink, frames.into_iter()).await.is_err() {
                            break None;
                        }
                    }
                    None => break Some(if sub.lagged.load(Ordering::Relaxed) {
                        (CLOSE_LAGGING, "too far behind; resync by seq")
                    } else {
                        (1011, "server closed the stream")
                    }),
                },
                Some(ack) = acks.next(), if !acks.is_empty() => {
                    let mut batch = vec![ack];
                    while batch.len() < BATCH_FRAMES {
                        // Polled without a waker of its own: the loop polls
                        // `acks` again, with one, before it waits.
                        match acks.next().now_or_never() {
                            Some(Some(ack)) => batch.push(ack),
                            _ => break,
                        }
                    }
                    if send_all(&mut sink, batch.into_iter().map(|a| Message::Text(a.into()))).await.is_err() {
                        break None;
                    }
                },
                incoming = stream.next(), if acks.len() < MAX_IN_FLIGHT => match incoming {
                    Some(Ok(Message::Close(_))) => {
                        closed_by_client = true;
                        break None;
                    }
                    None => break None,
                    Some(Err(e)) => break closing_for(e, state.config.max_body_bytes),
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        // Boxed: the send's state would otherwise be part of
                        // every idle session's.
                        match Box::pin(receive(&state, &token, sub.id, text.as_str())).await {
                            Received::Taken(ack, waits_turn) => acks.push_back(ack, waits_turn),
                            Received::Refused(ack) => {
                                acks.push_back(ack, false);
                                if refusals.too_many() {
                                    break Some(flooding);
                                }
                            }
                            Received::Ended => break Some(ended),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        let e = ApiError::bad_request("frames are JSON text");
                        acks.push_back(answered(error_frame(None, e)), false);
                        if refusals.too_many() {
                            break Some(flooding);
                        }
                    }
                    Some(Ok(_)) => last_heard = Instant::now(),
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        break Some((1001, "no heartbeat"));
                    }
                    if let Ok(None) = still_signed_in(&state, &token) {
                        break Some(ended);
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                },
                _ = shutdown.changed() => break Some((1001, "server shutting down")),
            }
        }
    };
    // Unregistered here, before the close; a session that panics is
    // unregistered as its subscription drops.
    drop(sub);
    if closed_by_client {
        // The reply to the client's close (its code echoed, or 1002 for a
        // code it may not send) is queued as the close is read; flushing
        // sends it, completing the closing handshake.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    }
    if let Some((code, reason)) = close {
        // Sends already stored are acknowledged before the close (briefly:
        // a client that misses one sends it again under its client id).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(ack) = acks.next_any().await {
                if sink.send(Message::Text(ack.into())).await.is_err() {
                    return;
                }
            }
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        })
        .await;
        // The closing handshake: what the client sent meanwhile is read and
        // dropped until its close comes (briefly). A socket closed with
        // unread bytes is reset, and a reset can take the close frame, and
        // the answers before it, from the client before it reads them.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

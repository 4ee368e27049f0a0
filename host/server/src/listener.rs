//! Accepting connections: caps on how many are open (in all and per client
//! address), a deadline for a request's headers (which also closes a
//! keep-alive connection that sends nothing), an idle timeout on any
//! connection that makes no progress either way (slow readers, dead
//! WebSockets), and graceful shutdown that lets requests in flight finish.
//!
//! A connection over a cap gets a one-shot `503` with a JSON error and
//! `Retry-After`, then is closed, so a client cannot exhaust the host's
//! file descriptors.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::proxies::{ClientIp, FromTrustedProxy, TrustedProxies};

/// How many connections, and how long they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections over all clients.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Time a client has to send a request's headers, counted from when
    /// the server waits for them (so also between keep-alive requests).
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            // Generous: many users may share one address behind a carrier's NAT.
            max_per_client: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// Keep `max_connections` under the process's file-descriptor limit
    /// (less a reserve for the store, logs and outgoing sockets), so the cap
    /// refuses connections before `accept` starts failing, after raising
    /// the limit to what the system allows this process (the soft limit is
    /// often 1024 while the hard one is far higher). Where the cap must
    /// still come down, one address may hold at most a quarter of it, so
    /// no one client takes every place.
    pub fn fit_descriptors(mut self) -> Self {
        const RESERVE: usize = 256;
        raise_open_files_limit();
        if let Some(limit) = open_files_limit() {
            let room = limit.saturating_sub(RESERVE).max(16);
            if self.max_connections > room {
                let share = (room / 4).max(1).min(self.max_per_client);
                tracing::warn!(
                    max_connections = self.max_connections,
                    max_connections_per_client = self.max_per_client,
                    open_files_limit = limit,
                    "lowering max-connections to {room} and max-connections-per-client to {share} to fit the file-descriptor limit (raise the hard limit on open files, e.g. systemd's LimitNOFILE, for more)"
                );
                self.max_connections = room;
                self.max_per_client = share;
            }
        }
        self
    }
}

/// Most open files this process asks for: far more than it holds.
const WANTED_OPEN_FILES: u64 = 1 << 20;

/// Raise the soft limit on open files to the hard one (up to
/// [`WANTED_OPEN_FILES`]), as servers do: the soft limit exists for
/// programs that use `select`, which this one does not.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let wanted = now
        .maximum
        .unwrap_or(WANTED_OPEN_FILES)
        .min(WANTED_OPEN_FILES);
    if now.current.is_some_and(|current| current >= wanted) {
        return;
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?now.current, to = wanted, "raised the limit on open files")
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the limit on open files"),
    }
}

/// The soft limit on open files, where the system says (Linux).
fn open_files_limit() -> Option<usize> {
    use rustix::process::{getrlimit, Resource};
    getrlimit(Resource::Nofile)
        .current
        .and_then(|n| usize::try_from(n).ok())
}

/// Open connections, in all and per address.
struct Tracker {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// The same count, for `/metrics`.
    gauge: Gauge,
}

impl Tracker {
    fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Count a connection from `ip`, if it fits under the caps; a trusted
    /// proxy (`proxy`) carries many clients, so only the total caps it.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        proxy: bool,
        limits: &ConnectionLimits,
    ) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= limits.max_connections || (!proxy && from_ip >= limits.max_per_client) {
            return None;
        }
        open.0 += 1;
        *open.1.entry(ip).or_default() += 1;
        self.gauge.set(open.0 as i64);
        Some(Admitted {
            tracker: self.clone(),
            ip,
        })
    }
}

/// One open connection, counted until it is dropped.
struct Admitted {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.tracker.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        self.tracker.gauge.set(open.0 as i64);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then stop
/// accepting, let requests in flight finish (up to `drain_timeout`) and
/// return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    proxies: TrustedProxies,
    open: Gauge,
    shutdown: impl Future<Output = ()>,
) {
    let limits = limits.fit_descriptors();
    let tracker = Arc::new(Tracker {
        open: Mutex::default(),
        gauge: open,
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: pause briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = tracker.admit(peer.ip(), proxies.trusts(peer.ip()), &limits) else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let proxies = proxies.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let client = ClientIp(proxies.client(peer.ip(), req.headers()));
            let proxied = FromTrustedProxy(proxies.trusts(peer.ip()));
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(client);
            req.extensions_mut().insert(proxied);
            app.clone().oneshot(req)
        });
        // The count lives with the socket, so an upgraded connection (a
        // WebSocket) stays counted until it closes.
        let io = TokioIo::new(Idle::new(stream, limits.idle_timeout, admitted));
        let conn = http.serve_connection(io, service).with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stopped => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = Instant::now() + limits.drain_timeout;
    while tracker.open() > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(
                open = tracker.open(),
                "connections still open after {} s; closing them",
                limits.drain_timeout.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tell a client over a cap why, without waiting on it, and close.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"error":{"code":"too-many-connections","message":"this server has too many open connections from you or in all; try again shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
    tracing::debug!("refused a connection over the cap");
}

/// A stream that fails with `TimedOut` once it has moved no byte in either
/// direction for `timeout` while someone waits on it.
struct Idle {
    inner: TcpStream,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    _admitted: Admitted,
}

impl Idle {
    fn new(inner: TcpStream, timeout: Duration, admitted: Admitted) -> Idle {
        let now = Instant::now();
        Idle {
            inner,
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until((now + timeout).into())),
            _admitted: admitted,
        }
    }

    /// After a `Pending` from the stream: has the connection been idle too
    /// long? Re-arms the timer from the last progress otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let deadline = self.last + self.timeout;
            if Instant::now() >= deadline {
                return true;
            }
            if self.timer.deadline() != deadline.into() {
                self.timer.as_mut().reset(deadline.into());
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.last = Instant::now();
                ready
            }
        }
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.progress(cx, poll)
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        let huge = ConnectionLimits {
            max_connections: usize::MAX / 2,
            ..ConnectionLimits::default()
        }
        .fit_descriptors();
        match open_files_limit() {
            Some(limit) => assert!(huge.max_connections < limit),
            None => assert_eq!(huge.max_connections, usize::MAX / 2),
        }
        if open_files_limit().is_some() {
            assert!(huge.max_per_client <= huge.max_connections / 4);
        }
        // The soft limit is raised to the hard one (as far as wanted).
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let hard = now
            .maximum
            .unwrap_or(WANTED_OPEN_FILES)
            .min(WANTED_OPEN_FILES);
        assert_eq!(now.current, Some(hard));
    }

    #[test]
    fn caps_that_fit_are_kept_as_set() {
        let set = ConnectionLimits {
            max_connections: 12,
            max_per_client: 8,
            ..ConnectionLimits::default()
        }
        .fit_descriptors();
        assert_eq!((set.max_connections, set.max_per_client), (12, 8));
    }
}

//! Connections: the accept loop and the limits that keep one slow or idle client from starving the
//! server.
//!
//! - **Header timeout**: a connection that has not sent a complete request head within this time —
//!   from when it opened, or from the first byte of a later request — is closed. A silent socket and
//!   a half-sent header both end here.
//! - **Idle timeout**: a keep-alive connection with no request for this long after its last response
//!   is closed.
//! - **Body timeout**: a request body that sends nothing for this long fails (`400`).
//! - **Connection limit**: at most this many connections are served. When a new one arrives at the
//!   limit, the connection idle the longest (no request in flight: silent, keep-alive or still
//!   sending its head) is closed to make room; when every connection has a request in flight the new
//!   one is answered `503` at once. Thousands of idle sockets therefore cannot lock out `/healthz`
//!   or an ingest, nor exhaust the process's file descriptors.
//! - A request whose declared `Content-Length` is above `--max-body` is answered `413` before its
//!   body is read.
//!
//! Each connection is served by hyper's HTTP/1 server; the bookkeeping is a [`Watch`] per
//! connection, fed by its socket wrapper ([`Tracked`]: bytes in and out) and by the service
//! (a request in flight from its head until its response body is dropped).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::error::ApiError;

/// The limits the server holds every connection to: header, idle and body timeouts, the most
/// connections at once (the longest-idle one is closed to make room) and the largest body
/// (docs/api.md, "Slow, idle and too many clients").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a complete request head (see the module docs).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Longest pause inside a request body.
    pub body_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Largest request body (a larger declared `Content-Length` is answered 413 at once).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// What one connection is doing, in milliseconds since the server started.
struct Watch {
    /// When the last byte went in or out.
    last_io: AtomicU64,
    /// When the first byte of a request head arrived with no request in flight (0: none; else +1).
    head_started: AtomicU64,
    /// Requests in flight: from the parsed head until the response body is dropped.
    busy: AtomicUsize,
    /// Whether a response has been sent (the idle timeout applies from then on).
    served: AtomicBool,
    /// Set to close the connection (evicted to make room).
    close: tokio::sync::Notify,
    base: Instant,
}

impl Watch {
    fn new(base: Instant) -> Watch {
        let watch = Watch {
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
            base,
        };
        watch.touch();
        watch
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Acquire) == 0 {
            let _ = self.head_started.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Why the connection must close now, if it must.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if !self.idle() {
            return None;
        }
        let now = self.now();
        let over = |since: u64, limit: Duration| now.saturating_sub(since) > limit.as_millis() as u64;
        match self.head_started.load(Ordering::Acquire) {
            0 if self.served.load(Ordering::Relaxed) => {
                over(self.last_io.load(Ordering::Relaxed), limits.idle_timeout).then_some("idle")
            }
            // A connection that never sent a byte has the header timeout from when it opened.
            0 => over(self.last_io.load(Ordering::Relaxed), limits.header_timeout).then_some("header"),
            started => over(started - 1, limits.header_timeout).then_some("header"),
        }
    }
}

/// A request in flight; dropped with its response body.
struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, reporting its traffic to the connection's [`Watch`].
struct Tracked {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that fails when it sends nothing for `timeout`.
struct TimeoutBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(format!(
                        "the request body sent nothing for {} s (--body-timeout)",
                        timeout.as_secs_f64()
                    )
                    .into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`Busy`] until hyper is done with it.
struct GuardedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connections being served.
#[derive(Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<Watch>>>,
    next: AtomicU64,
    emptied: tokio::sync::Notify,
}

impl Registry {
    fn len(&self) -> usize {
        self.connections.lock().map_or(0, |c| c.len())
    }

    fn insert(&self, watch: Arc<Watch>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(id, watch);
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut connections) = self.connections.lock() {
            connections.remove(&id);
            if connections.is_empty() {
                self.emptied.notify_waiters();
            }
        }
    }

    /// Close the connection idle the longest; false when every one has a request in flight.
    fn evict_oldest_idle(&self) -> bool {
        let Ok(mut connections) = self.connections.lock() else { return false };
        let oldest = connections
            .iter()
            .filter(|(_, watch)| watch.idle())
            .min_by_key(|(_, watch)| watch.last_io.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| connections.remove(&id)) {
            Some(watch) => {
                watch.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The JSON 413 for a declared body above the limit, if this request has one.
fn declared_too_large(request: &Request<Incoming>, max_body: usize) -> Option<Response<Body>> {
    let declared = request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    (declared > max_body as u64).then(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body declares {declared} bytes, more than the server's --max-body of {max_body}"),
        )
        .into_response()
    })
}

/// Serve one accepted connection until it ends, times out, is evicted, or the server shuts down.
async fn serve_one(
    stream: TcpStream,
    app: Router,
    watch: Arc<Watch>,
    limits: Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked { inner: stream, watch: Arc::clone(&watch) });
    let service_watch = Arc::clone(&watch);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        service_watch.busy.fetch_add(1, Ordering::AcqRel);
        service_watch.head_started.store(0, Ordering::Release);
        let busy = Busy(Arc::clone(&service_watch));
        let early = declared_too_large(&request, limits.max_body);
        let app = app.clone();
        async move {
            let response = match early {
                Some(response) => response,
                None => {
                    let request = request
                        .map(|inner| Body::new(TimeoutBody { inner, timeout: limits.body_timeout, sleep: None }));
                    match app.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
            };
            Ok::<_, Infallible>(response.map(|inner| GuardedBody { inner, _busy: busy }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let check_every =
        (limits.header_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(check_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = watch.close.notified() => break,
            _ = ticker.tick() => {
                if watch.expired(&limits).is_some() {
                    break;
                }
            }
            changed = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answer a connection beyond the limit, when no connection can be closed for it: a JSON 503, then
/// close (within a second, so these cannot pile up either).
async fn refuse_busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":"the server is at its connection limit and every connection has a request in flight; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
}

/// Accept and serve connections on `listener` within `limits` until `shutdown` completes; then stop
/// accepting, let every in-flight request finish (idle connections close at once) and return.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base = Instant::now();
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or memory (the limit makes this rare): back off briefly
                // rather than spin; a connection-level error concerns only that connection.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) {
                    tracing::warn!(target: "shipshape::http", error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_oldest_idle() {
            tokio::spawn(refuse_busy(stream));
            continue;
        }
        let watch = Arc::new(Watch::new(base));
        let id = registry.insert(Arc::clone(&watch));
        let registry = Arc::clone(&registry);
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_one(stream, app, watch, limits, stop).await;
            registry.remove(id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let emptied = registry.emptied.notified();
        if registry.len() == 0 {
            break;
        }
        emptied.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    #[test]
    fn a_silent_connection_expires_after_the_header_timeout() {
        let watch = Watch::new(Instant::now());
        assert_eq!(watch.expired(&limits()), None);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(watch.expired(&limits()), Some("header"));
    }

    #[test]
    fn a_half_sent_head_expires_even_while_it_trickles() {
        let watch = Watch::new(Instant::now());
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(40));
            watch.read(); // one more byte of the head
        }
        assert_eq!(watch.expired(&limits()), Some("header"));
    }

    #[test]
    fn a_request_in_flight_never_expires_and_keep_alive_gets_the_idle_timeout() {
        let watch = Arc::new(Watch::new(Instant::now()));
        watch.read();
        watch.busy.fetch_add(1, Ordering::AcqRel);
        watch.head_started.store(0, Ordering::Release);
        let busy = Busy(Arc::clone(&watch));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(watch.expired(&limits()), None, "a slow handler is not a slow client");
        drop(busy);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(watch.expired(&limits()), None, "within the idle timeout");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(watch.expired(&limits()), Some("idle"));
    }

    #[test]
    fn eviction_takes_the_longest_idle_and_never_a_busy_one() {
        let registry = Registry::default();
        let base = Instant::now();
        let busy = Arc::new(Watch::new(base));
        busy.busy.fetch_add(1, Ordering::AcqRel);
        registry.insert(Arc::clone(&busy));
        std::thread::sleep(Duration::from_millis(5));
        let old = Arc::new(Watch::new(base));
        registry.insert(Arc::clone(&old));
        std::thread::sleep(Duration::from_millis(5));
        let young = Arc::new(Watch::new(base));
        registry.insert(Arc::clone(&young));
        assert!(registry.evict_oldest_idle());
        assert_eq!(registry.len(), 2);
        assert!(registry.connections.lock().unwrap().values().any(|w| Arc::ptr_eq(w, &young)));
        assert!(registry.evict_oldest_idle());
        assert!(!registry.evict_oldest_idle(), "only a busy connection is left");
        assert_eq!(registry.len(), 1);
    }
}

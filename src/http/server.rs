//! Serving connections: our own accept loop around hyper's HTTP/1 server, in
//! place of `axum::serve`, for three things it does not do.
//!
//! - **A bound on connections.** A semaphore permit is taken *before*
//!   `accept()`, so past `HTTP_MAX_CONNECTIONS` new connections wait in the
//!   kernel's listen backlog (and, past that, in the clients' SYN retries)
//!   instead of costing memory here.
//! - **Timeouts on silent clients.** Without them a connection that sends
//!   nothing, half a request, or idles on keep-alive is kept forever.
//!   - *Header read*: a new connection must finish its first request's
//!     headers within `HTTP_HEADER_READ_TIMEOUT_SECONDS` of being accepted;
//!     on a kept-alive connection, the next request's headers must be
//!     complete that long after its first byte arrived. Otherwise the
//!     connection is closed (nothing is answered: no request was read).
//!   - *Idle*: a kept-alive connection on which nothing arrives for
//!     `HTTP_IDLE_TIMEOUT_SECONDS` after its last response is shut down
//!     gracefully (hyper closes it, as it is between requests).
//!   - *Request body*: a request whose body stops arriving for
//!     `HTTP_IDLE_TIMEOUT_SECONDS` while the handler waits for it fails
//!     (408, see `extract::bytes_rejection`).
//!   - Nothing else is timed: once a request's headers are read, the
//!     connection stays open for as long as its handler runs and its
//!     response is written, however long that takes.
//!
//!   hyper's own `header_read_timeout` is not used: it also restarts when a
//!   response is finished and so bounds the keep-alive idle time by the
//!   header timeout (10 s), which would close the sidecar's connections far
//!   earlier than `HTTP_IDLE_TIMEOUT_SECONDS` says.
//! - **JSON bodies on hyper's own error answers.** When hyper cannot parse a
//!   request head it answers by itself, before any service runs, with an
//!   empty body: 400 (bad request line, header or Content-Length), 414 (URI
//!   longer than 65,534 bytes) or 431 (headers past its buffer or more than
//!   100). hyper has no hook to give these a body, so `Io` recognises that
//!   head in what hyper writes (its exact shape, which no answer of the
//!   router has: every error of ours carries a JSON body) and writes the same
//!   head with a `{"detail": ...}` body instead.
//!
//! Shutdown: when `stop` resolves, accepting stops, every connection is
//! asked to shut down gracefully (an idle one closes at once, one with a
//! request in flight closes once its response is written), and [`serve`]
//! returns when the last one is closed. A connection that is not in a
//! request and has not closed by itself is closed at the latest a header
//! timeout later.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::Settings;

/// The connection limits, from the `HTTP_*` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            header_read_timeout: settings.http_header_read_timeout,
            idle_timeout: settings.http_idle_timeout,
            max_connections: settings.http_max_connections,
        }
    }
}

/// The error a request body yields when the client stops sending it for
/// the idle timeout while the handler waits for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving for {0:?}")]
pub(crate) struct BodyStalled(pub Duration);

/// Serve `router` on `listener` until `stop` resolves, then close down as
/// described in the module docs.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a receiver; the sender sees them all dropped.
    let (open_tx, open_rx) = watch::channel(());
    let mut stop = pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            limits,
            stop_rx.clone(),
            (permit, open_rx.clone()),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

/// Errors of one connection (the peer reset it before we took it) are
/// skipped; others (out of file descriptors) are logged and retried after a
/// pause, as `axum::serve` does.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What to do when a connection's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Idle between requests: hyper's graceful shutdown closes it cleanly.
    Idle,
    /// Headers not received in time, or shutting down and not in a request:
    /// drop the connection.
    Close,
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    // Held until the connection is closed.
    _held: (OwnedSemaphorePermit, watch::Receiver<()>),
) {
    let track = Arc::new(Track::new());
    let io = TokioIo::new(Io {
        stream,
        track: track.clone(),
        replacement: None,
    });
    let service = {
        let track = track.clone();
        let body_gap = limits.idle_timeout;
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = track.begin();
            let router = router.clone();
            async move {
                let mut request = request.map(|body| Body::new(GapLimited::new(body, body_gap)));
                // The caller's address, for a webhook's `allowed_ips`.
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let Ok(response) = router.oneshot(request).await;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own timeouts (see the module docs), not hyper's.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));

    let mut stopping = false;
    let mut shut_down_at: Option<Instant> = None;
    loop {
        // Events inside `conn` (a request starts or ends, the first byte of
        // the next one arrives) move the deadline and wake this loop.
        let changed = track.changed.notified();
        let next = track.deadline(&limits, shut_down_at);
        tokio::select! {
            // Bytes already here are served before any deadline is acted on.
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
                shut_down_at.get_or_insert(Instant::now());
            }
            () = changed => {}
            () = sleep_until(next), if next.is_some() => match next.map(|(_, expiry)| expiry) {
                Some(Expiry::Close) => {
                    tracing::debug!("closing a connection outside a request: its headers are late, or the server stops");
                    return;
                }
                Some(Expiry::Idle) => {
                    tracing::debug!("closing an idle keep-alive connection");
                    conn.as_mut().graceful_shutdown();
                    shut_down_at.get_or_insert(Instant::now());
                }
                None => {}
            },
        }
    }
}

async fn sleep_until(deadline: Option<(Instant, Expiry)>) {
    if let Some((at, _)) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

/// `now + d`, or far in the future when that overflows (a huge timeout).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

const NEVER: u64 = u64::MAX;

/// Where one connection is between requests, shared by its IO (bytes read)
/// and its service (a request starts, its response body is done). Times are
/// milliseconds since the connection was accepted.
struct Track {
    accepted: Instant,
    /// Woken when the deadline may have moved.
    changed: Notify,
    /// Requests whose headers were read and whose response body is not yet
    /// finished (HTTP/1: zero or one).
    busy: AtomicUsize,
    /// When the last response was finished; `NEVER` before the first.
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived; `NEVER` if none has.
    head_since: AtomicU64,
}

impl Track {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            changed: Notify::new(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(NEVER),
            head_since: AtomicU64::new(NEVER),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never NEVER: that would take 584 million years.
        self.accepted.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        if self.busy.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) == NEVER
        {
            self.head_since.store(self.now_ms(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// A request's headers are read; the guard ends it when dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NEVER, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self.clone())
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// The next deadline and what to do then; `None` while a request is in
    /// flight. After a graceful shutdown (`shut_down_at`) a connection not
    /// in a request is dropped a header timeout after the later of the
    /// shutdown and its last response, should hyper not have closed it.
    fn deadline(
        &self,
        limits: &Limits,
        shut_down_at: Option<Instant>,
    ) -> Option<(Instant, Expiry)> {
        if self.busy() {
            return None;
        }
        let header = limits.header_read_timeout;
        let idle_since = self.idle_since.load(Ordering::SeqCst);
        let head_since = self.head_since.load(Ordering::SeqCst);
        let (at, expiry) = if head_since != NEVER {
            (later(self.at(head_since), header), Expiry::Close)
        } else if idle_since == NEVER {
            (later(self.accepted, header), Expiry::Close)
        } else {
            (
                later(self.at(idle_since), limits.idle_timeout),
                Expiry::Idle,
            )
        };
        match shut_down_at {
            None => Some((at, expiry)),
            Some(shut_down) => {
                let last = if idle_since == NEVER {
                    self.accepted
                } else {
                    self.at(idle_since)
                };
                let close = later(shut_down.max(last), header);
                Some((at.min(close), Expiry::Close))
            }
        }
    }
}

/// A request in flight; dropped with its response body.
struct Busy(Arc<Track>);

impl Drop for Busy {
    fn drop(&mut self) {
        let track = &self.0;
        track.idle_since.store(track.now_ms(), Ordering::SeqCst);
        track.busy.fetch_sub(1, Ordering::SeqCst);
        track.changed.notify_one();
    }
}

/// A response body that ends its request's [`Busy`] when hyper is done with it.
struct Tracked {
    body: Body,
    _guard: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyStalled`] when the handler has
/// waited `gap` for its next bytes.
struct GapLimited {
    body: Incoming,
    gap: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl GapLimited {
    fn new(body: Incoming, gap: Duration) -> Self {
        Self {
            body,
            gap,
            timer: None,
        }
    }
}

impl HttpBody for GapLimited {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let gap = this.gap;
                let timer = this.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(later(Instant::now(), gap)))
                });
                ready!(timer.as_mut().poll(cx));
                this.timer = None;
                Poll::Ready(Some(Err(Box::new(BodyStalled(gap)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it: reads are reported to [`Track`], and
/// hyper's own empty-bodied error answers are written with a JSON body.
///
/// It does not offer vectored writes, so hyper hands each write over as one
/// flat buffer and a head it generated is never split across buffers.
struct Io {
    stream: TcpStream,
    track: Arc<Track>,
    /// An error answer being written in place of hyper's, and how much of
    /// it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Io {
    /// Write out what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.track.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        // hyper answers by itself only between requests.
        if !self.track.busy() {
            if let Some(found) = find_generated_error(buf) {
                if found.start > 0 {
                    // What precedes it first (the end of an earlier response).
                    return Pin::new(&mut self.stream).poll_write(cx, &buf[..found.start]);
                }
                self.replacement = Some((found.replacement, 0));
                // Taken: the rest is written by this call or by flush.
                if let Poll::Ready(Err(e)) = self.poll_replacement(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(found.len));
            }
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The heads hyper writes by itself for a request it cannot parse, and the
/// `detail` each gets.
const GENERATED: &[(&[u8], &str)] = &[
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "malformed HTTP request: the request line, a header or Content-Length could not be parsed",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "request URI is too long (at most 65534 bytes)",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "request headers are too large or too many (at most 100)",
    ),
];

struct Generated {
    /// Where hyper's head starts in the buffer, and its length.
    start: usize,
    len: usize,
    /// The same answer with a JSON body.
    replacement: Vec<u8>,
}

/// hyper's own error head at the end of `buf` (hyper closes the connection
/// after it, so nothing follows it): one of [`GENERATED`]'s status lines,
/// then only `content-length: 0`, `date` and `connection: close`. No answer
/// of the router looks like that: its errors all have a JSON body, so a
/// `content-type` and a length above zero. Only the last few hundred bytes
/// are looked at, so a large response costs nothing.
fn find_generated_error(buf: &[u8]) -> Option<Generated> {
    /// Longer than any head hyper generates (about 130 bytes).
    const TAIL: usize = 256;
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail_start = buf.len().saturating_sub(TAIL);
    let mut from = tail_start;
    while let Some(offset) = find(&buf[from..], PREFIX) {
        let start = from + offset;
        if let Some(found) = generated_at(buf, start) {
            return (start + found.len == buf.len()).then_some(found);
        }
        from = start + 1;
    }
    None
}

fn generated_at(buf: &[u8], start: usize) -> Option<Generated> {
    let rest = &buf[start..];
    let (status_line, detail) = GENERATED.iter().find(|(line, _)| rest.starts_with(line))?;
    let head_len = find(rest, b"\r\n\r\n")? + 4;
    let fields = &rest[status_line.len()..head_len - 2];
    let mut kept = Vec::new();
    let mut empty_body = false;
    let mut close = false;
    for line in fields.split(|&b| b == b'\n') {
        let Some(line) = line.strip_suffix(b"\r") else {
            if line.is_empty() {
                continue;
            }
            return None;
        };
        if line.eq_ignore_ascii_case(b"content-length: 0") {
            empty_body = true;
        } else if line.eq_ignore_ascii_case(b"connection: close") {
            close = true;
            kept.push(line);
        } else if line.len() >= 6 && line[..6].eq_ignore_ascii_case(b"date: ") {
            kept.push(line);
        } else {
            return None;
        }
    }
    if !empty_body {
        return None;
    }
    let body = serde_json::to_vec(&serde_json::json!({ "detail": detail })).ok()?;
    let mut out = Vec::with_capacity(head_len + 64 + body.len());
    out.extend_from_slice(status_line);
    for line in kept {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if !close {
        // hyper closes the connection after these answers.
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-type: application/json\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Some(Generated {
        start,
        len: head_len,
        replacement: out,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_error_head_gets_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
        let mut buf = b"{\"end\":\"of an earlier body\"}".to_vec();
        buf.extend_from_slice(head);
        let found = find_generated_error(&buf).expect("found");
        assert_eq!(found.start, 28);
        assert_eq!(found.len, head.len());
        let text = String::from_utf8(found.replacement).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains("\r\ncontent-type: application/json"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["detail"].as_str().unwrap().contains("headers"));
    }

    #[test]
    fn the_routers_answers_are_left_alone() {
        for buf in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\ndate: x\r\n\r\n{\"detail\":\"invalid\"}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-other: 1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}\r\n\r\n",
        ] {
            assert!(find_generated_error(buf).is_none(), "{}", String::from_utf8_lossy(buf));
        }
    }
}

//! The HTTP server (hyper 1.x on tokio): connection handling, routing, body limits, content
//! types, and the one conversion of errors into JSON responses. Ingest endpoints live here;
//! the NOC incident API is `api.rs`.
//!
//! Every route first passes [`auth`](super::auth): 401 with `WWW-Authenticate` without a valid
//! token, 403 without the role the route needs.
//!
//! Limits, each with its own answer and `reason`: a body over `server.max_body_bytes` is 413; a
//! content type other than JSON is 415 (on the routes that read a body: `/-/reload` reads none); a client that does not finish its headers within
//! `server.header_read_timeout` (also the keep-alive idle timeout) is disconnected (slowloris), one
//! that does not finish its body within `server.body_read_timeout` gets 408, and one that reads
//! nothing of an answer for as long is disconnected ([`WriteDeadline`]); connections beyond
//! `server.max_connections` get 503 and are closed; more alerts, labels or label bytes than
//! allowed are 413/400; a full writer queue, or more request bytes in flight than
//! `server.max_inflight_bytes`, is 503 with `Retry-After`.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::alert::{Alert, Source};
use crate::config::{Role, ServerConfig};
use crate::metrics::Metrics;
use crate::pipeline::{Command, IngestSummary, Outcome, PipelineError, Queue, SubmitError};
use crate::sources::auth::{Access, Denied};
use crate::sources::formats::{self, pagerduty, ParseError};
use crate::sources::{Breach, Limits};
use crate::store::Store;

pub type Response = hyper::Response<Full<Bytes>>;

/// What every handler shares.
pub struct App {
    pub queue: Queue,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// True while the writer runs: `/-/ready`.
    pub ready: Arc<AtomicBool>,
    pub max_body_bytes: usize,
    pub reloader: Arc<crate::reload::Reloader>,
    /// With a Kafka source, ready also means connected to a broker.
    pub kafka_enabled: bool,
    pub limits: Limits,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    /// Request bytes admitted and not yet answered, in KiB permits (`server.max_inflight_bytes`).
    pub inflight: Arc<Semaphore>,
    /// Open connections.
    pub connections: AtomicUsize,
    /// When this process started: the uptime of `GET /api/v2/status`.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl App {
    pub fn new(
        queue: Queue,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        reloader: Arc<crate::reload::Reloader>,
        kafka_enabled: bool,
        server: &ServerConfig,
    ) -> App {
        App {
            queue,
            store,
            metrics,
            ready,
            max_body_bytes: server.max_body_bytes,
            reloader,
            kafka_enabled,
            limits: Limits::from_config(server),
            body_read_timeout: server.body_read_timeout.0,
            max_connections: server.max_connections,
            inflight: Arc::new(Semaphore::new(kib(server.max_inflight_bytes))),
            connections: AtomicUsize::new(0),
            started_at: chrono::Utc::now(),
        }
    }

    /// Count the uptime from `at` (the daemon's start, before its store opened) rather than
    /// from when the `App` was made.
    pub fn started(self, at: chrono::DateTime<chrono::Utc>) -> App {
        App {
            started_at: at,
            ..self
        }
    }
}

/// Bytes as KiB permits, rounded up; at least one.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// An error answer: status, a short `error`, and optional `detail`. Client errors (4xx) are not
/// logged as errors; server errors are logged once, here.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: Option<String>,
    /// For ingest refusals: the `reason` of `triaged_alerts_rejected_total`.
    pub reject_reason: Option<&'static str>,
    pub retry_after: Option<u64>,
    pub allow: Option<&'static str>,
    /// 401: ask for credentials with `WWW-Authenticate`: a Bearer challenge, and a Basic one
    /// only to a client that tried basic auth (a Basic challenge makes browsers prompt, which
    /// would stall the board's own API calls).
    pub challenge: Option<Challenge>,
}

/// Which `WWW-Authenticate` challenges a 401 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Bearer,
    BearerAndBasic,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            detail: None,
            reject_reason: None,
            retry_after: None,
            allow: None,
            challenge: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    fn rejects(mut self, reason: &'static str) -> ApiError {
        self.reject_reason = Some(reason);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad request").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not found").detail(detail)
    }

    /// The answer to a request under `/api/v2/` (Alertmanager's API): its 400, 404 and 500 are
    /// a bare JSON string, `"<error>: <detail>"`, the body Alertmanager's OpenAPI spec gives them
    /// and its generated clients (amtool) read; any other status is answered as elsewhere.
    fn into_alertmanager_response(self) -> Response {
        let bare = matches!(self.status.as_u16(), 400 | 404 | 500) && self.challenge.is_none();
        self.respond(bare)
    }

    fn into_response(self) -> Response {
        self.respond(false)
    }

    /// The answer: `{"error", "detail"}`, or with `bare` the string `"<error>: <detail>"`.
    fn respond(self, bare: bool) -> Response {
        // A refusal with Retry-After (queue full, store down) is a state, counted and logged
        // once where it arises; logging every refused request would flood the log, which may
        // well sit on the disk that is full.
        // 501 (an unsupported Transfer-Encoding) is the client's doing, however it is coded:
        // any client could fill the error log with it.
        if self.status.is_server_error()
            && self.status != StatusCode::NOT_IMPLEMENTED
            && self.retry_after.is_none()
        {
            tracing::error!(status = self.status.as_u16(), error = %self.error, detail = ?self.detail, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.error, detail = ?self.detail, "request refused");
        }
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
        }
        let mut response = if bare {
            let text = match &self.detail {
                Some(detail) => format!("{}: {detail}", self.error),
                None => self.error.clone(),
            };
            json_response(self.status, &text)
        } else {
            json_response(
                self.status,
                &Body {
                    error: &self.error,
                    detail: self.detail.as_deref(),
                },
            )
        };
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = self.challenge {
            let headers = response.headers_mut();
            headers.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"triaged\""),
            );
            if challenge == Challenge::BearerAndBasic {
                headers.append(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"triaged\", charset=\"UTF-8\""),
                );
            }
        }
        response
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> ApiError {
        let error = match &e {
            ParseError::Json { error, .. } => crate::sources::formats::json_problem(error),
            ParseError::Invalid { .. } => "invalid alert",
        };
        ApiError::new(StatusCode::BAD_REQUEST, error)
            .detail(e.detail())
            .rejects(e.reason())
    }
}

impl From<Breach> for ApiError {
    fn from(b: Breach) -> ApiError {
        let status = if b.reason == "too_many_alerts" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, "limit exceeded")
            .detail(b.detail)
            .rejects(b.reason)
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        err.retry_after = Some(1);
        if e == SubmitError::Full {
            err = err
                .detail("triaged is at capacity; retry after the given delay")
                .rejects("overloaded");
        }
        err
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        match e {
            PipelineError::NotFound(id) => ApiError::not_found(format!("no incident {id}")),
            PipelineError::SilenceNotFound(id) => ApiError::not_found(format!("no silence {id}")),
            PipelineError::Invalid(why) => ApiError::bad_request(why),
            PipelineError::Conflict(t) => {
                ApiError::new(StatusCode::CONFLICT, "conflict").detail(t.to_string())
            }
            PipelineError::Unavailable(_) => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
                    .detail(e.to_string())
                    .rejects("store_unavailable");
                err.retry_after = Some(5);
                err
            }
            PipelineError::Store(_) | PipelineError::Commit(_) => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
                    .detail(e.to_string());
                err.retry_after = Some(5);
                err
            }
        }
    }
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    // Our own response types always serialize.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    text_response(status, "application/json", bytes)
}

/// An answer of `body` as `content_type`.
fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = hyper::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Accept connections until `shutdown` resolves, then give in-flight requests `grace` to finish.
/// With `[server.tls]`, each connection first completes a TLS handshake (within
/// `header_read_timeout`), using the certificate in force when it was accepted.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // hyper enforces no header-read timeout without a timer: slow clients would hold connections.
    // Without `writev`, hyper copies a response's body behind its head and sends both with one
    // plain `send`: at batch 1 the HTTP worker's CPU per request was 8 % lower than with the
    // two-part `writev` (7 of 7 runs in turn; the kernel's vectored path costs more than the
    // copy of a small body). Alerts/s stayed within noise (`benches/HISTORY.md`).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .writev(false);
    let builder = Arc::new(builder);
    // hyper arms a header-read timer for every request. tokio wakes its I/O driver (a write to
    // an eventfd: a syscall per request) for each timer that expires before the earliest it knew
    // of when it last parked; with no other timer pending, that is every one. A timer that
    // always expires no later than any header-read timer keeps those registrations quiet (for a
    // header-read timeout under a second, which this does not tick faster for, they still wake).
    let period = header_read_timeout.max(Duration::from_secs(1));
    let anchor = tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
        }
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Answers go out whole at once: no waiting on Nagle for a peer's ACK.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(peer = %peer, error = %e, "could not set TCP_NODELAY");
                    }
                    let open = OpenConnection::new(app.clone());
                    let app = app.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let tls = app.reloader.tls();
                    tokio::spawn(async move {
                        let Some(tls) = tls else {
                            return serve_connection(stream, peer, open, &builder, watcher).await;
                        };
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                        match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, peer, open, &builder, watcher).await
                            }
                            Ok(Err(e)) => {
                                open.app.metrics.tls_handshake_failures.inc();
                                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                open.app.metrics.tls_handshake_failures.inc();
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    anchor.abort();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(grace = ?grace, "shutdown grace expired with connections still open"),
    }
}

/// Counts a connection as open from accept until it ends.
struct OpenConnection {
    app: Arc<App>,
    /// Beyond `server.max_connections`: every request on it is refused.
    over_limit: bool,
}

impl OpenConnection {
    fn new(app: Arc<App>) -> OpenConnection {
        let open = app.connections.fetch_add(1, Ordering::SeqCst) + 1;
        app.metrics.http_connections_open.set(open as i64);
        OpenConnection {
            over_limit: open > app.max_connections,
            app,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let open = self.app.connections.fetch_sub(1, Ordering::SeqCst) - 1;
        self.app.metrics.http_connections_open.set(open as i64);
    }
}

async fn serve_connection<IO>(
    io: IO,
    peer: std::net::SocketAddr,
    open: OpenConnection,
    builder: &http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = open.app.clone();
    let io = WriteDeadline::new(io, app.body_read_timeout);
    let result = if open.over_limit {
        app.metrics.http_connections_rejected.inc();
        let service = service_fn(move |req| refuse_connection(app.clone(), req));
        let mut once = builder.clone();
        once.keep_alive(false);
        watcher
            .watch(once.serve_connection(TokioIo::new(io), service))
            .await
    } else {
        let service = service_fn(move |req| handle(app.clone(), req));
        watcher
            .watch(builder.serve_connection(TokioIo::new(io), service))
            .await
    };
    if let Err(e) = result {
        // hyper answered a request it could not parse itself (400 or 431, no body) before
        // triaged saw its path: counted here, since no source can be told.
        if e.is_parse() {
            open.app.metrics.http_parse_errors.inc();
        }
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
    drop(open);
}

/// A connection's socket that fails a write the peer has taken nothing of for `limit`
/// (`server.body_read_timeout`): a client that sends requests and never reads the answers
/// would otherwise hold its connection, and a slot of `server.max_connections`, for ever.
/// The deadline is armed only when a write finds the socket full, so answers that go out at once
/// cost no timer.
struct WriteDeadline<IO> {
    io: IO,
    limit: Duration,
    /// Armed at the first write that found the socket full; cleared by any progress.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteDeadline<IO> {
    fn new(io: IO, limit: Duration) -> WriteDeadline<IO> {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// After a write that returned `poll`: progress clears the deadline; no progress arms it,
    /// and once it has passed the write fails.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the peer read nothing of the answer for {limit:?} (server.body_read_timeout)"
                ),
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// The one answer of a connection over `server.max_connections`.
async fn refuse_connection(app: Arc<App>, req: Request<Incoming>) -> Result<Response, Infallible> {
    if let Some(source) = ingest_source(&path_segments(req.uri().path())) {
        app.metrics
            .alerts_rejected
            .with_label_values(&[source.as_str(), "too_many_connections"])
            .inc();
    }
    let mut e =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many connections").detail(format!(
            "triaged holds server.max_connections ({}) connections; retry after the given delay",
            app.max_connections
        ));
    e.retry_after = Some(1);
    let mut response = e.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(response)
}

/// A path as the segments `route` matches on: what follows the first `/`, split at each `/`,
/// trailing ones ignored (`/api/v2/alerts/` is `["api", "v2", "alerts"]`, `/` is `[]`).
fn path_segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// The source an ingest path (when POSTed) feeds: what needs the `ingest` role, and the `source`
/// of refusals.
fn ingest_source(segments: &[&str]) -> Option<Source> {
    match segments {
        ["api", "v2", "alerts"] => Some(Source::Alertmanager),
        ["api", "v1", "webhook", "alertmanager"] => Some(Source::Webhook),
        ["api", "v1", "alerts"] => Some(Source::Native),
        ["api", "v1", "events", "pagerduty"] => Some(Source::Pagerduty),
        _ => None,
    }
}

/// What a route asks of the caller; see the README's auth table.
fn access_for(method: &Method, segments: &[&str]) -> Access {
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    match segments {
        ["metrics"] => Access::Metrics,
        ["-", "healthy"] | ["-", "ready"] => Access::Health,
        ["-", "reload"] => Access::Role(Role::Admin),
        _ if post && ingest_source(segments).is_some() => Access::Role(Role::Ingest),
        ["api", "v1", "incidents", _, _] if post => Access::Role(Role::Operator),
        ["api", "v2", "silences"] if post => Access::Role(Role::Operator),
        ["api", "v2", "silence", _] if delete => Access::Role(Role::Operator),
        // Raw payloads of refused messages may hold anything.
        ["api", "v1", "dead-letters"] => Access::Role(Role::Operator),
        ["api", ..] => Access::Read,
        _ => Access::Public,
    }
}

/// The answer to a refused credential, counted.
fn denied(
    app: &App,
    denied: Denied,
    method: &Method,
    path: &str,
    headers: &hyper::HeaderMap,
) -> ApiError {
    let tried_basic = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"));
    let challenge = Some(if tried_basic {
        Challenge::BearerAndBasic
    } else {
        Challenge::Bearer
    });
    app.metrics
        .http_auth_failures
        .with_label_values(&[denied.reason()])
        .inc();
    if let Some(source) = ingest_source(&path_segments(path)) {
        let reason = match denied {
            Denied::Forbidden { .. } => "forbidden",
            _ => "unauthorized",
        };
        app.metrics
            .alerts_rejected
            .with_label_values(&[source.as_str(), reason])
            .inc();
    }
    match denied {
        Denied::Missing => {
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized").detail(
                "send a token: Authorization: Bearer <token>, or basic auth with the token's name and the token",
            );
            e.challenge = challenge;
            e
        }
        Denied::Invalid => {
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")
                .detail("the credentials match no configured token");
            e.challenge = challenge;
            e
        }
        Denied::Ambiguous => {
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")
                .detail("more than one Authorization header, which is ambiguous: send exactly one");
            e.challenge = challenge;
            e
        }
        Denied::Forbidden { name, need } => {
            tracing::info!(token = %name, method = %method, path = %path, need = need.as_str(), "token lacks the role");
            ApiError::new(StatusCode::FORBIDDEN, "forbidden").detail(format!(
                "token {name:?} lacks the role {:?} that {method} {path} needs",
                need.as_str()
            ))
        }
    }
}

/// Route one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response, Infallible> {
    if let Err(e) = check_host(&req).and_then(|()| check_transfer_coding(&req)) {
        if req.method() == Method::POST {
            if let Some(source) = ingest_source(&path_segments(req.uri().path())) {
                app.metrics
                    .alerts_rejected
                    .with_label_values(&[source.as_str(), "malformed_http"])
                    .inc();
            }
        }
        return Ok(e.into_response());
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = route(&app, req, &method, &path).await;
    Ok(result.unwrap_or_else(|e| {
        if path.starts_with("/api/v2/") {
            e.into_alertmanager_response()
        } else {
            e.into_response()
        }
    }))
}

/// An HTTP/1.1 request carries exactly one `Host` header, and a server answers 400 to one that
/// does not (RFC 9112, section 3.2); HTTP/1.0 may leave it out.
fn check_host(req: &Request<Incoming>) -> Result<(), ApiError> {
    match req.headers().get_all(hyper::header::HOST).iter().count() {
        1 => Ok(()),
        0 if req.version() < hyper::Version::HTTP_11 => Ok(()),
        0 => Err(ApiError::bad_request(
            "an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)",
        )),
        _ => Err(ApiError::bad_request(
            "a request may carry only one Host header",
        )),
    }
}

/// The only transfer coding read is `chunked`, once: a server answers 501 to one it does not
/// implement (RFC 9112, section 6.1), rather than read `gzip, chunked` as if it were `chunked`
/// (what a proxy in front reads differently is how requests are smuggled).
fn check_transfer_coding(req: &Request<Incoming>) -> Result<(), ApiError> {
    let given: Vec<&str> = req
        .headers()
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .collect();
    let mut codings = given
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(()),
        _ => Err(
            ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported transfer coding").detail(
                format!(
                    "Transfer-Encoding {:?} is not supported: send the body as is, or chunked",
                    given.join(", ")
                ),
            ),
        ),
    }
}

async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
) -> Result<Response, ApiError> {
    let segments = path_segments(path);
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_post = method == Method::POST;
    let principal = app
        .reloader
        .auth()
        .check(req.headers(), access_for(method, &segments))
        .map_err(|d| denied(app, d, method, path, req.headers()))?;
    match segments.as_slice() {
        ["api", "v2", "alerts"] if is_post => {
            ingest(app, req, Source::Alertmanager, formats::alertmanager::parse).await
        }
        ["api", "v1", "webhook", "alertmanager"] if is_post => {
            ingest(app, req, Source::Webhook, formats::webhook::parse).await
        }
        ["api", "v1", "alerts"] if is_post => {
            ingest(app, req, Source::Native, formats::native::parse).await
        }
        ["api", "v1", "events", "pagerduty"] if is_post => ingest_pagerduty(app, req).await,
        ["api", "v1", "incidents"] if is_get => crate::api::list_incidents(app, req.uri()),
        ["api", "v1", "incidents", id] if is_get => crate::api::get_incident(app, id),
        ["api", "v1", "incidents", id, action] if is_post => {
            let body = read_json_body(app, req).await?;
            crate::api::act(app, id, action, &body, principal.as_deref()).await
        }
        ["api", "v1", "alerts", fp] if is_get => crate::api::get_alert(app, fp),
        ["api", "v2", "alerts"] if is_get => crate::api::list_alerts(app, req.uri()),
        ["api", "v2", "status"] if is_get => crate::api::status(app),
        ["api", "v2", "silences"] if is_get => crate::api::list_silences(app, req.uri()),
        ["api", "v2", "silences"] if is_post => {
            let body = read_json_body(app, req).await?;
            crate::api::post_silence(app, &body).await
        }
        ["api", "v2", "silence", id] if is_get => crate::api::get_silence(app, id),
        ["api", "v2", "silence", id] if method == Method::DELETE => {
            crate::api::expire_silence(app, id).await
        }
        // No body, as Prometheus's and Alertmanager's `/-/reload` take none: one sent is not
        // read, so neither is its type checked (`curl -XPOST`, reloader sidecars; README).
        ["-", "reload"] if is_post => match app.reloader.reload().await {
            Ok(restart_required) => Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"status": "success", "restart_required": restart_required}),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "configuration reload refused; the running configuration stays",
            )
            .detail(e.to_string())),
        },
        ["api", "v1", "rules"] if is_get => crate::api::list_rules(app),
        ["api", "v1", "dead-letters"] if is_get => crate::api::list_dead_letters(app, req.uri()),
        ["api", "v1", "summary"] if is_get => crate::api::summary(app),
        // The NOC board (public: its scripts call the API with the operator's token).
        [] | ["incident", _] | ["assets", _] if is_get => {
            crate::web::respond(&segments, req.uri(), req.headers())
        }
        ["metrics"] if is_get => Ok(text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.metrics.render(),
        )),
        ["-", "healthy"] if is_get => Ok(text_response(
            StatusCode::OK,
            "text/plain",
            "triaged is healthy\n",
        )),
        ["-", "ready"] if is_get => {
            let kafka_ok = !app.kafka_enabled || app.metrics.kafka_connected.get() == 1;
            let why_not = match app.store.down_reason() {
                Some(reason) => Some(format!("store not writable: {reason}")),
                None if !app.ready.load(Ordering::SeqCst) => {
                    Some("the writer is not running".to_string())
                }
                None if !kafka_ok => Some("no connection to a Kafka broker".to_string()),
                None => None,
            };
            match why_not {
                None => Ok(text_response(
                    StatusCode::OK,
                    "text/plain",
                    "triaged is ready\n",
                )),
                Some(why) => Ok(text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("triaged is not ready: {why}\n"),
                )),
            }
        }
        other => {
            let allow = match other {
                ["api", "v2", "silences"] | ["api", "v2", "alerts"] => Some("GET, HEAD, POST"),
                ["api", "v2", "silence", _] => Some("GET, HEAD, DELETE"),
                ["api", "v1", "webhook", "alertmanager"]
                | ["api", "v1", "alerts"]
                | ["api", "v1", "events", "pagerduty"]
                | ["api", "v1", "incidents", _, _] => Some("POST"),
                ["api", "v1", "incidents"]
                | ["api", "v1", "incidents", _]
                | ["api", "v1", "alerts", _]
                | ["metrics"]
                | ["-", "healthy"]
                | ["-", "ready"]
                | ["api", "v1", "rules"]
                | ["api", "v1", "dead-letters"]
                | ["api", "v2", "status"]
                | ["api", "v1", "summary"]
                | []
                | ["incident", _]
                | ["assets", _] => Some("GET, HEAD"),
                ["-", "reload"] => Some("POST"),
                _ => None,
            };
            match allow {
                Some(allow) => {
                    let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                        .detail(format!("{method} {path}: use {allow}"));
                    e.allow = Some(allow);
                    Err(e)
                }
                None => Err(ApiError::not_found(format!("no route {method} {path}"))),
            }
        }
    }
}

/// Refuse bodies that are not JSON, or come compressed (no content coding is read, and a
/// compressed body would otherwise be read as JSON and refused as malformed); a missing
/// Content-Type is taken as JSON.
fn check_content_type(req: &Request<Incoming>) -> Result<(), ApiError> {
    for coding in req.headers().get_all(hyper::header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("(not text)").trim();
        if !coding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
            )
            .detail(format!(
                "Content-Encoding {coding:?} is not accepted: send the body uncompressed"
            ))
            .rejects("unsupported_media_type"));
        }
    }
    let Some(value) = req.headers().get(CONTENT_TYPE) else {
        return Ok(());
    };
    if value.to_str().is_ok_and(is_json_media_type) {
        return Ok(());
    }
    Err(
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported media type")
            .detail(format!(
                "Content-Type {:?} is not accepted: send application/json",
                value.to_str().unwrap_or("(not text)")
            ))
            .rejects("unsupported_media_type"),
    )
}

/// `application/json` or a `+json` type, in any case, with any parameters.
fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let suffix = media
        .len()
        .checked_sub("+json".len())
        .and_then(|at| media.get(at..));
    media.eq_ignore_ascii_case("application/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

/// Read the whole body, refusing more than `max` bytes (early, from Content-Length, when given).
async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
            .detail(format!(
                "the body exceeds server.max_body_bytes ({max} bytes)"
            ))
            .rejects("body_too_large")
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let collect = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request timeout")
                .detail(format!(
                    "the body did not arrive within server.body_read_timeout ({timeout:?})"
                ))
                .rejects("body_timeout"),
        ),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(
            ApiError::bad_request(format!("could not read the body: {e}"))
                .rejects("malformed_http"),
        ),
    }
}

async fn read_json_body(app: &App, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    check_content_type(&req)?;
    read_body(req, app.max_body_bytes, app.body_read_timeout).await
}

/// Reserve room for this request's body among all the request bytes in flight (its declared
/// length, or the largest allowed body when it declares none), or refuse it at once: under any
/// offered load, memory stays bounded. Held until the request is answered.
fn admit(app: &App, req: &Request<Incoming>) -> Result<Room, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(app.max_body_bytes)
        .min(app.max_body_bytes);
    let permits = u32::try_from(kib(declared)).unwrap_or(u32::MAX);
    let permit = app
        .inflight
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| {
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
                .detail("too many request bytes in flight (server.max_inflight_bytes); retry after the given delay")
                .rejects("overloaded");
            e.retry_after = Some(1);
            e
        })?;
    let bytes = i64::from(permits) * 1024;
    app.metrics.http_inflight_bytes.add(bytes);
    Ok(Room {
        _permit: permit,
        bytes,
        metrics: app.metrics.clone(),
    })
}

/// A request's share of `server.max_inflight_bytes`, shown in `triaged_http_inflight_bytes`
/// while held; given back when dropped.
struct Room {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    metrics: Arc<Metrics>,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.metrics.http_inflight_bytes.sub(self.bytes);
    }
}

/// Answer an ingest request: parse, queue, wait for durability, report. Refusals are counted.
async fn ingest(
    app: &App,
    req: Request<Incoming>,
    source: Source,
    parse: fn(&[u8]) -> Result<Vec<Alert>, ParseError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = async {
        let _room = admit(app, &req)?;
        let body = read_json_body(app, req).await?;
        let alerts = parse(&body)?;
        drop(body);
        app.limits.check(&alerts)?;
        crate::sources::formats::check_starts_before_expiry(&alerts, chrono::Utc::now(), || {
            app.reloader.current().dedup.resolve_timeout.0
        })?;
        submit_alerts(app, source, alerts).await
    }
    .await;
    finish_ingest(
        app,
        source,
        started,
        result.map(|summary| accepted_answer(&summary)),
    )
}

/// What an accepted ingest request is answered: `{"status":"success"}` and the summary's fields,
/// as JSON. Written out as text, since every field is a number or an incident id (`INC-<n>`)
/// and none needs escaping: serde_json escaped each of the nine keys on every request. The
/// pattern below stops compiling when the summary gains a field.
fn accepted_answer(summary: &IngestSummary) -> Response {
    let IngestSummary {
        received,
        accepted,
        deduplicated,
        dropped,
        auto_handled,
        silenced,
        resolved,
        incidents,
        decisions: _,
    } = summary;
    let mut body = Vec::with_capacity(192 + 16 * incidents.len());
    body.extend_from_slice(br#"{"status":"success""#);
    let mut number = itoa::Buffer::new();
    for (key, n) in [
        (&br#","received":"#[..], received),
        (br#","accepted":"#, accepted),
        (br#","deduplicated":"#, deduplicated),
        (br#","dropped":"#, dropped),
        (br#","auto_handled":"#, auto_handled),
        (br#","silenced":"#, silenced),
        (br#","resolved":"#, resolved),
    ] {
        body.extend_from_slice(key);
        body.extend_from_slice(number.format(*n).as_bytes());
    }
    body.extend_from_slice(br#","incidents":["#);
    for (i, id) in incidents.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // An id's text is its `Display`, which holds no character JSON escapes.
        let _ = write!(body, "\"{id}\"");
    }
    body.extend_from_slice(b"]}");
    text_response(StatusCode::OK, "application/json", body)
}

async fn submit_alerts(
    app: &App,
    source: Source,
    alerts: Vec<Alert>,
) -> Result<IngestSummary, ApiError> {
    app.metrics
        .source(source)
        .received
        .inc_by(alerts.len() as u64);
    let outcome = app
        .queue
        .submit(|reply| Command::Ingest {
            source,
            alerts,
            reply,
        })
        .await??;
    match outcome {
        Outcome::Ingested(summary) => Ok(summary),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected outcome of an ingest command",
        )),
    }
}

fn finish_ingest(
    app: &App,
    source: Source,
    started: Instant,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match &result {
        Ok(_) => app
            .metrics
            .source(source)
            .ingest_duration
            .observe(started.elapsed().as_secs_f64()),
        Err(e) => {
            if let Some(reason) = e.reject_reason {
                app.metrics
                    .alerts_rejected
                    .with_label_values(&[source.as_str(), reason])
                    .inc();
            }
        }
    }
    result
}

/// PagerDuty Events API v2: trigger and resolve are alerts; acknowledge acknowledges the
/// incident the dedup key's alert belongs to. Answered 202 with the `dedup_key`, as PagerDuty does.
async fn ingest_pagerduty(app: &App, req: Request<Incoming>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let source = Source::Pagerduty;
    let result = async {
        let _room = admit(app, &req)?;
        let body = read_json_body(app, req).await?;
        let event = pagerduty::parse(&body, chrono::Utc::now())?;
        app.limits.check(std::slice::from_ref(&event.alert))?;
        match event.action {
            pagerduty::Action::Trigger | pagerduty::Action::Resolve => {
                submit_alerts(app, source, vec![event.alert]).await?;
            }
            pagerduty::Action::Acknowledge => {
                let fingerprint = event.fingerprint();
                app.queue
                    .submit(|reply| Command::AcknowledgeAlert {
                        fingerprint,
                        actor: pagerduty::ACTOR.into(),
                        reply,
                    })
                    .await??;
            }
        }
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": event.dedup_key,
            }),
        ))
    }
    .await;
    finish_ingest(app, source, started, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::{channel, Policy, SystemClock};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn json_media_types_are_recognised_in_any_case_with_parameters() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/vnd.api+json",
            "application/merge-patch+JSON",
        ] {
            assert!(is_json_media_type(json), "{json:?} is JSON");
        }
        for other in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "json",
            "+jso",
            "application/json-seq",
            "text/json; x=+json",
        ] {
            assert!(!is_json_media_type(other), "{other:?} is not JSON");
        }
    }

    #[test]
    fn a_path_splits_into_the_segments_routes_match() {
        for (path, segments) in [
            ("/api/v2/alerts", &["api", "v2", "alerts"][..]),
            ("/api/v2/alerts/", &["api", "v2", "alerts"]),
            ("/api/v2/alerts//", &["api", "v2", "alerts"]),
            ("/", &[]),
            ("", &[]),
            ("*", &[]),
            ("//x", &["", "x"]),
            ("/a//b", &["a", "", "b"]),
            (
                "/a/b/c/d/e/f/g/h",
                &["a", "b", "c", "d", "e", "f", "g", "h"],
            ),
        ] {
            assert_eq!(path_segments(path).as_slice(), segments, "{path:?}");
        }
    }

    #[tokio::test]
    async fn the_ingest_answer_is_the_whole_summary_after_a_status() {
        use crate::incident::IncidentId;
        for incidents in [
            vec![],
            vec![IncidentId(7)],
            vec![IncidentId(12), IncidentId(13)],
        ] {
            let summary = IngestSummary {
                received: 9,
                accepted: 8,
                deduplicated: 7,
                dropped: 6,
                auto_handled: 5,
                silenced: 4,
                resolved: 3,
                incidents,
                decisions: Vec::new(),
            };
            let response = accepted_answer(&summary);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                text.starts_with(r#"{"status":"success","received":9,"#),
                "{text}"
            );
            // What serde would have written, with the status first.
            let mut expected = serde_json::to_value(&summary).unwrap();
            expected["status"] = "success".into();
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer, expected, "{text}");
        }
    }

    async fn post(addr: std::net::SocketAddr, body: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    /// With the writer stalled and its queue full, ingestion is refused at once with 503 and
    /// Retry-After, and counted, rather than buffered without bound.
    #[tokio::test]
    async fn a_full_queue_answers_503_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let policy = Policy::from_config(&Config::default()).unwrap();
        // The writer is built but never run: the queue's one slot stays taken.
        let (queue, _writer) = channel(
            1,
            store.clone(),
            metrics.clone(),
            policy,
            Arc::new(SystemClock),
        )
        .unwrap();
        let reloader = Arc::new(crate::reload::Reloader::new(
            Default::default(),
            queue.clone(),
            metrics.clone(),
            Config::default(),
            crate::sources::auth::Auth::off(),
            None,
        ));
        let app = Arc::new(App::new(
            queue,
            store,
            metrics.clone(),
            Arc::new(AtomicBool::new(true)),
            reloader,
            false,
            &Config::default().server,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            app,
            Duration::from_secs(5),
            Duration::from_secs(1),
            std::future::pending(),
        ));
        let body = r#"[{"labels":{"alertname":"A"}}]"#;
        let first = tokio::spawn(post(addr, body));
        while metrics.queue_depth.get() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let answer = post(addr, body).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        assert!(answer.contains("writer queue is full"), "{answer}");
        assert_eq!(
            metrics
                .alerts_rejected
                .with_label_values(&["alertmanager", "overloaded"])
                .get(),
            1
        );
        assert!(
            !first.is_finished(),
            "the queued request waits for its durable answer"
        );
        first.abort();
    }
}

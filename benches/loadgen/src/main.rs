//! Closed-loop load generator for Alertmanager API v2 ingestion (`POST /api/v2/alerts`).
//!
//! It posts JSON arrays of `--batch` alerts, shaped as Prometheus sends them, over `--connections`
//! keep-alive HTTP/1.1 connections; each connection sends its next request as soon as the previous
//! one was answered. Request bodies are generated before the clock starts, so the generator spends
//! its time on HTTP only. Only loopback targets are accepted, and the run stops by itself after
//! `--warmup` + `--duration`.
//!
//! The last line printed is machine readable:
//! `LOADGEN aps=.. rps=.. p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=.. non2xx=.. errors=..`

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod raw;

/// How long after the end of the measured window requests still in flight may finish.
const END_GRACE: Duration = Duration::from_secs(2);
/// Largest pool accepted: the pre-generated bodies hold every label set once (~330 bytes each).
const MAX_POOL: usize = 1_000_000;
/// Longest run accepted (warmup + duration).
const MAX_RUN: Duration = Duration::from_secs(3600);
/// How much of a refusal's body is kept as its sample.
const SAMPLE_BYTES: usize = 300;
/// The request's `Content-Type` and `User-Agent`, with either engine.
const CONTENT_TYPE_JSON: &str = "application/json";
const USER_AGENT_VALUE: &str = "triaged-loadgen/0.1";

/// Add the start of `data` to `sample`, up to `limit` bytes in all.
fn keep_sample(sample: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(sample.len()).min(data.len());
    sample.extend_from_slice(&data[..room]);
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Closed-loop load generator posting Alertmanager API v2 alerts to a loopback HTTP endpoint"
)]
struct Args {
    /// Target, e.g. http://127.0.0.1:9595/api/v2/alerts (loopback hosts only: 127.0.0.0/8, ::1, localhost)
    #[arg(long)]
    url: String,
    /// Alerts per request (the JSON array's length)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Number of distinct label sets the alerts are drawn from; 0 = every alert new (see --max-unique)
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// Keep-alive HTTP/1.1 connections, each with one request in flight
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Measured time, e.g. 10s, 500ms, 2m
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time sent before measuring starts (not counted)
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Worker threads of the generator's runtime (it shares the machine with the server under test)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// A request not answered within this time counts as an error (and its connection is replaced)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// With --pool 0: how many unique alerts to pre-generate; past that the bodies repeat
    #[arg(long, default_value_t = 200_000)]
    max_unique: usize,
    /// HTTP client: hyper's, or `raw` (requests built before the clock starts and written with
    /// one write, answers parsed with httparse: less CPU a request, see src/raw.rs)
    #[arg(long, value_enum, default_value_t = Engine::Hyper)]
    engine: Engine,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Hyper,
    Raw,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Where to send: the loopback socket address, the Host header and the path.
struct Target {
    addr: SocketAddr,
    host_header: String,
    path: String,
}

async fn resolve_target(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad --url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("only http:// is supported, not {other}://")),
        None => {
            return Err(format!(
                "--url needs a scheme: http://127.0.0.1:PORT/... (got {url:?})"
            ))
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url has no host: {url:?}"))?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if bare.eq_ignore_ascii_case("localhost") {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", port))
            .await
            .map_err(|e| format!("cannot resolve localhost: {e}"))?
            .collect();
        // Only loopback addresses, prefer IPv4 as most servers listen there.
        let mut lo: Vec<SocketAddr> = addrs.into_iter().filter(|a| a.ip().is_loopback()).collect();
        lo.sort_by_key(|a| !a.is_ipv4());
        *lo.first().ok_or_else(|| {
            "localhost does not resolve to a loopback address; refusing".to_string()
        })?
    } else {
        let ip: IpAddr = bare.parse().map_err(|_| {
            format!("refusing host {host:?}: only loopback IP addresses (127.0.0.0/8, ::1) or localhost are allowed")
        })?;
        if !ip.is_loopback() {
            return Err(format!(
                "refusing non-loopback target {ip}: this generator only sends to 127.0.0.0/8, ::1 or localhost"
            ));
        }
        SocketAddr::new(ip, port)
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Ok(Target {
        addr,
        host_header,
        path,
    })
}

/// RFC 3339 UTC with milliseconds, as Prometheus writes times.
fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let millis = d.subsec_millis();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// One alert of label set `i`: 20 alert names × 50 services (so 1,000 groups of alertname+service),
/// one instance per label set, severity tied to the alert name (critical 20%, warning 50%, info 30%).
fn alert_json(i: usize, nonce: Option<u64>, starts: &str, ends: &str) -> serde_json::Value {
    let rule = i % 20;
    let alertname = format!("LoadgenAlert{rule:02}");
    let service = format!("svc-{:03}", (i / 20) % 50);
    let instance = match nonce {
        Some(n) => format!("host-{n:x}-{i:07}:9100"),
        None => format!("host-{i:07}:9100"),
    };
    let severity = match rule % 10 {
        0 | 1 => "critical",
        2..=6 => "warning",
        _ => "info",
    };
    serde_json::json!({
        "labels": {
            "alertname": alertname,
            "service": service,
            "instance": instance,
            "severity": severity,
        },
        "annotations": {
            "summary": format!("{alertname} firing on {instance} ({service})"),
        },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": format!("http://prometheus.loadgen:9090/graph?g0.expr=loadgen_rule_{rule:02}%3E0&g0.tab=1"),
    })
}

struct Bodies {
    bodies: Vec<Bytes>,
    distinct: usize,
    bytes: usize,
    /// Alerts that can be sent before a pool-0 run starts repeating.
    unique_capacity: Option<u64>,
}

fn generate_bodies(batch: usize, pool: usize, max_unique: usize) -> Bodies {
    let now = SystemTime::now();
    let starts = rfc3339_millis(now);
    let ends = rfc3339_millis(now + Duration::from_secs(300));
    let (n_labelsets, nonce) = if pool == 0 {
        // Every alert new: a nonce makes a second run against the same server new too.
        let nonce = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            & 0xffff_ffff;
        (max_unique.max(batch), Some(nonce))
    } else {
        (pool, None)
    };
    let n_bodies = n_labelsets.div_ceil(batch);
    let mut bodies = Vec::with_capacity(n_bodies);
    let mut bytes = 0;
    for b in 0..n_bodies {
        let alerts: Vec<serde_json::Value> = (0..batch)
            .map(|m| alert_json((b * batch + m) % n_labelsets, nonce, &starts, &ends))
            .collect();
        let body = serde_json::to_vec(&alerts).expect("serialising generated alerts");
        bytes += body.len();
        bodies.push(Bytes::from(body));
    }
    Bodies {
        bodies,
        distinct: n_labelsets,
        bytes,
        unique_capacity: nonce.map(|_| (n_bodies * batch) as u64),
    }
}

struct Shared {
    target: Target,
    /// The request's URI and headers, built once: a request clones them (reference counts and
    /// one small copy) instead of parsing and checking them again.
    uri: Uri,
    headers: HeaderMap,
    engine: Engine,
    /// With `--engine raw`: each body with its request head, ready to write.
    raw: Vec<Vec<u8>>,
    bodies: Vec<Bytes>,
    next_body: AtomicU64,
    measure_start: Instant,
    end: Instant,
    timeout: Duration,
}

#[derive(Default)]
struct Stats {
    /// Responses (any status) completed inside the measured window.
    responses: u64,
    /// 2xx responses completed inside the measured window.
    ok: u64,
    by_status: BTreeMap<u16, u64>,
    status_samples: BTreeMap<u16, String>,
    errors: BTreeMap<&'static str, u64>,
    error_samples: BTreeMap<&'static str, String>,
    /// Latency in µs of requests completed in the window, plus requests started in it that
    /// finished during the end grace.
    lat_us: Vec<u32>,
    /// Requests started in the window that finished after it (latency kept, not counted in rates).
    late: u64,
    /// Requests still unanswered when the grace ran out.
    unfinished: u64,
    /// New connections opened after the first one (server closed, error, timeout).
    reconnects: u64,
    /// Requests sent over the whole run, warmup included.
    sent_total: u64,
}

impl Stats {
    fn error(&mut self, kind: &'static str, detail: impl std::fmt::Display, in_window: bool) {
        if in_window {
            *self.errors.entry(kind).or_default() += 1;
        }
        self.error_samples
            .entry(kind)
            .or_insert_with(|| detail.to_string());
    }

    fn merge(&mut self, o: Stats) {
        self.responses += o.responses;
        self.ok += o.ok;
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in o.status_samples {
            self.status_samples.entry(k).or_insert(v);
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.error_samples {
            self.error_samples.entry(k).or_insert(v);
        }
        self.lat_us.extend(o.lat_us);
        self.late += o.late;
        self.unfinished += o.unfinished;
        self.reconnects += o.reconnects;
        self.sent_total += o.sent_total;
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

/// A connection as the engine in use keeps it.
enum Link {
    Hyper(Sender),
    Raw(raw::Conn),
}

/// An answer: status, whether the connection closes after it, a refusal's first bytes.
type Answered = (u16, bool, Vec<u8>);

async fn connect(shared: &Shared) -> Result<Link, String> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(shared.target.addr),
    )
    .await
    .map_err(|_| "connect timed out after 5s".to_string())?
    .map_err(|e| format!("connect {}: {e}", shared.target.addr))?;
    let _ = stream.set_nodelay(true);
    if shared.engine == Engine::Raw {
        return Ok(Link::Raw(raw::Conn::new(stream)));
    }
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Link::Hyper(sender))
}

/// One request over hyper's client.
async fn hyper_exchange(
    s: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<Answered, hyper::Error> {
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let close = resp
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    // The body is read to its end (the connection is reused); only a refusal's is kept, for its
    // sample.
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if !status.is_success() {
                keep_sample(&mut kept, data, SAMPLE_BYTES);
            }
        }
    }
    Ok((status.as_u16(), close, kept))
}

fn classify(e: &hyper::Error) -> &'static str {
    if e.is_incomplete_message() {
        "closed_by_server"
    } else if e.is_canceled() || e.is_closed() {
        "connection_closed"
    } else if e.is_parse() || e.is_parse_status() {
        "bad_response"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "io"
    }
}

async fn connection_loop(shared: Arc<Shared>) -> Stats {
    let mut st = Stats::default();
    let mut link: Option<Link> = None;
    let mut connected_once = false;
    let hard_end = shared.end + END_GRACE;
    let timer = tokio::time::sleep_until(hard_end.into());
    tokio::pin!(timer);
    loop {
        let now = Instant::now();
        if now >= shared.end {
            break;
        }
        let in_window = now >= shared.measure_start;
        let l = match link.as_mut() {
            Some(l) => l,
            None => match connect(&shared).await {
                Ok(l) => {
                    if connected_once {
                        st.reconnects += 1;
                    }
                    connected_once = true;
                    link.insert(l)
                }
                Err(e) => {
                    st.error("connect", e, in_window);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The server may have closed the idle connection: open a new one without counting an error.
        if let Link::Hyper(s) = l {
            if s.ready().await.is_err() {
                link = None;
                continue;
            }
        }
        let idx = shared.next_body.fetch_add(1, Ordering::Relaxed) as usize % shared.bodies.len();
        st.sent_total += 1;
        let t0 = Instant::now();
        let started_in_window = t0 >= shared.measure_start;
        let limit = (t0 + shared.timeout).min(hard_end);
        let exchange = async {
            match l {
                Link::Hyper(s) => {
                    let mut req = Request::new(Full::new(shared.bodies[idx].clone()));
                    *req.method_mut() = Method::POST;
                    *req.uri_mut() = shared.uri.clone();
                    *req.headers_mut() = shared.headers.clone();
                    hyper_exchange(s, req)
                        .await
                        .map_err(|e| (classify(&e), e.to_string()))
                }
                Link::Raw(c) => c
                    .exchange(&shared.raw[idx], SAMPLE_BYTES)
                    .await
                    .map(|a| (a.status, a.close, a.body))
                    .map_err(|f| (f.kind, f.detail)),
            }
        };
        // One timer per connection, moved for each request (moving it later takes no lock).
        timer.as_mut().reset(limit.into());
        let answered = tokio::select! {
            biased;
            r = exchange => Ok(r),
            () = timer.as_mut() => Err(()),
        };
        match answered {
            Ok(Ok((status, close, body))) => {
                let t1 = Instant::now();
                let lat = (t1 - t0).as_micros().min(u128::from(u32::MAX)) as u32;
                let done_in_window = t1 >= shared.measure_start && t1 <= shared.end;
                if done_in_window {
                    st.responses += 1;
                    if (200..300).contains(&status) {
                        st.ok += 1;
                    } else {
                        *st.by_status.entry(status).or_default() += 1;
                        st.status_samples.entry(status).or_insert_with(|| {
                            let text = String::from_utf8_lossy(&body).into_owned();
                            text.replace('\n', " ")
                        });
                    }
                    st.lat_us.push(lat);
                } else if t1 > shared.end && started_in_window {
                    st.late += 1;
                    st.lat_us.push(lat);
                }
                if close {
                    link = None;
                }
            }
            Ok(Err((kind, detail))) => {
                st.error(kind, detail, started_in_window);
                link = None;
            }
            Err(_) => {
                if Instant::now() >= hard_end && t0 + shared.timeout > hard_end {
                    st.unfinished += 1;
                } else {
                    st.error(
                        "timeout",
                        format!("no answer within {:?}", shared.timeout),
                        started_in_window,
                    );
                }
                link = None;
            }
        }
    }
    st
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[idx]) / 1000.0
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.duration.is_zero() {
        eprintln!("loadgen: --duration must be more than 0");
        return ExitCode::from(2);
    }
    if args.duration + args.warmup > MAX_RUN {
        eprintln!(
            "loadgen: --warmup + --duration is limited to {}s",
            MAX_RUN.as_secs()
        );
        return ExitCode::from(2);
    }
    if args.pool > MAX_POOL || (args.pool == 0 && args.max_unique > MAX_POOL) {
        eprintln!("loadgen: --pool and --max-unique are limited to {MAX_POOL} label sets (memory)");
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let target = match resolve_target(&args.url).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let batch = args.batch as usize;
    let gen_start = Instant::now();
    let bodies = generate_bodies(batch, args.pool, args.max_unique);
    println!(
        "loadgen: POST http://{}{} (connecting to {}) batch={} pool={} connections={} duration={} warmup={} threads={} engine={}",
        target.host_header,
        target.path,
        target.addr,
        batch,
        args.pool,
        args.connections,
        fmt_duration(args.duration),
        fmt_duration(args.warmup),
        args.threads,
        args.engine
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    );
    println!(
        "bodies:       {} pre-generated in {:.2}s, {} distinct label sets{}, {:.1} MB",
        bodies.bodies.len(),
        gen_start.elapsed().as_secs_f64(),
        bodies.distinct,
        if args.pool == 0 {
            " (pool 0: all new)"
        } else {
            ""
        },
        bodies.bytes as f64 / 1e6
    );

    let start = Instant::now();
    let measure_start = start + args.warmup;
    let end = measure_start + args.duration;
    let uri: Uri = match target.path.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("loadgen: bad path in --url: {e}");
            return ExitCode::from(2);
        }
    };
    let mut headers = HeaderMap::with_capacity(4);
    match HeaderValue::from_str(&target.host_header) {
        Ok(host) => headers.insert(HOST, host),
        Err(e) => {
            eprintln!("loadgen: bad host in --url: {e}");
            return ExitCode::from(2);
        }
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let raw = match args.engine {
        Engine::Raw => bodies
            .bodies
            .iter()
            .map(|b| raw::request(&target.path, &target.host_header, b))
            .collect(),
        Engine::Hyper => Vec::new(),
    };
    let shared = Arc::new(Shared {
        target,
        uri,
        headers,
        engine: args.engine,
        raw,
        bodies: bodies.bodies,
        next_body: AtomicU64::new(0),
        measure_start,
        end,
        timeout: args.timeout,
    });
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(connection_loop(shared.clone())))
        .collect();
    let mut st = Stats::default();
    for t in tasks {
        // Every loop ends by `end + END_GRACE`; the extra margin only guards against a bug.
        match tokio::time::timeout_at((end + END_GRACE + Duration::from_secs(5)).into(), t).await {
            Ok(Ok(s)) => st.merge(s),
            Ok(Err(e)) => eprintln!("loadgen: a connection task failed: {e}"),
            Err(_) => {
                eprintln!("loadgen: a connection task did not stop in time");
                st.unfinished += 1;
            }
        }
    }

    let secs = args.duration.as_secs_f64();
    let non2xx: u64 = st.by_status.values().sum();
    let errors: u64 = st.errors.values().sum();
    let aps = (st.ok * batch as u64) as f64 / secs;
    let rps = st.responses as f64 / secs;
    st.lat_us.sort_unstable();
    let (p50, p90, p99, p999) = (
        percentile(&st.lat_us, 50.0),
        percentile(&st.lat_us, 90.0),
        percentile(&st.lat_us, 99.0),
        percentile(&st.lat_us, 99.9),
    );
    let max = st.lat_us.last().map_or(0.0, |&v| f64::from(v) / 1000.0);

    println!(
        "requests:     {} answered in the {:.1}s window ({:.1}/s), {} 2xx; {} sent in all incl. warmup",
        st.responses, secs, rps, st.ok, st.sent_total
    );
    println!("alerts/s:     {aps:.1} accepted (2xx x batch {batch})");
    let statuses: Vec<String> = st
        .by_status
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "non-2xx:      {non2xx}{}",
        if statuses.is_empty() {
            String::new()
        } else {
            format!("  [{}]", statuses.join(", "))
        }
    );
    for (code, sample) in &st.status_samples {
        println!("  first {code} body: {sample}");
    }
    let kinds: Vec<String> = st.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "errors:       {errors}{}",
        if kinds.is_empty() {
            String::new()
        } else {
            format!("  [{}]", kinds.join(", "))
        }
    );
    for (kind, sample) in &st.error_samples {
        println!("  first {kind} error: {sample}");
    }
    println!(
        "connections:  {} reconnects; {} answered after the window (latency kept), {} unanswered at the end",
        st.reconnects, st.late, st.unfinished
    );
    println!(
        "latency ms:   p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}  ({} samples)",
        st.lat_us.len()
    );
    if let Some(cap) = bodies.unique_capacity {
        let sent_alerts = st.sent_total * batch as u64;
        if sent_alerts > cap {
            println!(
                "note:         pool 0 sent {sent_alerts} alerts but only {cap} were pre-generated unique; the rest repeated (raise --max-unique)"
            );
        }
    }
    println!(
        "LOADGEN aps={aps:.1} rps={rps:.1} p50_ms={p50:.3} p90_ms={p90:.3} p99_ms={p99:.3} p999_ms={p999:.3} max_ms={max:.3} non2xx={non2xx} errors={errors}"
    );
    if st.responses == 0 {
        eprintln!("loadgen: no request was answered in the measured window");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

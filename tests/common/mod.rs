//! End-to-end harness: spawns the real `triaged` binary on an ephemeral port in its own temporary
//! directory, talks to it over plain HTTP/1.1 on `std::net::TcpStream`, and reads its metrics.
//!
//! Every test binary compiles this module, and each uses only part of it.
#![allow(dead_code)]

pub mod receiver;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a daemon gets to announce its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM.
const TERM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline of [`wait_until`] / [`poll_until`].
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Socket read/write timeout of one HTTP exchange.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[log]` section every test config needs: the harness finds the listening address in the
/// JSON log lines.
pub const LOG_JSON: &str = "[log]\nformat = \"json\"\nlevel = \"info\"\n";

/// A test config: the JSON log section followed by `rest` (more TOML tables).
pub fn config(rest: &str) -> String {
    format!("{LOG_JSON}\n{rest}\n")
}

/// A running (or stopped) `triaged` child process with its own temporary directory.
pub struct Daemon {
    child: Child,
    /// Where the daemon listens, as `ip:port`.
    pub addr: String,
    /// Every stderr line of every run of this daemon, in order.
    stderr: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    data_dir: PathBuf,
    /// Extra environment variables of every run.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Write `config_toml` to `<tmp>/triaged.toml` and start the daemon on `127.0.0.1:0`.
    pub fn start(config_toml: &str) -> Daemon {
        Daemon::start_full(config_toml, None, &[])
    }

    /// [`Daemon::start`], with extra environment variables (for this run and every restart).
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(config_toml, None, env)
    }

    /// Like [`Daemon::start`], with the store in `data_dir` (e.g. on a file system the test
    /// mounted) instead of `<tmp>/data`.
    pub fn start_in(config_toml: &str, data_dir: Option<&Path>) -> Daemon {
        Daemon::start_full(config_toml, data_dir, &[])
    }

    fn start_full(config_toml: &str, data_dir: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("triaged-e2e-")
            .tempdir()
            .expect("create tempdir");
        let config_path = dir.path().join("triaged.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        let data_dir = data_dir.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr) = spawn(&config_path, &data_dir, &env, &stderr);
        Daemon {
            child,
            addr,
            stderr,
            dir,
            config_path,
            data_dir,
            env,
        }
    }

    /// Start a daemon with [`config`]`(rest)`.
    pub fn with(rest: &str) -> Daemon {
        Daemon::start(&config(rest))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the current child process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Start the daemon again on the same directory and config (after `kill9` or `terminate`). The
    /// new process listens on a new address.
    pub fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "restart() of a daemon that is still running (pid {})",
            self.child.id()
        );
        // The old run's reader may still be taking its last lines ("stopped" ...): the marker
        // goes after them, so that what follows it is the new run's alone.
        let until = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < until {
            thread::sleep(POLL_INTERVAL);
        }
        self.stderr
            .lock()
            .unwrap()
            .push("----- triaged-e2e: restart -----".to_string());
        let (child, addr) = spawn(&self.config_path, &self.data_dir, &self.env, &self.stderr);
        self.child = child;
        self.addr = addr;
    }

    /// SIGKILL (that is what `Child::kill` sends on Unix) and reap.
    pub fn kill9(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        self.child.wait().expect("wait for killed daemon");
    }

    /// SIGTERM, then wait up to 30 s for the exit. Panics (after SIGKILL) if the daemon does not
    /// exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// SIGINT, then wait like [`Daemon::terminate`].
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal("INT")
    }

    /// Send a signal (`"HUP"`, `"TERM"` ...) and return at once.
    pub fn send_signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {pid} failed: {st}");
    }

    fn signal(&mut self, sig: &str) -> ExitStatus {
        self.send_signal(sig);
        let deadline = Instant::now() + TERM_TIMEOUT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => return status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "triaged did not exit within {TERM_TIMEOUT:?} of SIG{sig}; stderr:\n{}",
                        self.stderr_text()
                    );
                }
                None => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// All stderr lines captured so far (all runs), joined with newlines.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    // ---- HTTP shortcuts against this daemon ------------------------------------------------

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &[], b"")
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        get_json(&self.addr, path)
    }

    pub fn post_json(&self, path: &str, body: impl AsBody) -> Response {
        post_json(&self.addr, path, body)
    }

    pub fn metrics(&self) -> String {
        metrics(&self.addr)
    }

    /// A metric sample, 0 when absent (counter vectors show a label set only once touched).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels).unwrap_or(0.0)
    }

    /// GET /api/v1/incidents/{id}, asserting 200.
    pub fn incident(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/v1/incidents/{id}"));
        assert_eq!(status, 200, "GET /api/v1/incidents/{id}: {body}");
        body
    }

    /// GET /api/v1/alerts/{fp}: (status, body).
    pub fn alert(&self, fingerprint: &str) -> (u16, Value) {
        self.get_json(&format!("/api/v1/alerts/{fingerprint}"))
    }

    /// Every incident matching `query` (e.g. "state=open&tier=L3", or ""), following the cursor.
    pub fn all_incidents(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = String::from(query);
            if let Some(c) = &cursor {
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str("cursor=");
                q.push_str(c);
            }
            let path = if q.is_empty() {
                "/api/v1/incidents".to_string()
            } else {
                format!("/api/v1/incidents?{q}")
            };
            let (status, body) = self.get_json(&path);
            assert_eq!(status, 200, "GET {path}: {body}");
            let page = body["incidents"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: no incidents array: {body}"));
            out.extend(page.iter().cloned());
            match &body["next_cursor"] {
                Value::Null => return out,
                Value::String(c) => cursor = Some(c.clone()),
                other => panic!("GET {path}: next_cursor is neither null nor a string: {other}"),
            }
        }
        panic!("GET /api/v1/incidents?{query}: the cursor never ends");
    }

    /// POST an incident action (`ack`, `resolve`, `escalate`, `assign`).
    pub fn action(&self, id: &str, action: &str, body: Value) -> Response {
        self.post_json(&format!("/api/v1/incidents/{id}/{action}"), &body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "----- triaged stderr ({}) -----\n{}\n----- end of triaged stderr -----",
                self.dir.path().display(),
                self.stderr_text()
            );
        }
    }
}

/// Spawn one daemon process and wait for its "listening" log line.
fn spawn(
    config: &Path,
    data_dir: &Path,
    env: &[(String, String)],
    lines: &Arc<Mutex<Vec<String>>>,
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_triaged"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("RUST_LOG")
        // Under `systemd-run` or a notify-type unit these would leak in from the test runner.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triaged");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let sink = Arc::clone(lines);
    thread::spawn(move || {
        // Keep draining until EOF, whatever happens, so the daemon never blocks on a full pipe.
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                    sink.lock().unwrap().push(line);
                }
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(addr) => return (child, addr),
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // Let the reader thread reach EOF (it drops its handle then) so the panic shows the
            // whole stderr; bounded in case a grandchild keeps the pipe open.
            let until = Instant::now() + Duration::from_secs(2);
            while Arc::strong_count(lines) > 1 && Instant::now() < until {
                thread::sleep(POLL_INTERVAL);
            }
            let text = lines.lock().unwrap().join("\n");
            match exited {
                Some(status) => panic!(
                    "triaged exited ({status}) before announcing its address; stderr:\n{text}"
                ),
                None => panic!(
                    "triaged did not log \"listening\" within {START_TIMEOUT:?}; stderr:\n{text}"
                ),
            }
        }
    }
}

/// The `addr` of a JSON log line whose message is "listening".
fn listening_addr(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields").unwrap_or(&v);
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    Some(fields.get("addr")?.as_str()?.to_string())
}

// ---- HTTP/1.1 client ------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    /// An error answer's body as `{"error", "detail"}`: triaged's own shape, or Alertmanager's
    /// under `/api/v2/` (a bare string, `"<error>: <detail>"`, for 400, 404 and 500) read back
    /// into it, so that tests of either API check the same fields.
    pub fn error_body(&self) -> Value {
        match self.json() {
            Value::String(text) => {
                let (error, detail) = text.split_once(": ").unwrap_or((text.as_str(), ""));
                serde_json::json!({"error": error, "detail": detail})
            }
            other => other,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response (status {}) is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.text())
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; reads the response until EOF. Panics when
/// the exchange fails (see [`try_request`]).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// One HTTP/1.1 exchange, or why it failed (cannot connect, connection reset before an answer,
/// an unparsable answer): for load that runs while the daemon is killed.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    // The server may answer (413, 415 ...) and close before reading the whole body; a write error
    // then is not the test's concern: the answer is what counts.
    let write_result = stream.write_all(&out).and_then(|_| stream.flush());

    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset after the server answered early (without reading the whole body): keep what
            // arrived.
            Err(e) if !raw.is_empty() && e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(format!(
                    "{method} {path}: reading the response failed: {e} (write: {write_result:?}, \
                     got {} bytes)",
                    raw.len()
                ))
            }
        }
    }
    parse_response(&raw).map_err(|e| {
        format!(
            "{method} {path}: unparsable response ({e}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len:?}"))?;
        if rest.len() < len {
            return Err(format!(
                "body truncated: content-length {len}, got {}",
                rest.len()
            ));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line not terminated")?;
        let line = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body); // trailers, if any, are ignored
        }
        if data.len() < size + 2 {
            return Err("chunk truncated".into());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Request bodies: JSON values or raw bytes.
pub trait AsBody {
    fn to_body(&self) -> Vec<u8>;
}

impl AsBody for &Value {
    fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap()
    }
}

impl AsBody for Value {
    fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap()
    }
}

impl AsBody for &[u8] {
    fn to_body(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl AsBody for &Vec<u8> {
    fn to_body(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl AsBody for Vec<u8> {
    fn to_body(&self) -> Vec<u8> {
        self.clone()
    }
}

impl AsBody for &str {
    fn to_body(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

pub fn post_json(addr: &str, path: &str, body: impl AsBody) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_body(),
    )
}

pub fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let resp = request(addr, "GET", path, &[("Accept", "application/json")], b"");
    let value = resp.json();
    (resp.status, value)
}

// ---- Prometheus text format -------------------------------------------------------------------

pub fn metrics(addr: &str) -> String {
    let resp = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200, "GET /metrics: {resp}");
    resp.text()
}

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse the samples of a Prometheus text exposition (comments and blank lines skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
        .collect()
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let consumed;
        loop {
            // skip separators
            let (i, c) = loop {
                match chars.next() {
                    Some((_, c)) if c == ',' || c.is_whitespace() => continue,
                    Some(x) => break x,
                    None => return Err("unterminated label set".into()),
                }
            };
            if c == '}' {
                consumed = 1 + i + 1;
                break;
            }
            let mut lname = String::from(c);
            loop {
                match chars.next() {
                    Some((_, '=')) => break,
                    Some((_, c)) => lname.push(c),
                    None => return Err("unterminated label name".into()),
                }
            }
            if !matches!(chars.next(), Some((_, '"'))) {
                return Err(format!("label {lname} value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(lname.trim().to_string(), value);
        }
        rest = &rest[consumed..];
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the first sample named exactly `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parse_metrics(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Sum of all samples named `name` whose labels include `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_metrics(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

// ---- fixtures, waiting, alert helpers ---------------------------------------------------------

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// Poll `f` every 20 ms for up to 15 s until it returns `Some`.
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    poll_until(what, || f().ok_or("nothing yet"))
}

/// Poll `f` every 20 ms for up to 15 s until it returns `Ok`; on timeout panic with the last
/// `Err` it returned (the last observed state).
pub fn poll_until<T, O: Debug>(what: &str, f: impl FnMut() -> Result<T, O>) -> T {
    poll_until_for(what, WAIT_TIMEOUT, f)
}

pub fn poll_until_for<T, O: Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, O>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; last observed: {last:?}"
                    );
                }
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Alertmanager's fingerprint: FNV-1a 64 over the labels sorted by name, each name and value
/// followed by the 0xff separator byte; 16 hex digits.
pub fn fingerprint(labels: &Value) -> String {
    let map = labels.as_object().expect("labels object");
    let mut pairs: Vec<(&String, &str)> = map
        .iter()
        .map(|(k, v)| (k, v.as_str().expect("label value string")))
        .collect();
    pairs.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (k, v) in pairs {
        feed(k.as_bytes());
        feed(&[0xff]);
        feed(v.as_bytes());
        feed(&[0xff]);
    }
    format!("{hash:016x}")
}

/// The numeric part of an incident id like "INC-12".
pub fn inc_num(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("incident id {id:?} does not end in a number"))
}

/// The `incidents` array of an ingest response, as strings.
pub fn touched(resp: &Value) -> Vec<String> {
    resp["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("no incidents array in {resp}"))
        .iter()
        .map(|v| v.as_str().expect("incident id string").to_string())
        .collect()
}

/// Assert a 200 ingest answer of the documented shape and return its JSON.
pub fn ingest_ok(resp: &Response) -> Value {
    assert_eq!(resp.status, 200, "ingest: {resp}");
    let v = resp.json();
    assert_eq!(v["status"], "success", "ingest body: {v}");
    for key in [
        "received",
        "accepted",
        "deduplicated",
        "dropped",
        "auto_handled",
    ] {
        assert!(v[key].is_u64(), "ingest body lacks numeric {key}: {v}");
    }
    assert!(
        v["incidents"].is_array(),
        "ingest body lacks incidents: {v}"
    );
    v
}

/// One native alert object.
pub fn native_alert(labels: &[(&str, &str)], status: &str) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    serde_json::json!({ "labels": labels, "annotations": {}, "status": status })
}

/// POST native alerts (`{"alerts":[...]}`) and assert 200; returns the body.
pub fn post_native(d: &Daemon, alerts: Vec<Value>) -> Value {
    let resp = d.post_json("/api/v1/alerts", serde_json::json!({ "alerts": alerts }));
    ingest_ok(&resp)
}

/// Labels as a JSON object.
pub fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

/// RFC 3339 (milliseconds, Z) for now + `secs` seconds (negative: past).
pub fn rfc3339_in(secs: f64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds((secs * 1000.0) as i64);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("timestamp {s:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// The single incident (any state) whose group_key contains `needle`; panics if not exactly one.
pub fn only_incident_matching(d: &Daemon, needle: &str) -> Value {
    let all = d.all_incidents("");
    let found: Vec<&Value> = all
        .iter()
        .filter(|i| i["group_key"].as_str().unwrap_or("").contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one incident with group_key containing {needle:?}; all incidents: {}",
        Value::Array(all.clone())
    );
    found[0].clone()
}

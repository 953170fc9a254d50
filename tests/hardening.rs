//! Hardening, against the real daemon over real sockets: authentication and roles (bearer, basic,
//! token rotation on reload), TLS with certificate renewal on SIGHUP, and each request limit with
//! its own answer and its own `reason`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const INGEST: &str = "ingest-token-4f7a9c1e2b";
const OPERATOR: &str = "operator-token-8d3e6a0f5c";
const ADMIN: &str = "admin-token-1b9c7e4d2a";

/// Write the three token files into `dir` and return the `[auth]` tables naming them.
fn auth_tables(dir: &Path, extra: &str) -> String {
    let mut toml = format!("[auth]\n{extra}\n");
    for (name, token, role) in [
        ("prometheus", INGEST, "ingest"),
        ("noc", OPERATOR, "operator"),
        ("root", ADMIN, "admin"),
    ] {
        let file = dir.join(format!("{name}.token"));
        std::fs::write(&file, format!("{token}\n")).unwrap();
        toml.push_str(&format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_file = {:?}\nroles = [\"{role}\"]\n",
            file.display().to_string()
        ));
    }
    toml
}

fn daemon_with_auth(extra: &str) -> (tempfile::TempDir, Daemon) {
    let secrets = tempfile::tempdir().unwrap();
    let d = Daemon::with(&auth_tables(secrets.path(), extra));
    (secrets, d)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn send(d: &Daemon, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    request(&d.addr, method, path, &headers, body)
}

fn am_alert(name: &str) -> Vec<u8> {
    json!([{"labels": {"alertname": name, "service": "checkout", "severity": "warning"}}])
        .to_string()
        .into_bytes()
}

fn www_authenticate(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.clone())
        .collect()
}

fn reason_count(d: &Daemon, source: &str, reason: &str) -> f64 {
    d.metric(
        "triaged_alerts_rejected_total",
        &[("source", source), ("reason", reason)],
    )
}

#[test]
fn requests_without_a_valid_token_get_401_and_a_token_without_the_role_gets_403() {
    let (_secrets, d) = daemon_with_auth("");

    let none = send(&d, "POST", "/api/v2/alerts", None, &am_alert("A"));
    assert_eq!(none.status, 401, "{none}");
    // A Bearer challenge only: a Basic one would make a browser prompt (and stall the board).
    assert_eq!(
        www_authenticate(&none),
        vec!["Bearer realm=\"triaged\"".to_string()]
    );
    let bad = send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer("not-a-token")),
        &am_alert("A"),
    );
    assert_eq!(bad.status, 401, "{bad}");
    assert!(!www_authenticate(&bad).is_empty());
    assert!(
        !bad.text().contains("not-a-token"),
        "the answer repeats no credential"
    );
    assert_eq!(
        bad.json()["detail"],
        "the credentials match no configured token",
        "{bad}"
    );
    // Two Authorization headers, even the same valid token twice: ambiguous, and said so.
    let two = request(
        &d.addr,
        "POST",
        "/api/v2/alerts",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer(INGEST)),
            ("Authorization", &bearer(INGEST)),
        ],
        &am_alert("A"),
    );
    assert_eq!(two.status, 401, "{two}");
    assert!(!www_authenticate(&two).is_empty());
    let detail = two.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains("more than one Authorization header") && detail.contains("exactly one"),
        "{two}"
    );
    assert!(
        !two.text().contains(INGEST),
        "the answer repeats no credential"
    );
    assert_eq!(reason_count(&d, "alertmanager", "unauthorized"), 3.0);
    assert_eq!(
        d.metric("triaged_http_auth_failures_total", &[("reason", "missing")]),
        1.0
    );
    assert_eq!(
        d.metric("triaged_http_auth_failures_total", &[("reason", "invalid")]),
        2.0
    );

    // The operator may not ingest; the ingest token may.
    let wrong = send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(OPERATOR)),
        &am_alert("A"),
    );
    assert_eq!(wrong.status, 403, "{wrong}");
    let detail = wrong.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("\"noc\"") && detail.contains("ingest"),
        "{detail}"
    );
    assert_eq!(reason_count(&d, "alertmanager", "forbidden"), 1.0);
    let ok = send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(INGEST)),
        &am_alert("A"),
    );
    let id = touched(&ingest_ok(&ok))[0].clone();

    // Reading takes any valid token; acting takes operator (or admin).
    assert_eq!(send(&d, "GET", "/api/v1/incidents", None, b"").status, 401);
    assert_eq!(
        send(&d, "GET", "/api/v1/incidents", Some(&bearer(INGEST)), b"").status,
        200
    );
    let ack = format!("/api/v1/incidents/{id}/ack");
    let refused = send(&d, "POST", &ack, Some(&bearer(INGEST)), b"{}");
    assert_eq!(refused.status, 403, "{refused}");
    let acked = send(&d, "POST", &ack, Some(&bearer(OPERATOR)), b"{}");
    assert_eq!(acked.status, 200, "{acked}");
    // Without an actor in the body, the token's name is the actor.
    let incident = send(
        &d,
        "GET",
        &format!("/api/v1/incidents/{id}"),
        Some(&bearer(OPERATOR)),
        b"",
    )
    .json();
    assert_eq!(incident["state"], "acknowledged", "{incident}");
    assert!(
        incident.to_string().contains("\"noc\""),
        "the timeline names the token as actor: {incident}"
    );

    // Silences: operator; reload: admin only.
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "A", "isRegex": false}],
        "startsAt": rfc3339_in(0.0), "endsAt": rfc3339_in(3600.0),
        "createdBy": "noc", "comment": "maintenance"
    })
    .to_string();
    assert_eq!(
        send(
            &d,
            "POST",
            "/api/v2/silences",
            Some(&bearer(INGEST)),
            silence.as_bytes()
        )
        .status,
        403
    );
    assert_eq!(
        send(
            &d,
            "POST",
            "/api/v2/silences",
            Some(&bearer(OPERATOR)),
            silence.as_bytes()
        )
        .status,
        200
    );
    assert_eq!(
        send(&d, "POST", "/-/reload", Some(&bearer(OPERATOR)), b"").status,
        403
    );
    assert_eq!(
        send(&d, "POST", "/-/reload", Some(&bearer(ADMIN)), b"").status,
        200
    );
    // Admin may do everything, ingest included.
    ingest_ok(&send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(ADMIN)),
        &am_alert("B"),
    ));

    // Metrics and health stay open by default.
    assert_eq!(send(&d, "GET", "/metrics", None, b"").status, 200);
    assert_eq!(send(&d, "GET", "/-/healthy", None, b"").status, 200);
    assert_eq!(send(&d, "GET", "/-/ready", None, b"").status, 200);

    let log = d.stderr_text();
    for token in [INGEST, OPERATOR, ADMIN, "not-a-token"] {
        assert!(!log.contains(token), "a token reached the log");
    }
}

#[test]
fn basic_auth_takes_the_token_name_as_user_and_the_token_as_password() {
    let (_secrets, d) = daemon_with_auth("");
    let ok = send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&basic("prometheus", INGEST)),
        &am_alert("Basic"),
    );
    ingest_ok(&ok);
    for (user, password) in [("noc", INGEST), ("prometheus", "wrong"), ("", INGEST)] {
        let r = send(
            &d,
            "POST",
            "/api/v2/alerts",
            Some(&basic(user, password)),
            &am_alert("Basic"),
        );
        assert_eq!(r.status, 401, "{user}:{password}: {r}");
        // A client that tried basic auth is told basic auth is welcome.
        assert!(
            www_authenticate(&r).iter().any(|c| c.starts_with("Basic")),
            "{r:?}"
        );
    }
}

#[test]
fn metrics_and_health_can_be_protected() {
    let (_secrets, d) = daemon_with_auth("metrics_public = false\nhealth_public = false");
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        assert_eq!(send(&d, "GET", path, None, b"").status, 401, "{path}");
        // /-/ready turns 200 once the writer runs, which may be a moment after "listening".
        poll_until(&format!("{path} with a token"), || {
            let r = send(&d, "GET", path, Some(&bearer(INGEST)), b"");
            if r.status == 200 {
                Ok(())
            } else {
                Err(r)
            }
        });
    }
}

#[test]
fn a_rotated_token_file_takes_effect_on_sighup() {
    let (secrets, d) = daemon_with_auth("");
    ingest_ok(&send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(INGEST)),
        &am_alert("Rotate"),
    ));
    let rotated = "ingest-token-rotated-7e2c9a";
    std::fs::write(secrets.path().join("prometheus.token"), rotated).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    poll_until("the rotated token to be accepted", || {
        let r = send(
            &d,
            "POST",
            "/api/v2/alerts",
            Some(&bearer(rotated)),
            &am_alert("Rotate"),
        );
        if r.status == 200 {
            Ok(())
        } else {
            Err(r.status)
        }
    });
    let old = send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(INGEST)),
        &am_alert("Rotate"),
    );
    assert_eq!(old.status, 401, "the replaced token is refused: {old}");

    // A token file that cannot be read refuses the reload and keeps the tokens in force.
    std::fs::remove_file(secrets.path().join("prometheus.token")).unwrap();
    let reload = send(&d, "POST", "/-/reload", Some(&bearer(ADMIN)), b"");
    assert_eq!(reload.status, 500, "{reload}");
    assert!(reload.text().contains("prometheus.token"), "{reload}");
    ingest_ok(&send(
        &d,
        "POST",
        "/api/v2/alerts",
        Some(&bearer(rotated)),
        &am_alert("Rotate"),
    ));
}

/// Run `triaged` with `args` and return its exit code and stderr.
fn triaged(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_triaged"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unsafe_auth_configs_refuse_to_start_and_say_which_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    let file_s = file.to_str().unwrap();

    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:9595\"\n\n[[auth.tokens]]\nname = \"prometheus\"\ntoken = \"inline-secret-value-123\"\nroles = [\"ingest\"]\n",
    )
    .unwrap();
    let (code, err) = triaged(&["check-config", file_s]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(":6:") && err.contains("token_file"), "{err}");
    assert!(!err.contains("inline-secret-value-123"), "{err}");

    std::fs::write(&file, "[server]\nlisten = \"0.0.0.0:9595\"\n").unwrap();
    let (code, err) = triaged(&["check-config", file_s]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(":2:") && err.contains("loopback"), "{err}");

    std::fs::write(&file, "[auth]\nenabled = true\n").unwrap();
    let (code, err) = triaged(&["check-config", file_s]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains(":2:") && err.contains("no [[auth.tokens]]"),
        "{err}"
    );

    let missing = dir.path().join("nowhere.token");
    std::fs::write(
        &file,
        format!(
            "[[auth.tokens]]\nname = \"noc\"\ntoken_file = {:?}\nroles = [\"operator\"]\n",
            missing.display().to_string()
        ),
    )
    .unwrap();
    let (code, err) = triaged(&["check-config", file_s]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("nowhere.token"), "{err}");

    // --listen beyond loopback on a config without tokens.
    std::fs::write(&file, "[log]\nlevel = \"info\"\n").unwrap();
    let data = dir.path().join("data");
    let (code, err) = triaged(&[
        "run",
        "--config",
        file_s,
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn auth_turned_off_beyond_loopback_runs_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, format!("{LOG_JSON}\n[auth]\nenabled = false\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_triaged"))
        .args(["run", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let warned = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("authentication is off") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let warned = warned.unwrap_or_else(|| panic!("no warning; stderr:\n{}", seen.join("\n")));
    let v: Value = serde_json::from_str(&warned).unwrap();
    assert_eq!(v["level"], "WARN", "{warned}");
}

// ---- TLS ------------------------------------------------------------------------------------

struct Cert {
    pem: String,
    key: String,
}

fn new_cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert {
        pem: ck.cert.pem(),
        key: ck.key_pair.serialize_pem(),
    }
}

/// One HTTPS exchange trusting only `trusted`; Err when the handshake fails.
fn https_get(addr: &str, trusted: &Cert, path: &str) -> Result<Response, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(trusted.pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify after Connection: close.
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    parse_response(&raw)
}

use rustls_pki_types::pem::PemObject;

#[test]
fn https_serves_the_api_and_a_renewed_certificate_is_used_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = new_cert();
    std::fs::write(&cert_file, &first.pem).unwrap();
    std::fs::write(&key_file, &first.key).unwrap();
    let d = Daemon::with(&format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert_file.display().to_string(),
        key_file.display().to_string()
    ));
    let r = https_get(&d.addr, &first, "/-/healthy").expect("HTTPS with the first certificate");
    assert_eq!(r.status, 200, "{r}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&d.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "plain HTTP was served");
    poll_until("the failed handshake to be counted", || {
        let metrics = https_get(&d.addr, &first, "/metrics").unwrap().text();
        let n = metric_value(&metrics, "triaged_tls_handshake_failures_total", &[]).unwrap_or(0.0);
        if n >= 1.0 {
            Ok(())
        } else {
            Err(n)
        }
    });

    let second = new_cert();
    std::fs::write(&cert_file, &second.pem).unwrap();
    std::fs::write(&key_file, &second.key).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let r = poll_until("the renewed certificate to be served", || {
        https_get(&d.addr, &second, "/-/healthy")
    });
    assert_eq!(r.status, 200);
    assert!(
        https_get(&d.addr, &first, "/-/healthy").is_err(),
        "the old certificate is no longer served"
    );
}

// ---- limits ---------------------------------------------------------------------------------

fn native(labels: Value) -> Value {
    json!({"labels": labels, "status": "firing"})
}

#[test]
fn each_shape_limit_gets_its_own_answer_and_reason() {
    let d = Daemon::with(
        "[server]\nmax_alerts_per_request = 3\nmax_labels_per_alert = 4\nmax_label_bytes = 32\n",
    );
    let post = |alerts: Vec<Value>| {
        send(
            &d,
            "POST",
            "/api/v1/alerts",
            None,
            Value::Array(alerts).to_string().as_bytes(),
        )
    };
    let ok = |i: usize| native(json!({"alertname": format!("L{i}"), "service": "s"}));
    ingest_ok(&post((0..3).map(ok).collect()));

    let r = post((0..4).map(ok).collect());
    assert_eq!(r.status, 413, "{r}");
    assert!(r.text().contains("max_alerts_per_request"), "{r}");
    assert_eq!(reason_count(&d, "native", "too_many_alerts"), 1.0);

    let r = post(vec![native(
        json!({"alertname": "X", "a": "1", "b": "2", "c": "3", "d": "4"}),
    )]);
    assert_eq!(r.status, 400, "{r}");
    assert!(r.text().contains("max_labels_per_alert"), "{r}");
    assert_eq!(reason_count(&d, "native", "too_many_labels"), 1.0);

    let r = post(vec![ok(0), native(json!({"alertname": "X".repeat(33)}))]);
    assert_eq!(r.status, 400, "{r}");
    assert!(
        r.text().contains("alert 1") && r.text().contains("max_label_bytes"),
        "{r}"
    );
    assert_eq!(reason_count(&d, "native", "label_too_long"), 1.0);

    // A refused request is refused whole: its good alerts are not stored either.
    let (status, _) = d.alert(&fingerprint(&json!({"alertname": "L0", "service": "s"})));
    assert_eq!(status, 200);
    let refused = json!({"alertname": "L3", "service": "s"});
    assert_eq!(d.alert(&fingerprint(&refused)).0, 404);
}

/// Connect and send `head` (and no more); the stream stays open.
fn half_request(d: &Daemon, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// Everything the server sends until it closes; panics if it does not close within the read
/// timeout.
fn read_all(s: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the server did not close the connection ({e}); got {:?}",
            String::from_utf8_lossy(&raw)
        ),
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// One raw request, sent as written, answered and closed.
fn raw_exchange(d: &Daemon, head: &str) -> Response {
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw).unwrap_or_else(|e| panic!("{head:?}: {e}"))
}

/// Refusals of the HTTP layer on ingest routes are counted too: those triaged answers (no or
/// two `Host` headers, an unsupported transfer coding, a body that cannot be read) in
/// `alerts_rejected_total{reason="malformed_http"}` with a JSON error; those hyper's parser
/// answers before the path is read (duplicate or negative Content-Length) in
/// `http_parse_errors_total`. None is logged as an error: a client could flood the log.
#[test]
fn http_level_refusals_are_counted_and_not_logged_as_errors() {
    let d = Daemon::with("");
    let head = |path: &str, extra: &str| {
        format!("POST {path} HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}")
    };
    let json_refusal = |raw: &str, status: u16| {
        let answer = raw_exchange(&d, raw);
        assert_eq!(answer.status, status, "{raw:?}: {answer}");
        assert!(
            answer.error_body()["error"].is_string(),
            "{raw:?}: {answer}"
        );
    };
    json_refusal(
        &head(
            "/api/v2/alerts",
            "Host: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        501,
    );
    json_refusal(
        &head(
            "/api/v2/alerts",
            "Host: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n",
        ),
        400,
    );
    json_refusal(
        &head(
            "/api/v1/webhook/alertmanager",
            "Content-Length: 2\r\n\r\n{}",
        ),
        400,
    );
    assert_eq!(reason_count(&d, "alertmanager", "malformed_http"), 2.0);
    assert_eq!(reason_count(&d, "webhook", "malformed_http"), 1.0);

    for cl in [
        "Content-Length: 2\r\nContent-Length: 3",
        "Content-Length: -1",
    ] {
        let raw = head("/api/v2/alerts", &format!("Host: x\r\n{cl}\r\n\r\n[] "));
        assert_eq!(raw_exchange(&d, &raw).status, 400, "{cl}");
    }
    poll_until("hyper's refusals counted", || {
        match d.metric("triaged_http_parse_errors_total", &[]) {
            2.0 => Ok(()),
            n => Err(n),
        }
    });
    assert_eq!(reason_count(&d, "alertmanager", "malformed_http"), 2.0);

    let log = d.stderr_text();
    assert!(!log.contains("ERROR"), "logged as an error:\n{log}");
}

/// Regression (an audit): `Transfer-Encoding: gzip, chunked` was read as `chunked` and the body
/// taken; a transfer coding other than `chunked`, once, is 501 (RFC 9112), and nothing is stored.
#[test]
fn a_transfer_coding_other_than_chunked_is_501() {
    let d = Daemon::with("");
    let body = r#"[{"labels":{"alertname":"Smuggled"}}]"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    for coding in ["gzip, chunked", "chunked, chunked"] {
        let answer = raw_exchange(
            &d,
            &format!(
                "POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: {coding}\r\n\r\n{chunked}"
            ),
        );
        assert_eq!(answer.status, 501, "{coding}: {answer}");
        assert!(answer.text().contains("Transfer-Encoding"), "{answer}");
    }
    let plain = raw_exchange(
        &d,
        &format!(
            "POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: Chunked\r\n\r\n{chunked}"
        ),
    );
    assert_eq!(plain.status, 200, "{plain}");
    let (status, alerts) = get_json(&d.addr, "/api/v2/alerts");
    assert_eq!(status, 200);
    assert_eq!(
        alerts.as_array().map(Vec::len),
        Some(1),
        "only the chunked one: {alerts}"
    );
}

#[test]
fn http_1_1_requests_need_exactly_one_host_header() {
    let d = Daemon::with("");
    let close = "Connection: close\r\n";
    let missing = raw_exchange(&d, &format!("GET /-/healthy HTTP/1.1\r\n{close}\r\n"));
    assert_eq!(missing.status, 400, "{missing}");
    assert!(missing.text().contains("Host"), "{missing}");
    let body = r#"[{"labels":{"alertname":"NoHost"}}]"#;
    let ingest = raw_exchange(
        &d,
        &format!(
            "POST /api/v2/alerts HTTP/1.1\r\n{close}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(ingest.status, 400, "{ingest}");
    let twice = raw_exchange(
        &d,
        &format!("GET /-/healthy HTTP/1.1\r\nHost: a\r\nHost: b\r\n{close}\r\n"),
    );
    assert_eq!(twice.status, 400, "{twice}");
    // HTTP/1.0 may leave it out; one Host is what every client sends.
    let old = raw_exchange(&d, "GET /-/healthy HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200, "{old}");
    let one = raw_exchange(
        &d,
        &format!("GET /-/healthy HTTP/1.1\r\nHost: a\r\n{close}\r\n"),
    );
    assert_eq!(one.status, 200, "{one}");
    // The refused ingest stored nothing.
    let (status, alerts) = get_json(&d.addr, "/api/v2/alerts");
    assert_eq!(status, 200);
    assert_eq!(alerts.as_array().map(Vec::len), Some(0), "{alerts}");
}

#[test]
fn slow_clients_are_cut_off_headers_idle_and_body() {
    let d =
        Daemon::with("[server]\nheader_read_timeout = \"300ms\"\nbody_read_timeout = \"300ms\"\n");
    // Headers that never finish: the connection is closed without an answer.
    let mut slow = half_request(&d, "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n");
    let answer = read_all(&mut slow);
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    // A keep-alive connection that goes quiet after one answer is closed.
    let mut idle = half_request(&d, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_all(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body that never finishes: 408 with the reason.
    let mut body = half_request(
        &d,
        "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"labels\"",
    );
    let answer = read_all(&mut body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout"), "{answer}");
    assert_eq!(reason_count(&d, "native", "body_timeout"), 1.0);
}

/// Regression (an audit): a client that sends requests and never reads the answers held its
/// connection, and a slot of `max_connections`, for ever; the header and body timeouts did not
/// apply while the server waited to write. A write the peer takes nothing of for
/// `body_read_timeout` now ends the connection.
#[test]
fn a_peer_that_never_reads_its_answers_is_disconnected() {
    let d = Daemon::with(
        "[server]\nmax_connections = 2\nheader_read_timeout = \"60s\"\nbody_read_timeout = \"1s\"\n",
    );
    let mut greedy = TcpStream::connect(&d.addr).unwrap();
    // Enough answers (the board's script, pipelined) to fill both sides' socket buffers.
    let request = "GET /assets/board.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    greedy.write_all(request.as_bytes()).unwrap();
    poll_until(
        "the server to let go of the connection that reads nothing",
        || {
            let open = d.metric("triaged_http_connections_open", &[]);
            // The scrape itself is the one connection left.
            if open == 1.0 {
                Ok(())
            } else {
                Err(open)
            }
        },
    );
    assert_eq!(send(&d, "GET", "/-/healthy", None, b"").status, 200);
    assert!(!d.stderr_text().contains("panicked"));
    drop(greedy);
}

#[test]
fn connections_beyond_the_limit_get_503_and_are_closed() {
    let d = Daemon::with("[server]\nmax_connections = 2\nheader_read_timeout = \"30s\"\n");
    let _a = half_request(&d, "");
    let _b = half_request(&d, "");
    // Once the server has taken both, a third connection is refused.
    let r = poll_until("a connection beyond the limit to be refused", || {
        let r = send(&d, "POST", "/api/v1/alerts", None, b"[]");
        if r.status == 503 {
            Ok(r)
        } else {
            Err(r.status)
        }
    });
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("max_connections"), "{r}");
    drop((_a, _b));
    poll_until("the limit to make room again", || {
        let r = send(&d, "GET", "/-/healthy", None, b"");
        if r.status == 200 {
            Ok(())
        } else {
            Err(r.status)
        }
    });
    assert!(d.metric("triaged_http_connections_rejected_total", &[]) >= 1.0);
    assert!(reason_count(&d, "native", "too_many_connections") >= 1.0);
}

#[test]
fn request_bytes_in_flight_beyond_the_budget_get_503_until_room_returns() {
    let d = Daemon::with(
        "[server]\nmax_body_bytes = 4096\nmax_inflight_bytes = 4096\nbody_read_timeout = \"60s\"\nheader_read_timeout = \"1s\"\n",
    );
    let body = json!([native(json!({"alertname": "Budget", "service": "s"}))]).to_string();
    // A request that declares the whole budget and then stalls holds it.
    let mut holder = half_request(
        &d,
        "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n",
    );
    // Once the holder is admitted (it took the whole budget), every other body is refused.
    poll_until("the holder to take the whole budget", || {
        let held = d.metric("triaged_http_inflight_bytes", &[]);
        if held >= 4096.0 {
            Ok(())
        } else {
            Err(held)
        }
    });
    let refused = poll_until("a request to be refused for the byte budget", || {
        let r = send(&d, "POST", "/api/v1/alerts", None, body.as_bytes());
        if r.status == 503 {
            Ok(r)
        } else {
            Err(r.status)
        }
    });
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text().contains("max_inflight_bytes"), "{refused}");
    assert!(reason_count(&d, "native", "overloaded") >= 1.0);

    // The holder finishes (padded JSON); its bytes return to the budget.
    let mut padded = body.clone().into_bytes();
    padded.resize(4096, b' ');
    holder.write_all(&padded).unwrap();
    let answer = read_all(&mut holder);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    ingest_ok(&send(&d, "POST", "/api/v1/alerts", None, body.as_bytes()));
    assert_eq!(d.metric("triaged_http_inflight_bytes", &[]), 0.0);
}

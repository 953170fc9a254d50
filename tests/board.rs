//! The NOC board: its pages and assets over real sockets, and the whole board in a real browser
//! (Debian's headless Chromium, driven by `tests/browser/board.spec.mjs` with playwright-core):
//! a new incident appears live, is acknowledged with a click, and the API shows it.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The browser run's bound: Chromium's start on a busy 2-core machine plus a dozen page steps.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

fn asset_refs(html: &str) -> Vec<String> {
    html.split("\"/assets/")
        .skip(1)
        .map(|rest| {
            format!(
                "/assets/{}",
                &rest[..rest.find('"').expect("closing quote")]
            )
        })
        .collect()
}

#[test]
fn the_board_and_its_assets_are_served_with_types_and_caching() {
    let d = Daemon::with("");
    let page = d.get("/");
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = page.text();
    assert!(html.contains("<html lang=\"en\">"), "{html}");

    let refs = asset_refs(&html);
    let mut types: Vec<String> = Vec::new();
    for path in &refs {
        assert!(path.contains("?v="), "unversioned asset reference {path}");
        let asset = d.get(path);
        assert_eq!(asset.status, 200, "GET {path}: {asset}");
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        assert!(!asset.body.is_empty(), "{path} is empty");
        types.push(asset.header("content-type").unwrap_or("").to_string());
        // Revalidation of the unversioned URL: 304 with the same ETag, no body.
        let bare = path.split('?').next().unwrap();
        let etag = asset.header("etag").expect("an ETag").to_string();
        let again = request(&d.addr, "GET", bare, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304, "GET {bare} with its ETag: {again}");
        assert!(again.body.is_empty());
        assert_eq!(d.get(bare).header("cache-control"), Some("no-cache"));
    }
    for wanted in [
        "text/css; charset=utf-8",
        "text/javascript; charset=utf-8",
        "image/svg+xml",
    ] {
        assert!(
            types.iter().any(|t| t == wanted),
            "no {wanted} among {types:?}"
        );
    }

    let incident_page = d.get("/incident/INC-12");
    assert_eq!(incident_page.status, 200);
    assert!(incident_page.text().contains("/assets/incident.js?v="));
    // HEAD: the headers of GET, no body (read raw: the harness expects a body after them).
    let mut stream = std::net::TcpStream::connect(&d.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "HEAD / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.addr
    )
    .unwrap();
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .expect("read the HEAD answer");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("content-type: text/html"),
        "{raw}"
    );
    assert!(
        raw.ends_with("\r\n\r\n"),
        "HEAD answered with a body: {raw}"
    );

    for missing in [
        "/assets/nope.js",
        "/incident/12",
        "/assets/board.html",
        "/board",
    ] {
        assert_eq!(d.get(missing).status, 404, "GET {missing}");
    }
    let post = d.post_json("/", "{}");
    assert_eq!(post.status, 405, "{post}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn the_active_state_filter_lists_open_and_acknowledged_incidents_together() {
    let d = Daemon::with("");
    let a = touched(&post_native(
        &d,
        vec![native_alert(&[("alertname", "ActiveA")], "firing")],
    ))[0]
        .clone();
    let b = touched(&post_native(
        &d,
        vec![native_alert(&[("alertname", "ActiveB")], "firing")],
    ))[0]
        .clone();
    let c = touched(&post_native(
        &d,
        vec![native_alert(&[("alertname", "ActiveC")], "firing")],
    ))[0]
        .clone();
    let ack = d.action(&b, "ack", serde_json::json!({"actor": "alice"}));
    assert_eq!(ack.status, 200, "{ack}");
    let resolve = d.action(&c, "resolve", serde_json::json!({"actor": "alice"}));
    assert_eq!(resolve.status, 200, "{resolve}");

    let ids = |query: &str| -> Vec<String> {
        d.all_incidents(query)
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("state=active"), [b.clone(), a.clone()]);
    assert_eq!(ids("state=active&limit=1"), [b, a]);
    let (status, body) = d.get_json("/api/v1/incidents?state=sleeping");
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap_or("").contains("active"),
        "{body}"
    );
}

/// Where the browser test's screenshots and log go.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

/// Node and Chromium, or why not. CI (CI=true) must have both: there a missing one fails.
fn browser_tools() -> Result<(String, PathBuf), String> {
    let chromium = PathBuf::from(
        std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()),
    );
    if !chromium.exists() {
        return Err(format!(
            "{} is missing: install Debian's chromium package (tests/run.sh does)",
            chromium.display()
        ));
    }
    let node = "node".to_string();
    // playwright-core 1.65 needs Node.js 20 or later.
    let version = match Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => return Err("node is missing: install Node.js 20 or later".into()),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!(
            "node {version} is too old: playwright-core needs Node.js 20 or later"
        ));
    }
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed: run `npm ci` in {} (tests/run.sh does)",
            browser_dir.display()
        ));
    }
    Ok((node, chromium))
}

#[test]
fn in_chromium_a_new_incident_appears_live_and_is_acknowledged_with_a_click() {
    let (node, chromium) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the browser test cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED the browser test (not in CI): {why}");
            return;
        }
    };
    // With authentication on: the page must send the operator's token on every API call.
    let token = "board-test-token";
    let d = Daemon::with(&format!(
        "{}\n[[auth.tokens]]\nname = \"board\"\ntoken = \"{token}\"\nallow_inline = true\nroles = [\"admin\"]\n",
        include_str!("browser/rules.toml")
    ));
    let unauthenticated = d.get("/api/v1/incidents");
    assert_eq!(unauthenticated.status, 401, "auth is on: {unauthenticated}");
    let incident = |id: &str| -> serde_json::Value {
        let r = request(
            &d.addr,
            "GET",
            &format!("/api/v1/incidents/{id}"),
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        );
        assert_eq!(r.status, 200, "{r}");
        r.json()
    };
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("create target/test-artifacts");
    let screenshot = artifacts.join("board.png");
    let _ = std::fs::remove_file(&screenshot);
    let log_path = artifacts.join("board-spec.log");
    let out_path = artifacts.join("board-spec.out");
    let log = std::fs::File::create(&log_path).expect("create the browser log");
    let out = std::fs::File::create(&out_path).expect("create the browser output");
    let mut child = Command::new(node)
        .arg("board.spec.mjs")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser"))
        .env("TRIAGED_URL", format!("http://{}", d.addr))
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .env("TRIAGED_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser test did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{stderr}\n{stdout}"
    );
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result line from the browser test:\n{stdout}"));
    let actor = result["actor"].as_str().expect("actor");

    // What the clicks did, seen through the API.
    let acked = incident(result["acknowledged"].as_str().expect("acknowledged id"));
    assert_eq!(acked["state"], "acknowledged", "{acked}");
    assert_eq!(acked["tier"], "L3", "{acked}");
    assert_eq!(acked["assignee"], "bob", "{acked}");
    let ack_event = acked["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "acknowledged")
        .unwrap_or_else(|| panic!("no acknowledgement on the timeline: {acked}"));
    assert_eq!(ack_event["actor"], actor);
    let resolved = incident(result["resolved"].as_str().expect("resolved id"));
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    assert_eq!(resolved["tier"], "L2", "{resolved}");
    assert_eq!(resolved["resolution_note"], "index rebuilt", "{resolved}");

    let png = std::fs::read(&screenshot).expect("the screenshot target/test-artifacts/board.png");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "board.png is not a real screenshot ({} bytes)",
        png.len()
    );
}

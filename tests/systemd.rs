//! systemd integration, against the real daemon and the real `systemd-analyze`:
//! - the sd_notify protocol as systemd would see it, on a datagram socket the test binds and
//!   hands over in `$NOTIFY_SOCKET`: READY=1 once the daemon serves, WATCHDOG=1 pings,
//!   RELOADING=1 … READY=1 around every reload, STOPPING=1 on SIGTERM;
//! - the unit file: `systemd-analyze verify` accepts it, and `systemd-analyze security` rates it
//!   "OK" or better with an exposure of 2.0 at most.
//!
//! systemd itself does not run here (nor in CI's container): the unit is checked offline.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use triaged::sd_notify::monotonic_usec;

/// systemd's end of `$NOTIFY_SOCKET`. A thread reads every datagram as it comes (as systemd
/// does), so the daemon's sends never find the socket's small queue full.
struct NotifySocket {
    /// What `$NOTIFY_SOCKET` says.
    name: String,
    messages: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    /// A socket file in a temp dir, as systemd's /run/systemd/notify.
    fn at_path() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket::reading(socket, path.to_str().unwrap().to_string(), Some(dir))
    }

    /// A socket in Linux's abstract namespace: `$NOTIFY_SOCKET=@name`.
    fn abstract_name() -> NotifySocket {
        let name = format!("triaged-e2e-notify-{}", uuid::Uuid::new_v4());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        NotifySocket::reading(socket, format!("@{name}"), None)
    }

    fn reading(socket: UnixDatagram, name: String, dir: Option<tempfile::TempDir>) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (tx, messages) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("reading the notify socket: {e}"),
                }
            }
        });
        NotifySocket {
            name,
            messages,
            stop,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// Messages until one that `is`; returns it and those before it. Panics after 15 s.
    fn until(&self, what: &str, is: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if is(&m) => return (m, before),
                Ok(m) => before.push(m),
                Err(_) => panic!("no {what} within {WAIT_TIMEOUT:?}; got only {before:?}"),
            }
        }
    }

    /// Stop reading and return what arrived and was not taken yet.
    fn rest(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the notify reader");
        }
        self.messages.try_iter().collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A message's `KEY=value` assignments.
fn fields(message: &str) -> BTreeMap<&str, &str> {
    message
        .lines()
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("not an assignment: {l:?} in {message:?}"))
        })
        .collect()
}

fn assert_only_pings(messages: &[String], between: &str) {
    assert!(
        messages.iter().all(|m| m == "WATCHDOG=1"),
        "{between}: only watchdog pings expected, got {messages:?}"
    );
}

#[test]
fn systemd_hears_ready_watchdog_reloads_and_stopping() {
    let notify = NotifySocket::at_path();
    let mut d = Daemon::start_with_env(
        &config(""),
        &[
            ("NOTIFY_SOCKET", notify.name.as_str()),
            // 200 ms: pings every 100 ms, the writer beats every 50 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    // READY=1 comes first, and once it is out the daemon serves: the writer runs, the store
    // takes writes.
    let (ready, before) = notify.until("READY=1", |m| m.starts_with("READY=1"));
    assert!(before.is_empty(), "before READY=1: {before:?}");
    let ready = fields(&ready);
    assert_eq!(ready["MAINPID"], d.pid().to_string());
    assert_eq!(ready["STATUS"], format!("listening on {}", d.addr));
    assert_eq!(d.get("/-/ready").status, 200);
    post_native(
        &d,
        vec![native_alert(
            &[("alertname", "SystemdReady"), ("severity", "warning")],
            "firing",
        )],
    );

    // The watchdog is fed, again and again.
    for n in 0..3 {
        let (_, before) = notify.until("WATCHDOG=1", |m| m == "WATCHDOG=1");
        assert!(before.is_empty(), "before ping {n}: {before:?}");
    }

    // SIGHUP: RELOADING=1, stamped with CLOCK_MONOTONIC, then READY=1.
    let sent_at = monotonic_usec();
    d.send_signal("HUP");
    let (reloading, before) = notify.until("RELOADING=1", |m| m.starts_with("RELOADING=1"));
    let received_at = monotonic_usec();
    assert_only_pings(&before, "before RELOADING=1");
    let stamp: u64 = fields(&reloading)["MONOTONIC_USEC"]
        .parse()
        .unwrap_or_else(|e| panic!("MONOTONIC_USEC in {reloading:?}: {e}"));
    assert!(
        sent_at <= stamp && stamp <= received_at,
        "MONOTONIC_USEC={stamp} is not between SIGHUP ({sent_at}) and its arrival ({received_at})"
    );
    let (ready, before) = notify.until("READY=1 after SIGHUP", |m| m.starts_with("READY=1"));
    assert_only_pings(&before, "during the SIGHUP reload");
    assert_eq!(fields(&ready)["STATUS"], "configuration reloaded");

    // A refused reload (POST /-/reload) ends in READY=1 as well: the old config runs on.
    std::fs::write(
        d.dir().join("triaged.toml"),
        config("[[rules]]\nname = \"broken\"\nmatchers = ['alertname=~\"(\"']\n"),
    )
    .unwrap();
    let answer = d.post_json("/-/reload", json!({}));
    assert_eq!(answer.status, 500, "{answer}");
    let (reloading, before) = notify.until("RELOADING=1", |m| m.starts_with("RELOADING=1"));
    assert_only_pings(&before, "before the second RELOADING=1");
    assert!(fields(&reloading).contains_key("MONOTONIC_USEC"));
    let (ready, before) = notify.until("READY=1 after the refused reload", |m| {
        m.starts_with("READY=1")
    });
    assert_only_pings(&before, "during the refused reload");
    let status = fields(&ready)["STATUS"].to_string();
    assert!(
        status.starts_with("configuration reload refused") && status.contains("triaged.toml:"),
        "{status}"
    );

    // SIGTERM: STOPPING=1, a clean exit, and nothing but pings after it.
    let exit = d.terminate();
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let (_, before) = notify.until("STOPPING=1", |m| m.starts_with("STOPPING=1"));
    assert_only_pings(&before, "before STOPPING=1");
    assert_only_pings(&notify.rest(), "after STOPPING=1");
}

#[test]
fn an_abstract_socket_hears_ready_and_stopping_and_a_watchdog_for_another_pid_is_ignored() {
    let notify = NotifySocket::abstract_name();
    let mut d = Daemon::start_with_env(
        &config(""),
        &[
            ("NOTIFY_SOCKET", notify.name.as_str()),
            // systemd's watchdog, but meant for process 1: not ours to feed.
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let (ready, before) = notify.until("READY=1", |m| m.starts_with("READY=1"));
    assert!(before.is_empty(), "before READY=1: {before:?}");
    assert_eq!(fields(&ready)["MAINPID"], d.pid().to_string());
    assert_eq!(d.get("/-/ready").status, 200);
    let exit = d.terminate();
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    // A watchdog task would have pinged at once after READY=1.
    let rest = notify.rest();
    assert!(
        rest.len() == 1 && rest[0].starts_with("STOPPING=1"),
        "after READY=1 only STOPPING=1 expected, got {rest:?}"
    );
}

// ---- the unit file -----------------------------------------------------------------------------

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/triaged.service")
}

/// `systemd-analyze`, or `None` (loudly) when it is missing outside CI. In CI (`CI=true`) a
/// missing one fails: tests/run.sh installs it.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        let message = "systemd-analyze is not installed (Debian package `systemd`; tests/run.sh \
                       installs it)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// Run it; returns stdout, asserting success and an empty stderr (systemd reports unknown or
/// unparsable directives on stderr and carries on, so stderr must stay empty).
fn run_analyze(analyze: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(analyze)
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok_with_exposure_at_most_2() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let unit = unit_path();
    let report = run_analyze(
        &analyze,
        &[
            "security".as_ref(),
            "--offline=true".as_ref(),
            "--no-pager".as_ref(),
            unit.as_os_str(),
        ],
    );
    // "→ Overall exposure level for triaged.service: 1.1 OK 🙂"
    let overall = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for triaged.service:"))
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    let mut words = overall.split_whitespace();
    let exposure: f64 = words
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure number in {overall:?}"));
    let rating = words.next().unwrap_or("");
    eprintln!("systemd-analyze security: exposure {exposure} {rating}");
    assert!(
        exposure <= 2.0,
        "exposure {exposure} is above 2.0; the items that count:\n{}",
        report
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        ["OK", "SAFE", "PERFECT"].contains(&rating),
        "rated {rating:?}: {overall}"
    );
}

/// The settings of the `[Service]` section, by key (a key given twice: the last).
fn service_settings(unit: &str) -> BTreeMap<String, String> {
    let mut in_service = false;
    let mut settings = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                settings.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    settings
}

#[test]
fn systemd_analyze_verifies_the_unit_for_the_built_binary() {
    let unit = std::fs::read_to_string(unit_path()).expect("read the unit");
    // What the daemon's notifications rely on.
    let service = service_settings(&unit);
    assert_eq!(service["Type"], "notify");
    assert_eq!(service["NotifyAccess"], "main");
    assert!(
        service.contains_key("WatchdogSec"),
        "no WatchdogSec: {service:?}"
    );

    let Some(analyze) = systemd_analyze() else {
        return;
    };
    // `verify` wants the binaries to exist: check a copy that runs the one just built.
    const INSTALLED: &str = "/usr/local/bin/triaged";
    assert!(
        service["ExecStart"].starts_with(INSTALLED),
        "{}",
        service["ExecStart"]
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("triaged.service");
    std::fs::write(
        &copy,
        unit.replace(INSTALLED, env!("CARGO_BIN_EXE_triaged")),
    )
    .unwrap();
    run_analyze(&analyze, &["verify".as_ref(), copy.as_os_str()]);
}

/// A bad config or a damaged store must stop the service for good, not restart it every
/// `RestartSec`: the unit's `RestartPreventExitStatus` names the exit codes `triaged run` gives
/// them, and it covers the main process only, so a check in `ExecStartPre=` would be restarted
/// in a loop.
#[test]
fn a_bad_config_stops_the_unit_instead_of_restarting_it() {
    let unit = std::fs::read_to_string(unit_path()).expect("read the unit");
    let service = service_settings(&unit);
    assert!(
        !service.contains_key("ExecStartPre"),
        "RestartPreventExitStatus= does not cover ExecStartPre=: {service:?}"
    );
    assert_eq!(service["Restart"], "on-failure");
    let prevented: Vec<i32> = service["RestartPreventExitStatus"]
        .split_whitespace()
        .map(|code| code.parse().expect("exit codes"))
        .collect();
    // A damaged store too (tests/durability.rs checks that `triaged run` exits with it).
    assert!(
        prevented.contains(&i32::from(triaged::EXIT_DAMAGED)),
        "{prevented:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("triaged.toml");
    std::fs::write(&config, "[log]\nlevel = \"eror\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_triaged"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run triaged");
    let code = out.status.code().expect("an exit code");
    assert!(prevented.contains(&code), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("triaged.toml:2"), "{said}");
}

/// What the README tells an operator to add for secret files (its `LoadCredential=` lines) is
/// valid in the shipped unit, and keeps its rating: the dynamic user gets secrets as systemd
/// credentials, not as files it cannot read.
#[test]
fn the_documented_credentials_drop_in_verifies_with_the_unit() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read the README");
    let credentials: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("LoadCredential="))
        .collect();
    assert!(
        !credentials.is_empty(),
        "the README shows no LoadCredential="
    );
    let unit = std::fs::read_to_string(unit_path()).expect("read the unit");
    assert!(
        unit.contains("LoadCredential=") && unit.contains("${CREDENTIALS_DIRECTORY}"),
        "the unit's comments do not say how secrets reach the service"
    );
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("triaged.service");
    let with_credentials = unit
        .replace("/usr/local/bin/triaged", env!("CARGO_BIN_EXE_triaged"))
        .replace(
            "\n[Install]",
            &format!("{}\n\n[Install]", credentials.join("\n")),
        );
    std::fs::write(&copy, with_credentials).unwrap();
    run_analyze(&analyze, &["verify".as_ref(), copy.as_os_str()]);
}

/// The unit's `Documentation=` names what the install steps put there.
#[test]
fn the_units_documentation_is_installed_by_the_install_steps() {
    let unit = std::fs::read_to_string(unit_path()).expect("read the unit");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read the README");
    let documentation = unit
        .lines()
        .find_map(|l| l.strip_prefix("Documentation="))
        .expect("a Documentation= line");
    for url in documentation.split_whitespace() {
        if let Some(path) = url.strip_prefix("file://") {
            for (name, text) in [("README", &readme), ("unit", &unit)] {
                assert!(
                    text.lines()
                        .any(|l| l.contains("install ") && l.contains(path)),
                    "{url}: no install step in the {name} puts it there"
                );
            }
        }
    }
}

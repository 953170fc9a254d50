//! The store's disk full or read-only, for real: the data directory is a small tmpfs the test
//! mounts, filled with a filler file (then the filler is deleted: "space returns"), or remounted
//! read-only. triaged must answer 503 with Retry-After and say why, acknowledge nothing it could
//! not write, report not-ready, and take writes again by itself once the disk does, without a
//! restart; afterwards a `kill -9` and restart find every acknowledged alert.
//!
//! A file system cannot be remounted read-only under a process that has files open for writing
//! (the kernel answers "busy"), so the read-only case stops the daemon, remounts, and starts it
//! on the read-only store; the case of a store made read-only under the running daemon uses the
//! immutable attribute (`chattr +i`, which takes effect on open files at once).
//!
//! Mounting needs root (CAP_SYS_ADMIN), the immutable attribute root and a disk file system
//! (ext4, xfs ...) under the temporary directory. Without them these tests skip, saying so,
//! except under CI (`CI=true`), where they fail: CI runs as root and must run them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Long enough for a reopen attempt (every second) on a loaded machine.
const RECOVERY_WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of a few MiB mounted on a fresh temporary directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount one, or say why not: `None` means skip (not permitted here, and not CI).
    fn mount(size_mb: u32) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("triaged-tmpfs-")
            .tempdir()
            .expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        skip(&format!(
            "this test mounts a tmpfs as the data directory, and mounting failed ({why}); run it as root"
        ));
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Take every free byte with a filler file; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Small writes too, for the last partial page.
        while let Ok(n) = file.write(&chunk[..512]) {
            if n == 0 {
                break;
            }
            written += n;
        }
        assert!(written > 0, "the tmpfs was already full");
        path
    }

    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -o remount,{mode} failed: {st}");
    }
}

/// Skip a test that needs privileges this run lacks, loudly; under CI, fail instead.
fn skip(message: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI runs as root and must run it)");
    }
    eprintln!("SKIPPED: {message}");
}

/// The immutable attribute on a directory and every file in it: no write succeeds, not even
/// root's, nor through a file already open. Cleared when dropped (or the directory could not be
/// deleted).
struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    /// `None` means skip (not permitted or not supported here, and not CI).
    fn set(dir: &Path) -> Option<Immutable> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("list the data directory")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        paths.push(dir.to_path_buf());
        let mut set = Immutable { paths: Vec::new() };
        for path in paths {
            let out = Command::new("chattr").arg("+i").arg(&path).output();
            match out {
                Ok(o) if o.status.success() => set.paths.push(path),
                other => {
                    let why = match other {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                        Err(e) => format!("cannot run chattr: {e}"),
                    };
                    skip(&format!(
                        "this test makes the store immutable with chattr +i, which failed ({why}); run it as root on a disk file system"
                    ));
                    return None;
                }
            }
        }
        Some(set)
    }

    fn clear(&mut self) {
        for path in self.paths.drain(..) {
            let st = Command::new("chattr").arg("-i").arg(&path).status();
            assert!(
                st.is_ok_and(|s| s.success()),
                "chattr -i {} failed",
                path.display()
            );
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon that is still being killed may hold it for a moment.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn alert_labels(name: &str, i: usize) -> Value {
    labels(&[
        ("alertname", name),
        ("service", "db"),
        ("instance", &format!("db-{i:04}")),
    ])
}

fn post_alert(d: &Daemon, labels: &Value) -> Response {
    d.post_json(
        "/api/v1/alerts",
        json!({"alerts": [{"labels": labels, "status": "firing"}]}),
    )
}

/// Post `n` alerts named `name`, each acknowledged (200); their label sets.
fn post_acked(d: &Daemon, name: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let l = alert_labels(name, i);
            let resp = post_alert(d, &l);
            assert_eq!(resp.status, 200, "{resp}");
            l
        })
        .collect()
}

/// Post an alert named `name` until it is acknowledged (the store took writes again, by
/// itself, within `RECOVERY_WAIT`); its label set.
fn post_once_recovered(d: &Daemon, name: &str, what: &str) -> Value {
    let back = alert_labels(name, 0);
    poll_until_for(what, RECOVERY_WAIT, || {
        let resp = post_alert(d, &back);
        if resp.status == 200 {
            Ok(())
        } else {
            Err(resp.to_string())
        }
    });
    back
}

/// A refusal because the store takes no writes: 503, Retry-After, and the reason in the body.
fn assert_refused_saying(resp: &Response, why: &str) {
    assert_eq!(resp.status, 503, "{resp}");
    assert!(
        resp.header("retry-after").is_some(),
        "no Retry-After: {resp}"
    );
    let body = resp.json();
    assert_eq!(body["error"], "store unavailable", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("store not writable: ") && detail.contains(why),
        "the detail does not say {why:?}: {body}"
    );
}

/// `/-/ready` answers 503 naming `why`.
fn assert_not_ready_saying(d: &Daemon, why: &str) {
    let ready = d.get("/-/ready");
    assert_eq!(ready.status, 503, "{ready}");
    assert!(
        ready.text().contains("store not writable") && ready.text().contains(why),
        "{ready}"
    );
}

/// Every alert in `acked` (label sets that got a 2xx) is stored, after a SIGKILL and a restart.
fn assert_all_present_after_kill9(d: &mut Daemon, acked: &[Value]) {
    d.kill9();
    d.restart();
    assert_eq!(d.get("/-/ready").status, 200, "ready after restart");
    for labels in acked {
        let (status, body) = d.alert(&fingerprint(labels));
        assert_eq!(
            status, 200,
            "an acknowledged alert is missing: {labels} {body}"
        );
        assert_eq!(body["status"], "firing", "{body}");
    }
    // The store opens and takes writes as any other.
    let resp = post_alert(d, &alert_labels("AfterRestart", 0));
    assert_eq!(resp.status, 200, "{resp}");
}

#[test]
fn a_full_disk_answers_503_saying_why_and_recovers_when_space_returns() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let mut d = Daemon::start_in(&config(""), Some(&fs.data_dir()));
    let mut acked = post_acked(&d, "BeforeFull", 20);

    let filler = fs.fill();
    // sled may still have room in pages it already holds: those writes are on disk and
    // rightly acknowledged. The first write that needs new space must be refused.
    let mut refused = None;
    for i in 0..5000 {
        let l = alert_labels("WhileFilling", i);
        let resp = post_alert(&d, &l);
        match resp.status {
            200 => acked.push(l),
            _ => {
                refused = Some(resp);
                break;
            }
        }
    }
    let refused = refused.expect("the disk is full, and triaged acknowledged 5000 more alerts");
    assert_refused_saying(&refused, "No space left on device (os error 28)");

    // While the disk stays full: every change refused, reads too, not ready, counted.
    for i in 0..20 {
        let resp = post_alert(&d, &alert_labels("WhileFull", i));
        assert_refused_saying(&resp, "No space left on device");
    }
    let ack = d.action("INC-1", "ack", json!({"actor": "alice"}));
    assert_refused_saying(&ack, "No space left on device");
    let (status, body) = d.alert(&fingerprint(&acked[0]));
    assert_eq!(status, 503, "{body}");
    assert_not_ready_saying(&d, "No space left on device (os error 28)");
    assert_eq!(d.metric("triaged_store_writable", &[]), 0.0);
    assert!(d.metric("triaged_store_write_failures_total", &[]) >= 1.0);
    assert!(
        d.metric(
            "triaged_alerts_rejected_total",
            &[("source", "native"), ("reason", "store_unavailable")]
        ) >= 20.0
    );
    assert!(d.get("/-/healthy").status == 200, "alive while not ready");

    // Space returns: triaged takes writes again by itself, in the same process.
    let pid = d.pid();
    std::fs::remove_file(&filler).expect("delete the filler");
    acked.push(post_once_recovered(
        &d,
        "AfterSpaceReturned",
        "a write accepted once space returned",
    ));
    assert_eq!(d.pid(), pid);
    assert!(d.is_running(), "recovered without a restart");
    assert_eq!(d.get("/-/ready").status, 200);
    assert_eq!(d.metric("triaged_store_writable", &[]), 1.0);
    for l in &acked {
        let (status, body) = d.alert(&fingerprint(l));
        assert_eq!(
            status, 200,
            "an acknowledged alert is missing after recovery: {body}"
        );
    }
    // Incidents kept their numbers: nothing refused took or reused one.
    let ids: Vec<u64> = d
        .all_incidents("")
        .iter()
        .map(|i| inc_num(i["id"].as_str().unwrap()))
        .collect();
    let distinct: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "incident ids repeat: {ids:?}");

    assert_all_present_after_kill9(&mut d, &acked);
}

#[test]
fn a_read_only_store_answers_503_saying_why_and_recovers_when_writable() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let mut d = Daemon::start_in(&config(""), Some(&fs.data_dir()));
    let mut acked = post_acked(&d, "BeforeReadOnly", 10);
    // A file system cannot be made read-only under a process writing to it (the kernel says
    // "busy"): stop, remount read-only, start. triaged starts, serves, and says why it refuses.
    let st = d.terminate();
    assert!(st.success(), "{st}");
    fs.remount("ro");
    d.restart();
    let resp = post_alert(&d, &alert_labels("WhileReadOnly", 0));
    assert_refused_saying(&resp, "Read-only file system (os error 30)");
    assert_not_ready_saying(&d, "Read-only file system (os error 30)");
    assert_eq!(d.metric("triaged_store_writable", &[]), 0.0);
    let (status, _) = d.get_json("/api/v1/incidents");
    assert_eq!(status, 503);
    assert!(d.stderr_text().contains("disk refuses writes"));

    let pid = d.pid();
    fs.remount("rw");
    acked.push(post_once_recovered(
        &d,
        "AfterReadWrite",
        "a write accepted once read-write",
    ));
    assert_eq!(d.pid(), pid, "recovered without a restart");
    assert_eq!(d.get("/-/ready").status, 200);
    // What was stored before is all there, and new incidents do not reuse old numbers.
    let resp = post_alert(&d, &alert_labels("NewGroup", 0)).json();
    let new_id = touched(&resp)[0].clone();
    assert!(inc_num(&new_id) > 1, "{new_id}");
    for l in &acked {
        assert_eq!(d.alert(&fingerprint(l)).0, 200, "{l}");
    }
    assert_all_present_after_kill9(&mut d, &acked);
}

#[test]
fn a_store_made_immutable_under_the_running_daemon_answers_503_and_recovers() {
    let mut d = Daemon::with("");
    let mut acked = post_acked(&d, "BeforeImmutable", 10);
    let data_dir = d.data_dir().to_path_buf();
    let Some(mut immutable) = Immutable::set(&data_dir) else {
        return;
    };
    // The next write fails, and is not acknowledged (it names a new alert: a repeat of one
    // already stored would write too, but let there be no doubt).
    let refused = post_alert(&d, &alert_labels("WhileImmutable", 0));
    assert_refused_saying(&refused, "Operation not permitted (os error 1)");
    assert_not_ready_saying(&d, "Operation not permitted (os error 1)");
    assert_eq!(d.metric("triaged_store_writable", &[]), 0.0);
    // Still refused a while later: the reopen attempts fail too.
    let before = d.metric("triaged_store_write_failures_total", &[]);
    assert!(before >= 1.0);
    let resp = post_alert(&d, &alert_labels("WhileImmutable", 1));
    assert_refused_saying(&resp, "Operation not permitted");

    let pid = d.pid();
    immutable.clear();
    acked.push(post_once_recovered(
        &d,
        "AfterImmutable",
        "a write accepted once writable",
    ));
    assert_eq!(d.pid(), pid, "recovered without a restart");
    assert_eq!(d.get("/-/ready").status, 200);
    assert_eq!(d.metric("triaged_store_writable", &[]), 1.0);
    assert_all_present_after_kill9(&mut d, &acked);
}

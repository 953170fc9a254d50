//! systemd's service notification protocol (sd_notify(3)), spoken directly: no libsystemd. This
//! module owns the datagrams to `$NOTIFY_SOCKET` and the watchdog keep-alive; when to send them
//! is decided by [`crate::run`] (startup, shutdown) and [`crate::reload`], and the writer's
//! liveness is [`crate::pipeline::Heartbeat`].
//!
//! | when | message |
//! |---|---|
//! | store open, writer running, HTTP listener bound, Kafka source started | `READY=1`, `MAINPID=`, `STATUS=` |
//! | a reload starts (SIGHUP, `POST /-/reload`) | `RELOADING=1`, `MONOTONIC_USEC=`, `STATUS=` |
//! | the reload is over, applied or refused | `READY=1`, `STATUS=` |
//! | shutdown begins, before the drain | `STOPPING=1`, `STATUS=` |
//! | every `$WATCHDOG_USEC`/2, only while the writer beats | `WATCHDOG=1` |
//!
//! Without `$NOTIFY_SOCKET` (not under systemd, or a unit that is not `Type=notify`) every call
//! does nothing. Notifying never stops the daemon: a failed send is logged once, as a warning,
//! and the daemon carries on (systemd then decides, by its own timeouts, what to do with us).

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pipeline::Heartbeat;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("$NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@...)")]
    Unsupported(String),
    #[error("$NOTIFY_SOCKET={value:?} is not a usable socket address: {source}")]
    Address {
        value: String,
        source: std::io::Error,
    },
    #[error("cannot create a socket for $NOTIFY_SOCKET: {0}")]
    Socket(std::io::Error),
}

/// Sends state changes to systemd, or nothing when not asked to.
pub struct Notifier {
    target: Option<Target>,
    /// A send failed already: the next failures are not logged again.
    warned: AtomicBool,
}

struct Target {
    /// Unbound and non-blocking: a full receive queue at systemd's end is a failed send, never a
    /// stalled runtime thread.
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for logs.
    name: String,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            warned: AtomicBool::new(false),
        }
    }

    /// From `$NOTIFY_SOCKET`, read once, here. (We spawn no children, so the variable is left in
    /// the environment.)
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// For `value`, as `$NOTIFY_SOCKET` would give it: an absolute path, or `@name` for Linux's
    /// abstract namespace. Unset or empty: disabled. Anything else is logged and disabled.
    pub fn new(value: Option<&OsStr>) -> Notifier {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Notifier::disabled();
        };
        match Target::open(value) {
            Ok(target) => {
                tracing::debug!(notify_socket = %target.name, "notifying systemd");
                Notifier {
                    target: Some(target),
                    warned: AtomicBool::new(false),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "systemd will not be notified");
                Notifier::disabled()
            }
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Startup is done, or a reload is over: `READY=1`.
    pub fn ready(&self, status: &str) {
        self.notify(&format!(
            "READY=1\nMAINPID={}\nSTATUS={}",
            std::process::id(),
            one_line(status)
        ));
    }

    /// A reload begins; [`Notifier::ready`] ends it. systemd ≥ 253 wants the CLOCK_MONOTONIC
    /// time with it, to tell this reload from an earlier one.
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// Shutdown begins.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: draining the writer queue");
    }

    /// The keep-alive. Only [`Watchdog`] sends it, and only while the writer makes progress.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// Send one message (newline-separated `KEY=value` assignments); true when it was sent.
    pub fn notify(&self, message: &str) -> bool {
        let Some(target) = &self.target else {
            return false;
        };
        match target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            Ok(_) => true,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        notify_socket = %target.name,
                        error = %e,
                        "cannot notify systemd (further failures are not logged)"
                    );
                }
                false
            }
        }
    }
}

impl Target {
    fn open(value: &OsStr) -> Result<Target, NotifyError> {
        let name = value.to_string_lossy().into_owned();
        let bytes = value.as_bytes();
        let addr = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
            SocketAddr::from_abstract_name(abstract_name)
        } else if bytes.starts_with(b"/") {
            SocketAddr::from_pathname(Path::new(value))
        } else {
            return Err(NotifyError::Unsupported(name));
        }
        .map_err(|source| NotifyError::Address {
            value: name.clone(),
            source,
        })?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Target { socket, addr, name })
    }
}

/// A `STATUS=` value must not end the assignment early.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in µs, systemd's clock (std's `Instant` is the same clock but hides its value).
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// `$WATCHDOG_USEC`, when systemd's watchdog is on and meant for this process; otherwise (or when
/// the variables make no sense, which is logged) `None`.
pub fn watchdog_from_env() -> Option<Duration> {
    let var =
        |name| std::env::var_os(name).map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
    let usec = var("WATCHDOG_USEC");
    let pid = var("WATCHDOG_PID");
    match watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()) {
        Ok(interval) => interval,
        Err(e) => {
            tracing::warn!(error = %e, "systemd's watchdog is off");
            None
        }
    }
}

/// The watchdog interval `$WATCHDOG_USEC` and `$WATCHDOG_PID` describe for the process `own_pid`:
/// none when `usec` is unset or 0, or `pid` names another process (our parent's watchdog).
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let usec: u64 = usec
        .trim()
        .parse()
        .map_err(|_| format!("$WATCHDOG_USEC={usec:?} is not a number of microseconds"))?;
    if let Some(pid) = pid {
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| format!("$WATCHDOG_PID={pid:?} is not a process id"))?;
        if pid != own_pid {
            return Ok(None);
        }
    }
    Ok((usec > 0).then(|| Duration::from_micros(usec)))
}

/// Pings systemd's watchdog every half interval, but only while the writer's heartbeat is fresh:
/// a writer wedged in a commit, or dead, stops the pings, and systemd restarts the service once
/// a whole interval passes without one.
pub struct Watchdog {
    notifier: Arc<Notifier>,
    heartbeat: Arc<Heartbeat>,
    interval: Duration,
    /// The last check found the writer stalled (logged once per stall).
    stalled: bool,
}

impl Watchdog {
    pub fn new(notifier: Arc<Notifier>, heartbeat: Arc<Heartbeat>, interval: Duration) -> Self {
        Watchdog {
            notifier,
            heartbeat,
            interval,
            stalled: false,
        }
    }

    /// How often the writer must beat, even when idle, for `interval`: a quarter of it, so a
    /// beat that is a little late does not miss a ping.
    pub fn beat_every(interval: Duration) -> Duration {
        interval / 4
    }

    /// The oldest heartbeat that still counts as progress: half the interval. A writer that
    /// stalls longer misses at least one ping; one that stalls a whole interval is restarted.
    pub fn max_age(&self) -> Duration {
        self.interval / 2
    }

    /// One check at `now`: ping when the writer beat recently enough. Returns whether it pinged.
    pub fn check(&mut self, now: Instant) -> bool {
        let age = self.heartbeat.age_at(now);
        if age <= self.max_age() {
            if std::mem::take(&mut self.stalled) {
                tracing::info!(
                    stalled_ms = age.as_millis() as u64,
                    "the writer makes progress again"
                );
            }
            self.notifier.watchdog();
            true
        } else {
            if !std::mem::replace(&mut self.stalled, true) {
                tracing::error!(
                    stalled_ms = age.as_millis() as u64,
                    watchdog_ms = self.interval.as_millis() as u64,
                    "the writer makes no progress; withholding systemd's watchdog ping"
                );
            }
            false
        }
    }

    /// Check every half interval, until the task is aborted.
    pub async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.interval / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    /// A receiving socket in a temp dir, as systemd's would be.
    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        (dir, path, socket)
    }

    /// The datagram waiting on `socket`, if any (never blocks: the send already happened).
    fn received(socket: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 4096];
        match socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => panic!("recv: {e}"),
        }
    }

    #[test]
    fn ready_reaches_a_path_socket_with_pid_and_one_line_status() {
        let (_dir, path, socket) = listener();
        let notifier = Notifier::new(Some(path.as_os_str()));
        assert!(notifier.is_enabled());
        notifier.ready("listening on 127.0.0.1:1\nREADY=0");
        let message = received(&socket).expect("a datagram");
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(
            lines,
            [
                "READY=1".to_string(),
                format!("MAINPID={}", std::process::id()),
                "STATUS=listening on 127.0.0.1:1 READY=0".to_string(),
            ]
        );
    }

    #[test]
    fn reloading_carries_the_monotonic_time_of_now() {
        let (_dir, path, socket) = listener();
        let notifier = Notifier::new(Some(path.as_os_str()));
        let before = monotonic_usec();
        notifier.reloading();
        let after = monotonic_usec();
        let message = received(&socket).expect("a datagram");
        assert!(message.starts_with("RELOADING=1\n"), "{message}");
        let usec: u64 = message
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"))
            .parse()
            .unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
    }

    #[test]
    fn an_abstract_name_is_reached() {
        let name = format!(
            "triaged-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::new(Some(OsStr::new(&format!("@{name}"))));
        notifier.stopping();
        let message = received(&socket).expect("a datagram");
        assert!(message.starts_with("STOPPING=1\n"), "{message}");
    }

    #[test]
    fn unset_empty_or_unsupported_sockets_send_nothing() {
        for value in [
            None,
            Some(""),
            Some("relative/notify.sock"),
            Some("vsock:2:9"),
        ] {
            let notifier = Notifier::new(value.map(OsStr::new));
            assert!(!notifier.is_enabled(), "{value:?}");
            assert!(!notifier.notify("READY=1"), "{value:?}");
        }
    }

    #[test]
    fn a_failed_send_is_reported_once_and_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::new(Some(dir.path().join("nobody-listens").as_os_str()));
        assert!(notifier.is_enabled());
        assert!(!notifier.notify("READY=1"));
        assert!(notifier.warned.load(Ordering::Relaxed));
        assert!(!notifier.notify("WATCHDOG=1"));
    }

    #[test]
    fn the_watchdog_interval_is_ours_only_when_the_pid_matches() {
        let us = 4242;
        let ok = |usec, pid| watchdog_interval(usec, pid, us).unwrap();
        assert_eq!(ok(None, None), None);
        assert_eq!(ok(Some("0"), None), None);
        assert_eq!(ok(Some("30000000"), None), Some(Duration::from_secs(30)));
        assert_eq!(
            ok(Some("200000"), Some("4242")),
            Some(Duration::from_millis(200))
        );
        assert_eq!(ok(Some("200000"), Some("1")), None);
        assert!(watchdog_interval(Some("30s"), None, us).is_err());
        assert!(watchdog_interval(Some("200000"), Some("me"), us).is_err());
    }

    #[test]
    fn a_stale_heartbeat_sends_no_ping_and_a_fresh_one_does() {
        let (_dir, path, socket) = listener();
        let notifier = Arc::new(Notifier::new(Some(path.as_os_str())));
        let heartbeat = Arc::new(Heartbeat::new());
        let interval = Duration::from_secs(30);
        let mut watchdog = Watchdog::new(notifier, heartbeat.clone(), interval);
        let t0 = Instant::now();
        heartbeat.beat_at(t0);

        // Within half the interval: a ping.
        assert!(watchdog.check(t0 + interval / 4));
        assert_eq!(received(&socket).as_deref(), Some("WATCHDOG=1"));
        assert!(watchdog.check(t0 + interval / 2 - Duration::from_millis(1)));
        assert_eq!(received(&socket).as_deref(), Some("WATCHDOG=1"));

        // The writer stopped beating: no ping, however often we check.
        for late in [
            interval / 2 + Duration::from_millis(1),
            interval,
            interval * 3,
        ] {
            assert!(!watchdog.check(t0 + late), "{late:?}");
            assert_eq!(
                received(&socket),
                None,
                "a ping {late:?} after the last beat"
            );
        }

        // It beats again: the pings resume.
        heartbeat.beat_at(t0 + interval * 3);
        assert!(watchdog.check(t0 + interval * 3 + Duration::from_secs(1)));
        assert_eq!(received(&socket).as_deref(), Some("WATCHDOG=1"));
    }
}

//! The pipeline: THE writer. Every state change is a [`Command`] sent into one bounded queue and
//! applied, in order, by one thread:
//!
//! ```text
//! normalize ► dedup ► classify ► triage ► incident changes ► journal ► fdatasync ► sled ► answer
//! ```
//!
//! The writer takes whatever commands are queued together (up to [`MAX_BATCH`], waiting a
//! moment for as many as the last commit carried: see [`gather`]), applies each to
//! a transaction overlay ([`Tx`]), commits the overlay as one journal record with one fdatasync,
//! then applies it to sled (group commit: see [`Store::commit`]), then answers every sender.
//! Only after the commit do metrics move, so a failed commit neither acknowledges nor counts
//! anything. A failed commit takes the store down (see [`Store`]): the writer then answers
//! every command at once with the reason (disk full, read-only ...), tries to reopen the store
//! every second, and rebuilds what it keeps in memory from the disk before it takes commands
//! again. Alert expiries (an `endsAt` passing, or `dedup.resolve_timeout` without a refresh)
//! are deadlines in the store that the same loop turns into resolutions.
//!
//! Sources own parsing and HTTP; the store owns encoding; this module owns the decisions.

pub mod classify;
pub mod dedup;
pub mod escalation;
mod inbox;
#[cfg(test)]
mod tests;
pub mod triage;
mod tx;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::alert::{Alert, Fingerprint, SeverityMap, Source};
use crate::config::{Config, EscalationConfig, FlappingConfig, TiersConfig};
use crate::incident::{Incident, IncidentId, Tier, TransitionError};
use crate::metrics::Metrics;
use crate::silence::{self, PostableSilence, SilenceId, SilenceState};
use crate::store::{Store, StoreError};

use classify::Rules;
use inbox::{Receiver, Sender};
pub use tx::{new_record, record_repeat};
use tx::{Memory, Tx};

/// Most commands applied in one group commit: bounds the latency of the first in the batch.
pub const MAX_BATCH: usize = 1024;
/// Most deadlines handled in one pass, so a backlog after downtime cannot stall ingestion.
const MAX_TIMERS_PER_PASS: usize = 5000;
/// Refreshes folded into their records per batch, when the refresh log asks for it.
const MAX_FOLDS_PER_PASS: usize = 512;
/// The writer steps (applies what fell due, commits) at least this often even with no deadline
/// pending. For systemd's watchdog it may wake more often; those wakes only beat.
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// How long a group commit stays open for the commands the writer expects (see [`gather`]).
const GATHER_FOR: Duration = Duration::from_micros(200);
/// While the store is down, how often the writer tries to reopen it.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// How long a queued command is left to the HTTP runtime's committer before the writer's own
/// thread takes it (see [`Desk`]): longer than the HTTP worker takes to read a request from
/// each of its busy connections at batch 1 (16 at 20–30 µs each), short beside what a commit
/// waits for under load.
const HANDOFF: Duration = Duration::from_millis(1);
/// After a commit this slow (a disk writing back, or failing), the HTTP runtime's committer
/// leaves commits to the writer's thread until one is fast again: the runtime's other
/// connections should not wait on such a disk.
const SLOW_COMMIT: Duration = Duration::from_millis(20);
/// A request with this many alerts is committed by the writer's thread at once, not left to
/// the HTTP runtime's committer (see [`Desk`]): reading such requests keeps the HTTP worker busy,
/// and the two threads then parse and commit side by side.
const URGENT_ALERTS: usize = 16;

/// Adds to `commands` (which holds the first) the rest of one group commit: whatever is queued,
/// then, while fewer than `expect` commands have come, what arrives before `until`.
///
/// Senders of alerts mostly wait for their answer before they send again (Prometheus and
/// Alertmanager keep a bounded number of requests in flight), so the senders answered by one
/// commit come back together a few hundred microseconds later, and without this the first
/// of them would start a commit alone and the rest wait for the one after. `expect`, the
/// previous commit's count, stands for them; a lone sender (`expect` ≤ 1) never waits, and
/// nobody waits longer than `until`, a fraction of what a commit's fdatasync costs.
/// The writer then makes about half as many commits per alert at batch 1, and each commit's
/// fixed cost (the fdatasync) is shared by twice as many requests.
fn gather(rx: &Receiver<Command>, commands: &mut Vec<Command>, expect: usize, until: Instant) {
    rx.gather(commands, expect, MAX_BATCH, until);
}

/// The writer, shared by the two places that commit:
/// - its own thread ([`Desk::run`]): deadlines, the heartbeat, the store being down and coming
///   back, shutdown, and every command that has waited [`HANDOFF`] in the queue;
/// - with the daemon, a task on the HTTP runtime ([`Desk::commit_when_idle`]) that commits what
///   is queued once its worker has nothing else to run.
///
/// Why the second: at batch 1 the senders each wait for their answer, so a cycle is a chain.
/// The HTTP worker reads and parses a request from every connection, then the commit runs with
/// its fdatasync, then the worker writes the answers and reads the next requests. Done on the
/// writer's thread, every cycle crosses threads twice (the writer woken for the requests, the
/// worker woken for the answers) and moves the parsed alerts to the other CPU and back, while
/// the other link of the chain waits. Done by the worker that parsed them, the commit costs no
/// wake on either side and the answers are scheduled on the worker at once
/// (`benches/HISTORY.md`). Under a steady load of large requests the worker is never idle, and the
/// writer's thread then commits while the worker parses: every command is taken within about
/// [`HANDOFF`] whoever takes it, and commits stay in queue order because only the holder of
/// the writer's lock takes from the queue.
pub struct Desk {
    rx: Arc<Receiver<Command>>,
    kick: Arc<tokio::sync::Notify>,
    heartbeat: Arc<Heartbeat>,
    /// A committer task runs: the thread then leaves a command to it for `handoff`.
    helped: AtomicBool,
    /// [`HANDOFF`], but for tests.
    handoff: Duration,
    /// The loop has stopped (asked to, or every sender gone): nothing more is committed.
    stopped: AtomicBool,
    writer: Mutex<Writer>,
}

impl Desk {
    /// The writer, unless a commit panicked holding it: that is a bug, and the daemon stops.
    fn lock(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(writer) => writer,
            Err(_) => panic!("a commit panicked: the writer's state may be half applied"),
        }
    }

    /// The writer's loop: runs on its own thread until [`Command::Shutdown`] or every sender is
    /// gone.
    pub fn run(self: Arc<Self>) {
        let mut writer = self.lock();
        writer.start();
        let mut wait = self.release(writer);
        let mut last_step = Instant::now();
        // Commands the last group commit carried: as many are expected in the next.
        let mut expect = 0;
        loop {
            self.heartbeat.beat();
            let helped = self.helped.load(Ordering::Acquire);
            let age = if helped { self.handoff } else { Duration::ZERO };
            let waited = self.rx.wait(age, wait);
            if waited == Err(RecvTimeoutError::Disconnected) {
                break;
            }
            let mut writer = self.lock();
            if self.stopped.load(Ordering::Acquire) {
                break;
            }
            let mut commands = Vec::new();
            match waited {
                // Aged: the committer could not take it (its worker is busy). Nothing to wait for.
                Ok(false) if helped => gather(&self.rx, &mut commands, 0, Instant::now()),
                Ok(_) => {
                    gather(&self.rx, &mut commands, expect, Instant::now() + GATHER_FOR);
                    expect = commands.len();
                }
                Err(_) => {}
            }
            let due = writer
                .next_deadline
                .is_some_and(|at| at <= writer.clock.now());
            if writer.down.is_none()
                && commands.is_empty()
                && writer.open.is_none()
                && !due
                && last_step.elapsed() < IDLE_WAKE
            {
                // A wake for the heartbeat only: nothing to apply, so no empty commit.
                wait = self.release(writer);
                continue;
            }
            writer.metrics.queue_depth.sub(commands.len() as i64);
            let stop = if writer.down.is_some() {
                writer.refuse(commands)
            } else {
                writer.step(commands)
            };
            if stop {
                break;
            }
            wait = self.release(writer);
            last_step = Instant::now();
        }
        self.stopped.store(true, Ordering::Release);
        // The committer, if any, sees `stopped` and ends.
        self.kick.notify_one();
        self.lock().finish();
    }

    /// Let go of the writer on its own thread; how long the thread may then wait (read while
    /// it held the writer: a commit by the committer that changes it wakes the thread). The
    /// committer may have found the writer taken meanwhile and left what it was to commit:
    /// hand that back rather than let it wait out the hand-off.
    fn release(&self, writer: MutexGuard<'_, Writer>) -> Duration {
        let wait = writer.wait();
        drop(writer);
        let look = self.rx.look();
        if self.helped.load(Ordering::Acquire) && look.queued > 0 && !look.urgent {
            self.kick.notify_one();
        }
        wait
    }

    /// The committer: a task on the HTTP runtime that commits what is queued whenever its worker
    /// has run every other task that was ready (so that every request already read joins the
    /// commit). It blocks its worker for the commit, as the worker would otherwise wait for
    /// the answers anyway; it leaves the commit to the writer's thread while that thread holds
    /// the writer, while the store is down, and after a commit that took [`SLOW_COMMIT`] or
    /// more, until one is fast again. Ends once the writer has stopped.
    pub fn commit_when_idle(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send {
        /// While it lives, the writer's thread leaves commands to the committer for a while.
        struct Helping(Arc<Desk>);
        impl Drop for Helping {
            fn drop(&mut self) {
                self.0.helped.store(false, Ordering::Release);
            }
        }
        // Before the first poll: the thread leaves even the first commands to it.
        self.helped.store(true, Ordering::Release);
        let helping = Helping(self);
        async move {
            let desk = &helping.0;
            // Commands queued before the committer ran.
            desk.kick.notify_one();
            // Commands the committer's last commit carried.
            let mut expect = 0;
            loop {
                desk.kick.notified().await;
                if desk.stopped.load(Ordering::Acquire) {
                    return;
                }
                // Yield until two rounds of the scheduler pass with nothing queued anew (a task
                // woken by the I/O driver in one round may still be behind this one in the next),
                // and, for up to GATHER_FOR, until as many commands are queued as the last commit
                // carried: the senders it answered come back together (see [`gather`]). What is
                // urgent is the writer's thread's.
                // Meanwhile, what comes is applied to the open transaction at once, while the
                // worker would otherwise wait for the rest of the group: the commit then only
                // writes.
                let first = Instant::now();
                let mut seen = desk.rx.look();
                let mut held = 0;
                while !seen.urgent {
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                    let now = desk.rx.look();
                    if now.pushes == seen.pushes
                        && (now.queued + held >= expect || first.elapsed() >= GATHER_FOR)
                    {
                        if let Some(n) = desk.commit_queued() {
                            expect = n;
                        }
                        break;
                    }
                    if now.pushes != seen.pushes && !now.urgent {
                        held += desk.apply_queued();
                    }
                    seen = now;
                }
            }
        }
    }

    /// The writer, for the runtime's committer: not while the thread holds it (the thread then
    /// commits, and takes what is left within HANDOFF), the store is down, the last commit was
    /// slow, or the writer has stopped.
    fn writer_for_runtime(&self) -> Option<MutexGuard<'_, Writer>> {
        let writer = self.writer.try_lock().ok()?;
        let leave = writer.down.is_some() || writer.slow || self.stopped.load(Ordering::Acquire);
        (!leave).then_some(writer)
    }

    /// Apply what is queued to the open transaction (beginning one), on the calling thread,
    /// unless the writer's thread should; how many commands. They are committed by the next
    /// commit, whoever makes it.
    fn apply_queued(&self) -> usize {
        let Some(mut writer) = self.writer_for_runtime() else {
            return 0;
        };
        let room = MAX_BATCH.saturating_sub(writer.held());
        let mut commands = Vec::new();
        if room == 0 || !self.rx.take_held(&mut commands, room) {
            return 0;
        }
        let n = commands.len();
        writer.metrics.queue_depth.sub(n as i64);
        writer.add(commands);
        n
    }

    /// Commit what is queued, with the open transaction, on the calling thread, unless the
    /// writer's thread should; how many commands it committed.
    fn commit_queued(&self) -> Option<usize> {
        let mut writer = self.writer_for_runtime()?;
        let held = writer.held();
        let mut commands = Vec::new();
        let taken = self
            .rx
            .take_unless_urgent(&mut commands, MAX_BATCH.saturating_sub(held));
        // Something urgent is queued: the thread takes it with the open transaction.
        if !taken && (held == 0 || self.rx.look().urgent) {
            return None;
        }
        let n = held + commands.len();
        writer.metrics.queue_depth.sub(commands.len() as i64);
        let deadline = writer.next_deadline;
        let stop = writer.step_by(commands, By::Runtime);
        // The thread sleeps until what it knew was due: tell it when that changed for the
        // sooner, when it must stop, or when the store went down (it retries every second).
        let sooner = writer
            .next_deadline
            .is_some_and(|at| deadline.is_none_or(|was| at < was));
        let wake = stop || sooner || writer.down.is_some();
        if stop {
            self.stopped.store(true, Ordering::Release);
        }
        drop(writer);
        if wake {
            self.rx.wake();
        }
        Some(n)
    }
}

/// The writer's liveness: when it last came round its loop. The loop comes round at least every
/// [`Writer::beat_at_least_every`] even when idle, so a heartbeat that grows old means a writer
/// stuck in one step (a commit that never returns); systemd's watchdog
/// ([`crate::sd_notify::Watchdog`]) stops pinging then.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// µs from `origin` to the last beat; only grows.
    last: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that beat just now.
    pub fn new() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    pub fn beat_at(&self, at: Instant) {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        self.last
            .fetch_max(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long before `now` the last beat was (zero if it was later).
    pub fn age_at(&self, now: Instant) -> Duration {
        let last = self.origin + Duration::from_micros(self.last.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

/// Where time comes from: the system clock in the daemon, a fake one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything from the config that decisions depend on, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub exclude_labels: Vec<String>,
    pub severities: SeverityMap,
    pub resolve_timeout: Duration,
    pub group_by: Vec<String>,
    pub tiers: TiersConfig,
    pub auto_resolve: Vec<Tier>,
    pub reopen_window: Duration,
    pub reopen_escalate_after: u32,
    pub reopen_escalate_window: Duration,
    pub escalation: EscalationConfig,
    pub flapping: FlappingConfig,
    /// The sinks reading the outbox; none: nothing is appended to it.
    pub sinks: Vec<String>,
    pub rules: Rules,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Policy, String> {
        Ok(Policy {
            exclude_labels: config.dedup.exclude_labels.clone(),
            severities: config.severity.to_map(),
            resolve_timeout: config.dedup.resolve_timeout.0,
            group_by: config.grouping.group_by.clone(),
            tiers: config.tiers.clone(),
            auto_resolve: config.incidents.auto_resolve.clone(),
            reopen_window: config.dedup.reopen_window.0,
            reopen_escalate_after: config.dedup.reopen_escalate_after,
            reopen_escalate_window: config.dedup.reopen_escalate_window.0,
            escalation: config.escalation.clone(),
            flapping: config.flapping.clone(),
            sinks: config.notify.sink_names(),
            rules: config.compile_rules()?,
        })
    }
}

/// An operator action on an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Acknowledge {
        actor: String,
        reason: Option<String>,
    },
    Resolve {
        actor: String,
        reason: Option<String>,
    },
    /// Up a tier (or to `to`); to L4 only as the vendor handover, which names the `vendor`.
    Escalate {
        actor: String,
        reason: Option<String>,
        to: Option<Tier>,
        vendor: Option<String>,
        vendor_ref: Option<String>,
    },
    /// Down a tier (or to `to`).
    Deescalate {
        actor: String,
        reason: Option<String>,
        to: Option<Tier>,
    },
    Assign {
        actor: String,
        assignee: String,
    },
}

/// What a command achieved, once durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ingested(IngestSummary),
    Incident(Box<Incident>),
    /// An acknowledgement by alert (PagerDuty's `acknowledge`): the incident acked, if any.
    AlertAcknowledged(Option<IncidentId>),
    /// A silence was created or replaced.
    Silence(SilenceId),
    /// A silence was expired.
    SilenceExpired,
    /// A new policy is in force.
    Reloaded,
    /// A dead letter was kept, with this id.
    DeadLettered(u64),
    /// What a retention sweep removed.
    Swept(crate::retention::Removed),
    /// Done, nothing to report.
    Done,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct IngestSummary {
    pub received: usize,
    pub accepted: usize,
    pub deduplicated: usize,
    pub dropped: usize,
    pub auto_handled: usize,
    /// Held back by a silence: stored, no incident.
    pub silenced: usize,
    pub resolved: usize,
    /// Incidents this request opened, joined or resolved.
    pub incidents: Vec<IncidentId>,
    /// What was decided for each alert, in order: filled only when the writer traces
    /// (test-rules, replay), never sent over HTTP.
    #[serde(skip)]
    pub decisions: Vec<Decision>,
}

/// What happened to one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A rule dropped it: counted, not stored.
    Dropped,
    /// A silence holds it: stored, no incident.
    Silenced,
    /// Triaged to L0: recorded, no incident.
    AutoHandled,
    /// It opened, joined or reopened an incident.
    Incident,
    /// A repeat of an alert already firing.
    Deduplicated,
    /// It resolved a firing alert.
    Resolved,
    /// A resolution of an alert not firing: recorded only.
    Recorded,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Dropped => "dropped",
            Verdict::Silenced => "silenced",
            Verdict::AutoHandled => "auto_handled",
            Verdict::Incident => "incident",
            Verdict::Deduplicated => "deduplicated",
            Verdict::Resolved => "resolved",
            Verdict::Recorded => "recorded",
        }
    }
}

/// The trace of one alert through the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub fingerprint: Fingerprint,
    pub verdict: Verdict,
    /// Labels after rules.
    pub labels: crate::alert::Labels,
    /// Labels the rules set.
    pub set_labels: crate::alert::Labels,
    /// Every rule that matched, in order; the last one decided.
    pub rules: Vec<String>,
    pub severity: Option<crate::alert::Severity>,
    pub tier: Option<Tier>,
    pub incident: Option<IncidentId>,
    pub group_key: Option<String>,
    pub runbook: Option<String>,
}

impl Decision {
    /// The rule that decided: the last that matched.
    pub fn rule(&self) -> Option<&str> {
        self.rules.last().map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("no incident {0}")]
    NotFound(IncidentId),
    #[error("no silence {0}")]
    SilenceNotFound(String),
    #[error(transparent)]
    Conflict(#[from] TransitionError),
    /// The request is well-formed but cannot be applied as asked (a bad silence, a handover
    /// without a vendor).
    #[error("{0}")]
    Invalid(String),
    /// The batch this command was in could not be committed; nothing of it is durable.
    #[error("the change could not be stored: {0}")]
    Commit(String),
    /// The store takes no writes (disk full, read-only ...): nothing of this command was
    /// stored; the writer reopens the store by itself once it can.
    #[error("store not writable: {0}")]
    Unavailable(String),
}

pub type Reply = oneshot::Sender<Result<Outcome, PipelineError>>;

pub enum Command {
    Ingest {
        source: Source,
        alerts: Vec<Alert>,
        reply: Reply,
    },
    /// Acknowledge the incident an alert belongs to (PagerDuty `acknowledge`).
    AcknowledgeAlert {
        fingerprint: Fingerprint,
        actor: String,
        reply: Reply,
    },
    Incident {
        id: IncidentId,
        action: Action,
        reply: Reply,
    },
    /// Create a silence, or replace the one its `id` names.
    PutSilence {
        silence: PostableSilence,
        reply: Reply,
    },
    /// End a silence now; what it held back is triaged.
    ExpireSilence { id: SilenceId, reply: Reply },
    /// Decide every later command with this policy (hot reload). Validated before it is sent.
    Reload { policy: Box<Policy>, reply: Reply },
    /// A sink has passed every outbox event up to `seq`.
    AdvanceCursor {
        sink: String,
        seq: u64,
        reply: Reply,
    },
    /// Keep a message a source could not read.
    DeadLetter {
        letter: Box<crate::dead_letter::DeadLetter>,
        reply: Reply,
    },
    /// Remove what `storage.retention` has outlived, each checked again ([`crate::retention`]).
    Sweep {
        sweep: Box<crate::retention::Sweep>,
        reply: Reply,
    },
    /// Apply everything queued before, commit, and stop.
    Shutdown,
}

impl Command {
    /// The handle its sender waits on (none for [`Command::Shutdown`]).
    fn into_reply(self) -> Option<Reply> {
        match self {
            Command::Ingest { reply, .. }
            | Command::AcknowledgeAlert { reply, .. }
            | Command::Incident { reply, .. }
            | Command::PutSilence { reply, .. }
            | Command::ExpireSilence { reply, .. }
            | Command::Reload { reply, .. }
            | Command::AdvanceCursor { reply, .. }
            | Command::DeadLetter { reply, .. }
            | Command::Sweep { reply, .. } => Some(reply),
            Command::Shutdown => None,
        }
    }
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the writer queue is full")]
    Full,
    #[error("triaged is shutting down")]
    Closed,
}

/// The sending side of the writer queue. Bounded: when full, [`Queue::submit`] fails at once
/// with [`SubmitError::Full`] (HTTP answers 503 + Retry-After) instead of buffering without end.
#[derive(Clone)]
pub struct Queue {
    tx: Sender<Command>,
    metrics: Arc<Metrics>,
    /// Tells the runtime's committer ([`Desk::commit_when_idle`]) that something was queued.
    kick: Arc<tokio::sync::Notify>,
}

impl Queue {
    fn send(&self, command: Command) -> Result<(), SubmitError> {
        self.try_send(command).map_err(|(e, _)| e)
    }

    /// Queue a command without waiting for room: a full queue gives the command back, so the
    /// caller can apply backpressure upstream (the Kafka source pauses) and retry it.
    pub fn try_send(&self, command: Command) -> Result<(), (SubmitError, Box<Command>)> {
        self.metrics.queue_depth.inc();
        // Parsing many alerts keeps the HTTP worker busy: the writer's thread commits them,
        // beside it, rather than leave them to the committer (see [`Desk`]). So too a sweep,
        // whose checks read the store: not on the HTTP worker.
        let urgent = match &command {
            Command::Ingest { alerts, .. } => alerts.len() >= URGENT_ALERTS,
            Command::Sweep { .. } => true,
            _ => false,
        };
        match self.tx.try_send_urgent(command, urgent) {
            Ok(()) => {
                self.kick.notify_one();
                Ok(())
            }
            Err(e) => {
                self.metrics.queue_depth.dec();
                Err(match e {
                    TrySendError::Full(c) => (SubmitError::Full, Box::new(c)),
                    TrySendError::Disconnected(c) => (SubmitError::Closed, Box::new(c)),
                })
            }
        }
    }

    /// Queue the command built around a reply handle and wait for its durable outcome.
    pub async fn submit(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Result<Result<Outcome, PipelineError>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply))?;
        answer.await.map_err(|_| SubmitError::Closed)
    }

    /// Ask the writer to finish what is queued and stop.
    pub fn shutdown(&self) {
        self.metrics.queue_depth.inc();
        // A full queue is drained before the writer looks again, so block for the slot.
        // Urgent: the writer's thread takes it at once, with whatever is queued before it.
        if self.tx.send(Command::Shutdown, true).is_err() {
            self.metrics.queue_depth.dec();
        }
    }
}

/// Create the queue and the writer that drains it.
pub fn channel(
    capacity: usize,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: Policy,
    clock: Arc<dyn Clock>,
) -> Result<(Queue, Writer), StoreError> {
    let (tx, rx) = inbox::bounded(capacity);
    metrics
        .queue_capacity
        .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    let kick = Arc::new(tokio::sync::Notify::new());
    let writer = Writer::new(rx, kick.clone(), store, metrics.clone(), policy, clock)?;
    Ok((Queue { tx, metrics, kick }, writer))
}

pub struct Writer {
    rx: Arc<Receiver<Command>>,
    kick: Arc<tokio::sync::Notify>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    memory: Memory,
    next_deadline: Option<DateTime<Utc>>,
    /// Why the store is down, while it is: every command is answered with this at once, and the
    /// store is reopened every [`REOPEN_EVERY`].
    down: Option<String>,
    /// When the store was last tried (a failed commit, or an attempt to reopen it).
    tried: Instant,
    /// Set while the loop runs with a writable store: `/-/ready`.
    pub ready: Arc<AtomicBool>,
    /// Record a [`Decision`] per alert (the simulator does; the daemon does not).
    trace: bool,
    /// The last outbox seq committed: sinks wait on it.
    outbox: tokio::sync::watch::Sender<u64>,
    /// Beats every time round the loop.
    heartbeat: Arc<Heartbeat>,
    /// The longest the loop waits for a command: [`IDLE_WAKE`], or less for the watchdog.
    idle_wake: Duration,
    /// Told once the loop runs (and `ready` is set).
    started: Option<oneshot::Sender<()>>,
    /// The last commit took [`SLOW_COMMIT`] or more.
    slow: bool,
    /// `triaged_store_commits_total`, by [`By`].
    commits: [prometheus::IntCounter; 2],
    /// The transaction commands are applied to until it is committed: the committer applies
    /// them as they come, while its worker waits for the rest of a group, so that the commit
    /// itself only writes (see [`Desk::commit_when_idle`]). Whoever holds the writer commits it.
    open: Option<Open>,
}

/// A transaction begun and not yet committed, with the answers its commands wait for.
struct Open {
    tx: Tx,
    /// When it began: its commands' time.
    now: DateTime<Utc>,
    replies: Vec<(Reply, Result<Outcome, PipelineError>)>,
    /// A store read failed while applying: the whole transaction fails.
    failed: Option<StoreError>,
    /// One of its commands asked the writer to stop.
    stop: bool,
}

/// Where a commit runs (see [`Desk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The writer's own thread.
    Writer = 0,
    /// The HTTP runtime's committer.
    Runtime = 1,
}

impl Writer {
    fn new(
        rx: Receiver<Command>,
        kick: Arc<tokio::sync::Notify>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Writer, StoreError> {
        // A store whose disk refuses writes is not fatal: the writer starts down and opens it
        // when it can. Anything else (a damaged store) stops the daemon before it starts.
        let (memory, next_deadline, down) = match load(&store, &policy, clock.now()) {
            Ok((memory, next_deadline)) => (memory, next_deadline, None),
            Err(e) if e.is_disk_refusing_writes() => (Memory::default(), None, Some(e.reason())),
            Err(e) => return Err(e),
        };
        let committed = memory.next_outbox.saturating_sub(1);
        let commits =
            ["writer", "runtime"].map(|by| metrics.store_commits.with_label_values(&[by]));
        let writer = Writer {
            rx: Arc::new(rx),
            kick,
            store,
            metrics,
            policy: Arc::new(policy),
            clock,
            memory,
            next_deadline,
            down,
            tried: Instant::now(),
            ready: Arc::new(AtomicBool::new(false)),
            trace: false,
            outbox: tokio::sync::watch::channel(committed).0,
            heartbeat: Arc::new(Heartbeat::new()),
            idle_wake: IDLE_WAKE,
            started: None,
            slow: false,
            commits,
            open: None,
        };
        writer.show_memory();
        Ok(writer)
    }

    /// Set the gauges that mirror the writer's memory.
    fn show_memory(&self) {
        for tier in &crate::incident::Tier::ALL[1..] {
            let n = self.memory.open.get(tier).copied().unwrap_or(0);
            self.metrics
                .incidents_open
                .with_label_values(&[tier.as_str()])
                .set(n);
        }
        self.metrics
            .store_writable
            .set(i64::from(self.down.is_none()));
        self.show_refresh_log();
    }

    fn show_refresh_log(&self) {
        let entries = self.store.refresh_log_entries();
        self.metrics
            .store_refresh_log_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The writer's liveness, for systemd's watchdog.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        Arc::clone(&self.heartbeat)
    }

    /// Come round the loop (and beat) at least this often, even with nothing to do. A wake with
    /// nothing queued and nothing due commits nothing: it only beats.
    pub fn beat_at_least_every(&mut self, every: Duration) {
        // A floor, so a silly watchdog interval cannot make the loop spin.
        self.idle_wake = every.clamp(Duration::from_millis(1), IDLE_WAKE);
    }

    /// Resolves once the loop runs and `/-/ready` says so; fails if the writer never started.
    pub fn started(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.started = Some(tx);
        rx
    }

    /// Follows the last committed outbox seq.
    pub fn outbox_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox.subscribe()
    }

    /// The loop on the calling thread, with no committer on a runtime (see [`Desk`]): runs
    /// until [`Command::Shutdown`] or every sender is gone.
    pub fn run(self) {
        self.into_desk().run();
    }

    /// Share the writer between the thread that runs [`Desk::run`] and a committer task on the
    /// HTTP runtime ([`Desk::commit_when_idle`]).
    pub fn into_desk(self) -> Arc<Desk> {
        self.into_desk_with(HANDOFF)
    }

    /// [`Writer::into_desk`], the thread leaving commands to the committer for `handoff`.
    fn into_desk_with(self, handoff: Duration) -> Arc<Desk> {
        Arc::new(Desk {
            handoff,
            rx: Arc::clone(&self.rx),
            kick: Arc::clone(&self.kick),
            heartbeat: Arc::clone(&self.heartbeat),
            helped: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            writer: Mutex::new(self),
        })
    }

    /// Say that the loop runs.
    fn start(&mut self) {
        self.ready.store(self.down.is_none(), Ordering::SeqCst);
        // Started even with the store down: the daemon runs and says why it refuses (503).
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        match &self.down {
            None => tracing::info!(next_incident = self.memory.next_incident, "writer started"),
            Some(reason) => tracing::error!(
                reason = %reason,
                "writer started with the store down: every change is answered 503 until it can be opened"
            ),
        }
    }

    /// The longest the loop may wait for a command: until the next deadline, the next attempt
    /// to reopen the store, or the idle wake.
    fn wait(&self) -> Duration {
        match (&self.down, self.next_deadline) {
            (Some(_), _) => REOPEN_EVERY
                .saturating_sub(self.tried.elapsed())
                .min(self.idle_wake),
            (None, Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.idle_wake),
            (None, None) => self.idle_wake,
        }
    }

    /// Commands applied to the open transaction (a stop is urgent, so never the committer's).
    fn held(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.replies.len())
    }

    /// The loop has stopped.
    fn finish(&mut self) {
        // Commands the committer applied and did not get to commit (its runtime stopped).
        self.commit_open(By::Writer);
        self.ready.store(false, Ordering::SeqCst);
        // Everything is applied: flush sled and empty the journal, so the next start has nothing
        // to apply again. A failure here loses nothing (the journal stays) and is only reported.
        if self.down.is_none() {
            if let Err(e) = self.store.checkpoint() {
                tracing::warn!(error = %e, "the final checkpoint failed; the next start applies the journal again");
            }
        }
        tracing::info!("writer stopped");
    }

    /// The store is down: answer every command at once, saying why (a reload needs no store and
    /// is taken), and try to reopen the store every [`REOPEN_EVERY`]. Returns true when asked
    /// to stop.
    fn refuse(&mut self, commands: Vec<Command>) -> bool {
        let reason = self.down.clone().unwrap_or_default();
        let mut stop = false;
        for command in commands {
            match command {
                Command::Shutdown => stop = true,
                Command::Reload { policy, reply } => {
                    self.policy = Arc::new(*policy);
                    let _ = reply.send(Ok(Outcome::Reloaded));
                }
                other => {
                    if let Some(reply) = other.into_reply() {
                        let _ = reply.send(Err(PipelineError::Unavailable(reason.clone())));
                    }
                }
            }
        }
        if !stop && self.tried.elapsed() >= REOPEN_EVERY {
            self.recover();
        }
        stop
    }

    /// Reopen the store and rebuild the writer's memory from what is on disk: a batch that
    /// failed may or may not have reached it, and only the disk says which.
    fn recover(&mut self) {
        self.tried = Instant::now();
        let loaded = self
            .store
            .reopen()
            .and_then(|()| load(&self.store, &self.policy, self.clock.now()));
        match loaded {
            Ok((memory, next_deadline)) => {
                self.memory = memory;
                self.next_deadline = next_deadline;
                self.down = None;
                self.outbox
                    .send_replace(self.memory.next_outbox.saturating_sub(1));
                self.show_memory();
                self.ready.store(true, Ordering::SeqCst);
                tracing::warn!(
                    next_incident = self.memory.next_incident,
                    "the store is writable again; taking changes"
                );
            }
            Err(e) => {
                let reason = e.reason();
                if self.store.down_reason().is_none() {
                    // Opened, but reading it back failed: keep it closed.
                    self.store.close(reason.clone());
                }
                if self.down.as_deref() != Some(reason.as_str()) {
                    tracing::error!(reason = %reason, "the store is still not writable");
                }
                self.down = Some(reason);
            }
        }
    }

    /// Apply one batch of commands and due expiries, on the writer's thread; returns true when
    /// asked to stop.
    fn step(&mut self, commands: Vec<Command>) -> bool {
        self.step_by(commands, By::Writer)
    }

    /// [`Writer::step`], on the thread `by` says: the commands join the open transaction, if
    /// the committer began one, and it is committed.
    fn step_by(&mut self, commands: Vec<Command>, by: By) -> bool {
        self.add(commands);
        self.commit_open(by)
    }

    /// Apply commands to the open transaction, beginning one (with the expiries that are due
    /// and the refresh log's folding) if none is open. Nothing is written until
    /// [`Writer::commit_open`]; each command's answer waits for it.
    fn add(&mut self, commands: Vec<Command>) {
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let now = self.clock.now();
                let mut tx = Tx::new(
                    Arc::clone(&self.store),
                    Arc::clone(&self.policy),
                    self.memory.clone(),
                    now,
                    self.trace,
                );
                let mut failed = None;
                // Deadlines are read from the store only when one is due: `next_deadline`, read
                // at load and after every commit that sets or clears one, is the earliest.
                let timers = if self.next_deadline.is_some_and(|at| at <= now) {
                    tx.run_timers(MAX_TIMERS_PER_PASS)
                } else {
                    Ok(())
                };
                if let Err(e) = timers.and_then(|()| tx.fold_refreshes(MAX_FOLDS_PER_PASS)) {
                    failed = Some(e);
                }
                self.open.insert(Open {
                    tx,
                    now,
                    replies: Vec::with_capacity(commands.len()),
                    failed,
                    stop: false,
                })
            }
        };
        let Open {
            tx,
            replies,
            failed,
            stop,
            ..
        } = open;
        for command in commands {
            let (reply, result) = match command {
                Command::Shutdown => {
                    *stop = true;
                    continue;
                }
                Command::Ingest {
                    source,
                    alerts,
                    reply,
                } => (reply, tx.ingest(source, alerts).map(Outcome::Ingested)),
                Command::AcknowledgeAlert {
                    fingerprint,
                    actor,
                    reply,
                } => (
                    reply,
                    tx.acknowledge_alert(fingerprint, &actor)
                        .map(Outcome::AlertAcknowledged),
                ),
                Command::Incident { id, action, reply } => (
                    reply,
                    tx.act(id, action).map(|i| Outcome::Incident(Box::new(i))),
                ),
                Command::PutSilence { silence, reply } => {
                    (reply, tx.put_silence(silence).map(Outcome::Silence))
                }
                Command::ExpireSilence { id, reply } => (
                    reply,
                    tx.expire_silence(id).map(|()| Outcome::SilenceExpired),
                ),
                Command::AdvanceCursor { sink, seq, reply } => {
                    (reply, tx.advance_cursor(&sink, seq).map(|()| Outcome::Done))
                }
                Command::DeadLetter { letter, reply } => {
                    (reply, Ok(Outcome::DeadLettered(tx.dead_letter(*letter))))
                }
                Command::Reload { policy, reply } => {
                    tx.reload(*policy);
                    (reply, Ok(Outcome::Reloaded))
                }
                Command::Sweep { sweep, reply } => (reply, tx.sweep(*sweep).map(Outcome::Swept)),
            };
            let result = match result {
                Err(PipelineError::Store(e)) => {
                    // A read failed halfway: the overlay may hold half of this command.
                    failed.get_or_insert(e);
                    Err(PipelineError::Commit("store read failed".into()))
                }
                other => other,
            };
            replies.push((reply, result));
        }
    }

    /// Commit the open transaction, if any: write it durably, then answer its commands.
    /// Returns true when one of them asked the writer to stop.
    fn commit_open(&mut self, by: By) -> bool {
        let Some(Open {
            tx,
            now,
            replies,
            failed,
            stop,
            ..
        }) = self.open.take()
        else {
            return false;
        };
        self.rx.settle();
        let (batch, memory, effects, policy) = tx.finish();
        let moves_deadlines = batch.moves_deadlines();
        let committed = match failed {
            Some(e) => Err(e),
            None => {
                let started = Instant::now();
                let metrics = &self.metrics;
                // Metrics move once the batch is durable, before readers can see it.
                let r = self.store.commit(batch, || {
                    for effect in effects {
                        effect.record(metrics);
                    }
                });
                let took = started.elapsed();
                self.metrics.store_flush_seconds.observe(took.as_secs_f64());
                self.slow = took >= SLOW_COMMIT;
                if r.is_ok() {
                    self.commits[by as usize].inc();
                }
                r
            }
        };
        // The earliest deadline changes only with a commit that sets or clears one (or fails).
        let reread_deadline = committed.is_err() || moves_deadlines;
        match committed {
            Ok(()) => {
                self.show_refresh_log();
                self.memory = memory;
                self.policy = policy;
                self.outbox.send_if_modified(|seq| {
                    let committed = self.memory.next_outbox - 1;
                    std::mem::replace(seq, committed) != committed
                });
                for reply in replies {
                    // A sender that gave up (client gone) is no error: the change is durable.
                    let _ = reply.0.send(reply.1);
                }
            }
            Err(e) => {
                self.metrics.store_write_failures.inc();
                // An I/O failure met while reading for the transaction (sled writes its buffers
                // by itself, and answers everything after one failure with it) takes the store
                // down as a failed write does, whatever the failure: a full disk, an immutable
                // file (EPERM), an I/O error. Left up, every commit failed until something else
                // closed it, while `/-/ready` said ready (QA: 68 s after a 1.3 s outage).
                if self.store.down_reason().is_none() && e.is_io_failure() {
                    self.store.close(e.reason());
                }
                match self.store.down_reason() {
                    Some(reason) => {
                        tracing::error!(error = %e, reason = %reason, "group commit failed: the store is down; nothing of this batch is acknowledged, and changes are refused until it is writable again");
                        self.down = Some(reason.clone());
                        self.tried = Instant::now();
                        self.ready.store(false, Ordering::SeqCst);
                        self.metrics.store_writable.set(0);
                        for (reply, _) in replies {
                            let _ = reply.send(Err(PipelineError::Unavailable(reason.clone())));
                        }
                        return stop;
                    }
                    None => {
                        tracing::error!(error = %e, "group commit failed; nothing of this batch is acknowledged");
                        for (reply, _) in replies {
                            let _ = reply.send(Err(PipelineError::Commit(e.to_string())));
                        }
                    }
                }
            }
        }
        if reread_deadline {
            match self.store.next_deadline() {
                Ok(d) => self.next_deadline = d,
                Err(e) => {
                    tracing::error!(error = %e, "reading the next deadline failed");
                    self.next_deadline = Some(now + chrono::Duration::seconds(1));
                }
            }
        }
        stop
    }
}

/// What the writer keeps in memory, read from the store: at start, and after the store was
/// down. Also the next deadline.
fn load(
    store: &Store,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(Memory, Option<DateTime<Utc>>), StoreError> {
    let mut silences = Vec::new();
    for s in store.silences()? {
        if s.state(now) == SilenceState::Expired {
            continue;
        }
        match silence::Compiled::new(s) {
            Ok(c) => silences.push(c),
            Err(e) => {
                tracing::error!(error = %e, "a stored silence no longer compiles; ignored")
            }
        }
    }
    let mut cursors = BTreeMap::new();
    for sink in &policy.sinks {
        cursors.insert(sink.clone(), store.cursor(sink)?);
    }
    let memory = Memory {
        next_outbox: store.next_outbox_seq()?,
        cursors,
        next_dead_letter: store.next_dead_letter_id()?,
        next_incident: store.next_incident_number()?,
        // From the open index alone: no incident is decoded at start-up.
        open: store.active_by_tier()?,
        silences: Arc::new(silences),
    };
    Ok((memory, store.next_deadline()?))
}

/// A clock that moves only when told: for the simulator and tests.
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(std::sync::Mutex::new(at))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pipeline on a throw-away store, driven synchronously on a manual clock, tracing a
/// [`Decision`] for every alert: what `test-rules` and `replay` run. It touches no state of a
/// running daemon.
pub struct Simulator {
    writer: Writer,
    clock: Arc<ManualClock>,
    // Dropped last: the store lives in it.
    _dir: tempfile::TempDir,
}

impl Simulator {
    pub fn new(config: &Config, now: DateTime<Utc>) -> Result<Simulator, String> {
        let dir = tempfile::Builder::new()
            .prefix("triaged-sim-")
            .tempdir()
            .map_err(|e| format!("cannot create a scratch store: {e}"))?;
        let store = Arc::new(Store::open(dir.path()).map_err(|e| e.to_string())?);
        let policy = Policy::from_config(config)?;
        let clock = Arc::new(ManualClock::new(now));
        // Capacity 1: the simulator hands commands to the writer one at a time.
        let (_queue, mut writer) =
            channel(1, store, Arc::new(Metrics::new()), policy, clock.clone())
                .map_err(|e| e.to_string())?;
        writer.trace = true;
        Ok(Simulator {
            writer,
            clock,
            _dir: dir,
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Move the clock, and let whatever fell due (expiries, deadlines, silence ends) happen.
    pub fn advance(&mut self, by: chrono::Duration) {
        self.clock.advance(by);
        self.writer.step(Vec::new());
    }

    fn run(&mut self, make: impl FnOnce(Reply) -> Command) -> Result<Outcome, PipelineError> {
        let (reply, mut answer) = oneshot::channel();
        self.writer.step(vec![make(reply)]);
        answer
            .try_recv()
            .map_err(|_| PipelineError::Commit("the simulated writer gave no answer".into()))?
    }

    pub fn ingest(
        &mut self,
        source: Source,
        alerts: Vec<Alert>,
    ) -> Result<IngestSummary, PipelineError> {
        match self.run(|reply| Command::Ingest {
            source,
            alerts,
            reply,
        })? {
            Outcome::Ingested(summary) => Ok(summary),
            other => Err(PipelineError::Commit(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    pub fn silence(&mut self, silence: PostableSilence) -> Result<SilenceId, PipelineError> {
        match self.run(|reply| Command::PutSilence { silence, reply })? {
            Outcome::Silence(id) => Ok(id),
            other => Err(PipelineError::Commit(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    pub fn incident(&self, id: IncidentId) -> Option<Incident> {
        self.writer.store.incident(id).ok().flatten()
    }
}

//! Retention: what `storage.retention` (30 days by default) has outlived leaves the store, so
//! that a daemon that runs for years keeps a store the size of its recent history.
//!
//! Removed, once resolved or ended at least `retention` ago:
//! - resolved incidents (with their member lists, and their group's pointer when it still
//!   points at them, so the group's next alert opens a new incident);
//! - resolved alerts, last received and ended by then, that belong to no incident still stored
//!   (an incident's members go after it, so an incident kept always lists whole members);
//! - expired silences; dead letters;
//! - and, with no sink configured, outbox events left from when one was (no sink reads them).
//!
//! Firing alerts and active incidents stay, however old. A sweep runs every tenth of the
//! retention (at most hourly, at least every second) and first a minute after start (sooner
//! for a shorter period). It reads the store in chunks ([`Store::expired`]) on a blocking
//! thread, so that ingestion is held back by no scan, then hands the writer the candidates in
//! commands of at most [`CHUNK`]; the writer checks each again ([`Command::Sweep`]), so that
//! what changed since the scan (an incident reopened, an alert firing again, a silence
//! replaced) stays. Removals are commits like any other: journaled, durable, counted in
//! `triaged_retention_removed_total{kind}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::alert::Fingerprint;
use crate::incident::IncidentId;
use crate::pipeline::{Command, Outcome, PipelineError, Queue, SubmitError};
use crate::silence::SilenceId;
use crate::store::{Expired, Store};

/// The kinds `triaged_retention_removed_total` counts.
pub const KINDS: [&str; 5] = ["incident", "alert", "silence", "dead_letter", "outbox"];

/// Candidates one command hands the writer at most, of each kind (incidents: a tenth, since
/// each goes with its member lists).
pub const CHUNK: usize = 100;

/// The longest wait between sweeps.
const MAX_EVERY: Duration = Duration::from_secs(3600);
/// The first sweep after start comes at most this late.
const FIRST_WITHIN: Duration = Duration::from_secs(60);

/// One command's worth of a sweep: what to remove, each checked again against `cutoff`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub cutoff: DateTime<Utc>,
    pub incidents: Vec<IncidentId>,
    pub alerts: Vec<Fingerprint>,
    pub silences: Vec<SilenceId>,
    pub dead_letters: Vec<u64>,
    /// Also trim the outbox events no sink reads, when none is configured (at most 10,000).
    pub outbox: bool,
}

impl Sweep {
    /// The commands for what a scan found, in chunks: incidents first, since their members
    /// can go only after them.
    pub fn plan(cutoff: DateTime<Utc>, expired: Expired) -> Vec<Sweep> {
        let empty = Sweep {
            cutoff,
            incidents: Vec::new(),
            alerts: Vec::new(),
            silences: Vec::new(),
            dead_letters: Vec::new(),
            outbox: false,
        };
        let mut out = Vec::new();
        for incidents in expired.incidents.chunks(CHUNK / 10) {
            out.push(Sweep {
                incidents: incidents.to_vec(),
                ..empty.clone()
            });
        }
        for alerts in expired.alerts.chunks(CHUNK) {
            out.push(Sweep {
                alerts: alerts.to_vec(),
                ..empty.clone()
            });
        }
        for silences in expired.silences.chunks(CHUNK) {
            out.push(Sweep {
                silences: silences.to_vec(),
                ..empty.clone()
            });
        }
        for letters in expired.dead_letters.chunks(CHUNK) {
            out.push(Sweep {
                dead_letters: letters.to_vec(),
                ..empty.clone()
            });
        }
        out.push(Sweep {
            outbox: true,
            ..empty
        });
        out
    }
}

/// What a sweep (or one command of it) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub incidents: u64,
    pub alerts: u64,
    pub silences: u64,
    pub dead_letters: u64,
    pub outbox: u64,
}

impl Removed {
    /// Each count with its kind, as [`KINDS`] names them.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            (KINDS[0], self.incidents),
            (KINDS[1], self.alerts),
            (KINDS[2], self.silences),
            (KINDS[3], self.dead_letters),
            (KINDS[4], self.outbox),
        ]
    }

    pub fn add(&mut self, other: Removed) {
        self.incidents += other.incidents;
        self.alerts += other.alerts;
        self.silences += other.silences;
        self.dead_letters += other.dead_letters;
        self.outbox += other.outbox;
    }

    pub fn is_empty(&self) -> bool {
        *self == Removed::default()
    }
}

/// What ended before this has outlived `retention` at `now`: the earliest time there is when
/// the retention reaches further back (a sweep then removes nothing).
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How often a sweep runs for `retention`: a tenth of it, between a second and an hour.
pub fn every(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), MAX_EVERY)
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading the store: {0}")]
    Scan(#[from] crate::store::StoreError),
    #[error("the writer refused: {0}")]
    Writer(#[from] PipelineError),
    #[error("the writer's queue: {0}")]
    Queue(#[from] SubmitError),
    #[error("the scan's thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Sweep every [`every`]`(retention)` until `stop` says so.
pub async fn run(
    store: Arc<Store>,
    queue: Queue,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every = every(retention);
    let mut wait = every.min(FIRST_WITHIN);
    tracing::info!(
        retention = %crate::config::HumanDuration(retention),
        every_s = every.as_secs(),
        "retention: resolved incidents and alerts, expired silences, dead letters and outbox events no sink reads are removed once older than this"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = every;
        if *stop.borrow() {
            return;
        }
        let cutoff = cutoff(Utc::now(), retention);
        if cutoff == DateTime::<Utc>::MIN_UTC {
            continue; // a retention longer than time itself: nothing can be old enough
        }
        let started = std::time::Instant::now();
        let stopping = Arc::new(AtomicBool::new(false));
        let swept = tokio::select! {
            swept = sweep(&store, &queue, cutoff, &stopping) => swept,
            // A command already queued is still answered; the rest waits for the next start,
            // and a scan in progress gives up (the runtime's stop would wait for it).
            _ = stop.changed() => {
                stopping.store(true, Ordering::Relaxed);
                return;
            }
        };
        match swept {
            Ok(removed) if removed.is_empty() => {
                tracing::debug!(
                    cutoff = %cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    took_ms = started.elapsed().as_millis() as u64,
                    "retention: nothing to remove"
                );
            }
            Ok(removed) => tracing::info!(
                cutoff = %cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                incidents = removed.incidents,
                alerts = removed.alerts,
                silences = removed.silences,
                dead_letters = removed.dead_letters,
                outbox_events = removed.outbox,
                took_ms = started.elapsed().as_millis() as u64,
                "retention: removed what was resolved or ended before the cutoff"
            ),
            // The store down, the queue full: the next sweep tries again.
            Err(e) => {
                tracing::warn!(error = %e, next_in_s = every.as_secs(), "retention sweep stopped")
            }
        }
    }
}

/// One sweep at `cutoff`: scan, hand the writer what was found, and scan once more when
/// incidents went, for their members.
pub async fn sweep(
    store: &Arc<Store>,
    queue: &Queue,
    cutoff: DateTime<Utc>,
    stopping: &Arc<AtomicBool>,
) -> Result<Removed, SweepError> {
    let mut total = Removed::default();
    for _pass in 0..2 {
        let scan = Arc::clone(store);
        let stop = Arc::clone(stopping);
        let expired = tokio::task::spawn_blocking(move || scan.expired(cutoff, &stop)).await??;
        let mut pass = Removed::default();
        for command in Sweep::plan(cutoff, expired) {
            let sent = std::time::Instant::now();
            if let Outcome::Swept(removed) = submit(queue, command).await? {
                pass.add(removed);
            }
            // Paced: as long again before the next command, so that a large backlog (the first
            // sweep of a store with months of history) takes at most about half the writer.
            tokio::time::sleep(sent.elapsed()).await;
        }
        total.add(pass);
        if pass.incidents == 0 {
            break;
        }
    }
    Ok(total)
}

/// Hand the writer one command, waiting for room in a full queue (ingestion first).
async fn submit(queue: &Queue, command: Sweep) -> Result<Outcome, SweepError> {
    let mut backoff = Duration::from_millis(10);
    loop {
        let sweep = Box::new(command.clone());
        match queue.submit(|reply| Command::Sweep { sweep, reply }).await {
            Err(SubmitError::Full) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            answered => return Ok(answered??),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a retention of 100,000,000,000 days passed the config's checks and the
    /// first sweep panicked computing its cutoff (its task gone, no sweep ever again).
    #[test]
    fn a_retention_longer_than_time_itself_has_the_earliest_cutoff() {
        let now: DateTime<Utc> = "2026-11-29T08:00:00Z".parse().unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(
            cutoff(now, 30 * day),
            "2026-10-30T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let huge = crate::config::HumanDuration(Duration::from_secs(100_000_000_000 * 86_400));
        assert_eq!(cutoff(now, huge.0), DateTime::<Utc>::MIN_UTC);
        assert_eq!(cutoff(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(every(huge.0), Duration::from_secs(3600));
        assert_eq!(every(Duration::from_secs(2)), Duration::from_secs(1));
    }
}

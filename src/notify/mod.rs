//! Notify: the outbox readers. Each sink follows the outbox from its own cursor, delivers what
//! its filter takes, and advances its cursor (a writer command, so durable) once delivered:
//! at-least-once, with the stable `event_id` for receivers to drop repeats. A sink that keeps
//! failing retries with exponential backoff and jitter; it holds back only itself, never another
//! sink nor the writer. Its backlog shows in `triaged_outbox_pending{sink}`.
//!
//! Deciding what happened is the pipeline's; this module only delivers.

pub mod kafka;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, EventFilter};
use crate::metrics::Metrics;
use crate::outbox::OutboxEvent;
use crate::pipeline::classify::Matcher;
use crate::pipeline::{Command, Queue};
use crate::quiet::Quiet;
use crate::store::Store;

/// Events read from the outbox per round.
const PAGE: usize = 256;

/// Why one delivery failed; retryable failures are retried with backoff, forever.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Retryable(String),
}

/// A destination for outbox events.
pub trait Sink: Send + Sync + 'static {
    /// The cursor's name: `webhook:<name>`, `kafka`.
    fn name(&self) -> &str;
    fn filter(&self) -> &Filter;
    fn max_backoff(&self) -> Duration;
    fn deliver(
        &self,
        event: &OutboxEvent,
    ) -> impl std::future::Future<Output = Result<(), DeliveryError>> + Send;
}

/// A compiled [`EventFilter`].
pub struct Filter {
    tiers: Vec<crate::incident::Tier>,
    kinds: Vec<String>,
    min_severity: Option<crate::alert::Severity>,
    matchers: Vec<Matcher>,
}

impl Filter {
    pub fn new(f: &EventFilter) -> Result<Filter, String> {
        Ok(Filter {
            tiers: f.tiers.clone(),
            kinds: f.kinds.clone(),
            min_severity: f.min_severity,
            matchers: f
                .matchers
                .iter()
                .map(|m| Matcher::parse(m))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn takes(&self, event: &OutboxEvent) -> bool {
        let tier_ok =
            self.tiers.is_empty() || event.tier().is_some_and(|t| self.tiers.contains(&t));
        let kind_ok = self.kinds.is_empty() || self.kinds.contains(&event.kind);
        let severity_ok = self
            .min_severity
            .is_none_or(|min| event.severity().is_some_and(|s| s >= min));
        let labels_ok = self.matchers.is_empty() || {
            let labels = event.labels();
            self.matchers.iter().all(|m| m.matches_labels(&labels))
        };
        tier_ok && kind_ok && severity_ok && labels_ok
    }
}

/// Start every configured sink; each runs until `shutdown` turns true.
pub fn spawn_sinks(
    config: &Config,
    store: Arc<Store>,
    queue: Queue,
    metrics: Arc<Metrics>,
    committed: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    // Before any sink runs (and before the HTTP server serves /metrics): every series from 0.
    metrics.sinks_started(&config.notify.sink_names());
    let mut tasks = Vec::new();
    for w in &config.notify.webhook {
        let sink = webhook::WebhookSink::new(w)?;
        tasks.push(tokio::spawn(follow(
            Arc::new(sink),
            store.clone(),
            queue.clone(),
            metrics.clone(),
            committed.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(k) = &config.notify.kafka {
        let brokers = k
            .brokers
            .clone()
            .or_else(|| config.kafka.as_ref().map(|c| c.brokers.clone()))
            .unwrap_or_default();
        let sink = kafka::KafkaSink::new(k, &brokers)?;
        tasks.push(tokio::spawn(follow(
            Arc::new(sink),
            store,
            queue,
            metrics,
            committed,
            shutdown,
        )));
    }
    Ok(tasks)
}

/// Follow the outbox for one sink: read after the cursor, deliver what the filter takes (in
/// order, retrying each until it is delivered), then advance the cursor.
async fn follow<S: Sink>(
    sink: Arc<S>,
    store: Arc<Store>,
    queue: Queue,
    metrics: Arc<Metrics>,
    mut committed: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = sink.name().to_string();
    let Some((mut cursor, failures)) = read_cursor(&store, &name, &mut shutdown).await else {
        return;
    };
    tracing::info!(sink = %name, cursor, failures, "sink started");
    loop {
        if *shutdown.borrow() {
            return;
        }
        let latest = *committed.borrow_and_update();
        metrics
            .outbox_pending
            .with_label_values(&[&name])
            .set(i64::try_from(latest.saturating_sub(cursor)).unwrap_or(i64::MAX));
        let page = match store.outbox_after(cursor, PAGE) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "reading the outbox failed");
                Vec::new()
            }
        };
        if page.is_empty() {
            tokio::select! {
                _ = committed.changed() => {}
                _ = shutdown.changed() => return,
                // Belt and braces: a missed wake-up costs at most this.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        for event in page {
            if sink.filter().takes(&event) {
                if !deliver_until_done(&*sink, &event, &metrics, &committed, &mut shutdown).await {
                    return; // shutting down; the cursor stays before this event
                }
            } else {
                metrics
                    .notifications
                    .with_label_values(&[&name, "filtered"])
                    .inc();
            }
            cursor = event.seq;
        }
        if !store_cursor(&queue, &name, cursor).await {
            // Redelivered after a restart at worst: receivers drop repeats by event_id.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// How often a sink waiting for its cursor says so.
const CURSOR_RETRY_LOG_EVERY: Duration = Duration::from_secs(60);

/// The cursor `name` (a sink's, or another follower's of the store, as the dead-letter copies'),
/// and how many reads failed first: the store may be down (disk full) when the daemon starts,
/// so it is waited for, retrying each second but saying so once a minute. None if `shutdown`
/// came first.
pub(crate) async fn read_cursor(
    store: &Store,
    name: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(u64, u64)> {
    let said = Quiet::every(CURSOR_RETRY_LOG_EVERY);
    let mut failures = 0u64;
    loop {
        match store.cursor(name) {
            Ok(cursor) => return Some((cursor, failures)),
            Err(e) => {
                failures += 1;
                if said.say("cursor", std::time::Instant::now()).is_some() {
                    tracing::warn!(sink = %name, error = %e, failures, "cannot read the sink's cursor yet; retrying each second");
                }
                tokio::select! {
                    _ = shutdown.changed() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Store the cursor `name` at `seq` through the writer; false (said in the log) if that failed.
pub(crate) async fn store_cursor(queue: &Queue, name: &str, seq: u64) -> bool {
    let advanced = queue
        .submit(|reply| Command::AdvanceCursor {
            sink: name.to_string(),
            seq,
            reply,
        })
        .await;
    let stored = matches!(advanced, Ok(Ok(_)));
    if !stored {
        tracing::warn!(sink = %name, cursor = seq, "storing the sink's cursor failed");
    }
    stored
}

/// Deliver one event, retrying with exponential backoff and jitter; false if shutdown came first.
async fn deliver_until_done<S: Sink>(
    sink: &S,
    event: &OutboxEvent,
    metrics: &Metrics,
    committed: &watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    let mut committed = committed.clone();
    // The backlog keeps counting what is committed while this event is tried and retried.
    let set_pending = |committed: &watch::Receiver<u64>| {
        let pending = committed
            .borrow()
            .saturating_sub(event.seq.saturating_sub(1));
        metrics
            .outbox_pending
            .with_label_values(&[sink.name()])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    };
    loop {
        set_pending(&committed);
        let attempt = sink.deliver(event);
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break result,
                Ok(()) = committed.changed() => set_pending(&committed),
            }
        };
        match result {
            Ok(()) => {
                metrics
                    .notifications
                    .with_label_values(&[sink.name(), "ok"])
                    .inc();
                return true;
            }
            Err(DeliveryError::Retryable(why)) => {
                metrics
                    .notifications
                    .with_label_values(&[sink.name(), "error"])
                    .inc();
                let wait = jitter(backoff);
                tracing::warn!(sink = %sink.name(), event_id = %event.event_id, error = %why, retry_in = ?wait, "delivery failed");
                let retry = tokio::time::sleep(wait);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        _ = &mut retry => break,
                        _ = shutdown.changed() => return false,
                        Ok(()) = committed.changed() => set_pending(&committed),
                    }
                }
                backoff = (backoff * 2).min(sink.max_backoff());
            }
        }
    }
}

/// Between half and all of `d`, at random: retries of many triaged instances spread out.
pub(crate) fn jitter(d: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    let half = d / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, tier: &str, severity: &str, team: &str) -> OutboxEvent {
        OutboxEvent {
            version: 1,
            seq: 1,
            event_id: "INC-1:0".into(),
            kind: kind.into(),
            at: chrono::Utc::now(),
            actor: "triaged".into(),
            reason: None,
            from: None,
            to: None,
            incident: Some(serde_json::json!({
                "id": "INC-1", "tier": tier, "severity": severity, "labels": {"team": team}
            })),
            alert: None,
            runbook: None,
        }
    }

    #[test]
    fn filters_take_what_they_name() {
        let f = Filter::new(&EventFilter {
            tiers: vec![crate::incident::Tier::L2, crate::incident::Tier::L3],
            kinds: vec!["opened".into(), "escalated".into()],
            min_severity: Some(crate::alert::Severity::Major),
            matchers: vec!["team=\"storage\"".into()],
        })
        .unwrap();
        assert!(f.takes(&event("opened", "L2", "major", "storage")));
        assert!(!f.takes(&event("acknowledged", "L2", "major", "storage")));
        assert!(!f.takes(&event("opened", "L1", "major", "storage")));
        assert!(!f.takes(&event("opened", "L2", "warning", "storage")));
        assert!(!f.takes(&event("opened", "L2", "critical", "web")));
        assert!(Filter::new(&EventFilter::default())
            .unwrap()
            .takes(&event("resolved", "L1", "info", "x")));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(500) && j <= Duration::from_millis(1000));
        }
    }
}

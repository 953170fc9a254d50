//! The Kafka source: a consumer-group member (rdkafka `StreamConsumer` on tokio) reading alert
//! topics, each in its wire format or told by shape.
//!
//! **At-least-once.** `enable.auto.offset.store` is off: an offset is stored (and then committed
//! by the periodic auto-commit, or synchronously on revoke and shutdown) only after the writer
//! has flushed the batch holding its message. A crash replays what was not committed; dedup
//! recognises the replays, so they open nothing twice.
//!
//! **Poison messages** (unparseable, wrong format, too large) become dead letters, durably, and
//! their offsets are stored like any other: they never block a partition.
//!
//! **Backpressure.** Messages are taken in batches of at most `max_batch`; a batch's durable
//! answers are awaited before the next is taken, so memory is bounded whatever the lag. When the
//! writer queue is full, the assignment is paused until the queue has room again.
//!
//! **Rebalances.** Nothing is in flight when librdkafka calls back (batches are finished before
//! the consumer is polled again). Stored offsets are committed asynchronously after every batch,
//! and synchronously on revocation.
//!
//! This module owns the consumer; parsing is `formats`'s, deciding is the pipeline's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use tokio::sync::{oneshot, watch};

use crate::config::KafkaConfig;
use crate::dead_letter::DeadLetter;
use crate::metrics::Metrics;
use crate::pipeline::{Command, Outcome, PipelineError, Queue, SubmitError};
use crate::sources::formats::{self, Format};
use crate::sources::Limits;

/// How long a full writer queue is waited on between retries while the assignment is paused.
const FULL_QUEUE_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the Kafka consumer: {0}")]
    Consumer(#[source] KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
    #[error("cannot create the dead-letter producer: {0}")]
    Producer(#[source] KafkaError),
}

/// librdkafka's callbacks: statistics (lag, connection), errors, rebalances.
struct Context {
    metrics: Arc<Metrics>,
    /// The client's and the consumer's errors, said once and then at most every
    /// [`REPEAT_EVERY`]: with its brokers down, librdkafka reports it many times a second.
    quiet: Quiet,
}

/// How often an error that keeps coming is said again (with how many times it came meanwhile).
const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// Errors said lately, by their text: whether to say one now.
#[derive(Default)]
struct Quiet(std::sync::Mutex<HashMap<String, (std::time::Instant, u64)>>);

impl Quiet {
    /// Whether to log `text` now; if so, how many times it came, unsaid, since it was last
    /// said.
    fn say(&self, text: &str, now: std::time::Instant) -> Option<u64> {
        let mut said = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, held)) = said.get_mut(text) {
            if now.duration_since(*at) < REPEAT_EVERY {
                *held += 1;
                return None;
            }
            let held = std::mem::take(held);
            *at = now;
            return Some(held);
        }
        // Texts carry broker addresses and the like: a handful at a time, but bounded anyway.
        if said.len() >= 64 {
            said.clear();
        }
        said.insert(text.to_string(), (now, 0));
        Some(0)
    }

    /// Log `error` unless the same kind came within [`REPEAT_EVERY`]: its librdkafka error
    /// code when it has one (the text names counts and timings that change every time).
    fn warn(&self, error: &KafkaError, reason: Option<&str>, what: &'static str) {
        let text = match reason {
            Some(reason) => format!("{error}: {reason}"),
            None => error.to_string(),
        };
        let kind = match error.rdkafka_error_code() {
            Some(code) => format!("{what}: {code:?}"),
            None => text.clone(),
        };
        if let Some(repeated) = self.say(&kind, std::time::Instant::now()) {
            tracing::warn!(error = %text, repeated, "{what}");
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let connected = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.metrics.kafka_connected.set(i64::from(connected));
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal unassigned partition.
                if *partition >= 0 && p.desired && p.consumer_lag_stored >= 0 {
                    self.metrics
                        .kafka_consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag_stored);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.metrics.kafka_connected.set(0);
        }
        self.quiet.warn(&error, Some(reason), "kafka client error");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.metrics
                    .kafka_rebalances
                    .with_label_values(&["revoke"])
                    .inc();
                tracing::info!(partitions = partitions.count(), "partitions revoked");
                // Nothing is in flight here (batches finish before the consumer is polled):
                // commit what is stored before the partitions go.
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
                    ) {
                        tracing::warn!(error = %e, "committing offsets on revocation failed");
                    }
                }
            }
            Rebalance::Assign(partitions) => {
                self.metrics
                    .kafka_rebalances
                    .with_label_values(&["assign"])
                    .inc();
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        if let Ok(assignment) = consumer.assignment() {
            self.metrics
                .kafka_assigned_partitions
                .set(i64::try_from(assignment.count()).unwrap_or(i64::MAX));
        }
    }
}

/// One consumed message, owned, so the consumer can be polled again.
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A message handed to the writer, waiting for its durable answer.
struct InFlight {
    topic: String,
    partition: i32,
    offset: i64,
    answer: oneshot::Receiver<Result<Outcome, PipelineError>>,
    dead: Option<DeadLetter>,
}

/// How to read a message: its topic's wire format, and the shape limits.
struct Reading {
    formats: HashMap<String, Option<Format>>,
    limits: Limits,
}

/// Consume until `shutdown` turns true; then commit what is stored and return.
pub async fn run(
    config: KafkaConfig,
    queue: Queue,
    metrics: Arc<Metrics>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut client = ClientConfig::new();
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "1000");
    if !config.properties.contains_key("auto.offset.reset") {
        client.set("auto.offset.reset", "earliest");
    }
    let consumer: StreamConsumer<Context> = client
        .create_with_context(Context {
            metrics: metrics.clone(),
            quiet: Quiet::default(),
        })
        .map_err(SourceError::Consumer)?;
    let topics: Vec<String> = config.topics.iter().map(|t| t.name.clone()).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    // Every series at zero before its first message (the topics are known only here).
    for topic in &names {
        for result in ["ok", "dead_letter"] {
            metrics.kafka_messages.with_label_values(&[topic, result]);
        }
    }
    consumer
        .subscribe(&names)
        .map_err(|source| SourceError::Subscribe {
            topics: topics.clone(),
            source,
        })?;
    let reading = Reading {
        formats: config
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.format.format()))
            .collect(),
        limits,
    };
    let producer: Option<FutureProducer> = match &config.dead_letter_topic {
        None => None,
        Some(_) => {
            let mut p = ClientConfig::new();
            for (key, value) in &config.properties {
                if !key.starts_with("auto.") && !key.starts_with("enable.auto") {
                    p.set(key, value);
                }
            }
            Some(
                p.set("bootstrap.servers", &config.brokers)
                    .create()
                    .map_err(SourceError::Producer)?,
            )
        }
    };
    tracing::info!(brokers = %config.brokers, group = %config.group_id, topics = ?topics, "kafka source started");

    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m,
        };
        let mut batch = Vec::new();
        match first {
            Ok(m) => batch.push(owned(&m)),
            Err(e) => {
                consumer
                    .context()
                    .quiet
                    .warn(&e, None, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // Take what is already there, without waiting, up to a batch.
        while batch.len() < config.max_batch {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(owned(&m)),
                Some(Err(e)) => {
                    consumer
                        .context()
                        .quiet
                        .warn(&e, None, "kafka consumer error");
                    break;
                }
                None => break,
            }
        }
        if !process(
            batch, &config, &reading, &queue, &metrics, &consumer, &producer,
        )
        .await
        {
            break;
        }
    }

    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final offset commit");
    }
    tracing::info!("kafka source stopped");
    Ok(())
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    Received {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Read each message, hand it to the writer (pausing while its queue is full), await every
/// durable answer in order and store the offsets. Returns false when the writer has gone.
async fn process(
    batch: Vec<Received>,
    config: &KafkaConfig,
    reading: &Reading,
    queue: &Queue,
    metrics: &Metrics,
    consumer: &StreamConsumer<Context>,
    producer: &Option<FutureProducer>,
) -> bool {
    let now = chrono::Utc::now();
    let mut in_flight = Vec::with_capacity(batch.len());
    for m in batch {
        let (reply, answer) = oneshot::channel();
        let format = reading.formats.get(&m.topic).copied().flatten();
        let limits = reading.limits;
        let read = if m.payload.len() > config.max_message_bytes {
            Err(format!(
                "message of {} bytes exceeds kafka.max_message_bytes ({})",
                m.payload.len(),
                config.max_message_bytes
            ))
        } else {
            formats::parse(format, &m.payload, now)
                .map(formats::Parsed::into_alerts)
                .map_err(|e| e.to_string())
                .and_then(|(source, alerts)| match limits.check(&alerts) {
                    Ok(()) => Ok((source, alerts)),
                    Err(breach) => Err(breach.detail),
                })
        };
        let (command, dead) = match read {
            Ok((source, alerts)) => {
                metrics.source(source).received.inc_by(alerts.len() as u64);
                (
                    Command::Ingest {
                        source,
                        alerts,
                        reply,
                    },
                    None,
                )
            }
            Err(error) => {
                let letter = DeadLetter::new(
                    &m.topic,
                    m.partition,
                    m.offset,
                    m.key.as_deref(),
                    &m.payload,
                    error,
                    now,
                );
                (
                    Command::DeadLetter {
                        letter: Box::new(letter.clone()),
                        reply,
                    },
                    Some(letter),
                )
            }
        };
        let mut command = command;
        let mut paused = false;
        loop {
            match queue.try_send(command) {
                Ok(()) => break,
                Err((SubmitError::Closed, _)) => return false,
                Err((SubmitError::Full, back)) => {
                    command = *back;
                    if !paused {
                        paused = true;
                        metrics.kafka_pauses.inc();
                        if let Ok(assignment) = consumer.assignment() {
                            if let Err(e) = consumer.pause(&assignment) {
                                tracing::warn!(error = %e, "pausing the consumer failed");
                            }
                        }
                        tracing::debug!("writer queue full: consumer paused");
                    }
                    // What is already in flight makes room as it is written.
                    settle(&mut in_flight, metrics, consumer, producer, config).await;
                    tokio::time::sleep(FULL_QUEUE_BACKOFF).await;
                }
            }
        }
        if paused {
            if let Ok(assignment) = consumer.assignment() {
                if let Err(e) = consumer.resume(&assignment) {
                    tracing::warn!(error = %e, "resuming the consumer failed");
                }
            }
            tracing::debug!("consumer resumed");
        }
        in_flight.push(InFlight {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            answer,
            dead,
        });
    }
    if !settle(&mut in_flight, metrics, consumer, producer, config).await {
        // A write failed (the store may be down: disk full): the messages are read again, but
        // not in a tight loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Commit what this batch stored now rather than at the next auto-commit tick: fewer replays
    // after a crash, and less for a revocation to commit (which a broker may refuse mid-rebalance).
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        if !matches!(
            e.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
        ) {
            tracing::debug!(error = %e, "committing offsets after a batch");
        }
    }
    true
}

/// Await the durable answers, in order, and store the offsets of what is on disk. A message
/// whose write failed is sought back to, so it is read again (at-least-once); later messages of
/// its partition are not stored past it. False when any write failed.
async fn settle(
    in_flight: &mut Vec<InFlight>,
    metrics: &Metrics,
    consumer: &StreamConsumer<Context>,
    producer: &Option<FutureProducer>,
    config: &KafkaConfig,
) -> bool {
    let mut failed: HashMap<(String, i32), i64> = HashMap::new();
    for m in in_flight.drain(..) {
        let key = (m.topic.clone(), m.partition);
        if failed.contains_key(&key) {
            continue;
        }
        match m.answer.await {
            Ok(Ok(_)) => {
                let result = if m.dead.is_some() {
                    "dead_letter"
                } else {
                    "ok"
                };
                metrics
                    .kafka_messages
                    .with_label_values(&[&m.topic, result])
                    .inc();
                if let (Some(letter), Some(producer), Some(topic)) =
                    (&m.dead, producer, &config.dead_letter_topic)
                {
                    forward_dead_letter(producer, topic, letter).await;
                }
                if let Err(e) = consumer.store_offset(&m.topic, m.partition, m.offset) {
                    tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, error = %e, "storing the offset failed");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(topic = %m.topic, partition = m.partition, offset = m.offset, error = %e, "message not stored; it will be read again");
                failed.insert(key, m.offset);
            }
            Err(_) => {
                tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, "writer gone before answering; the message will be read again");
                failed.insert(key, m.offset);
            }
        }
    }
    let all_stored = failed.is_empty();
    for ((topic, partition), offset) in failed {
        if let Err(e) = consumer.seek(
            &topic,
            partition,
            rdkafka::Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            tracing::error!(topic = %topic, partition, offset, error = %e, "seeking back to a failed message failed");
        }
    }
    all_stored
}

async fn forward_dead_letter(producer: &FutureProducer, topic: &str, letter: &DeadLetter) {
    let body = serde_json::to_vec(letter).unwrap_or_default();
    let key = format!("{}/{}/{}", letter.topic, letter.partition, letter.offset);
    let record = FutureRecord::to(topic).payload(&body).key(&key);
    if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
        tracing::warn!(topic = %topic, error = %e, "producing a dead letter failed; it is kept in the store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A broker that stays down is said once and then every REPEAT_EVERY with the count held
    /// back; another error is said at once.
    #[test]
    fn an_error_that_keeps_coming_is_said_once_then_at_most_every_repeat_every() {
        let quiet = Quiet::default();
        let t0 = Instant::now();
        let down = "all brokers down";
        assert_eq!(quiet.say(down, t0), Some(0));
        for ms in 1..=200 {
            assert_eq!(quiet.say(down, t0 + Duration::from_millis(ms * 50)), None);
        }
        assert_eq!(quiet.say("connection refused", t0), Some(0));
        assert_eq!(quiet.say(down, t0 + REPEAT_EVERY), Some(200));
        assert_eq!(quiet.say(down, t0 + REPEAT_EVERY), None);
        assert_eq!(quiet.say(down, t0 + 2 * REPEAT_EVERY), Some(1));
    }
}

//! The Kafka sink: incident events produced to a topic, keyed by incident id (so one incident's
//! events stay in order on one partition), with an idempotent producer and `acks=all`.
//!
//! An attempt is bounded by the sink's `timeout` (10 s by default), set as librdkafka's
//! `message.timeout.ms` (whose own default is 5 minutes): with the brokers down, attempts fail,
//! are counted and retried, and the backlog shows, rather than one attempt waiting for minutes.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;

use super::{DeliveryError, Filter, Sink};
use crate::config::KafkaSinkConfig;
use crate::outbox::OutboxEvent;
use crate::quiet::Quiet;

/// librdkafka properties the sink sets itself: `[notify.kafka.properties]` may not.
pub const MANAGED_PROPERTIES: [&str; 4] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "message.timeout.ms",
];

pub struct KafkaSink {
    topic: String,
    filter: Filter,
    producer: FutureProducer<SinkContext>,
}

/// The producer's callbacks: its errors said once, then at most every 30 s with how many times
/// they came meanwhile (with its brokers down, librdkafka reports it many times a minute).
#[derive(Default)]
pub struct SinkContext {
    quiet: Quiet,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet
            .warn(&error, Some(reason), "kafka sink client error");
    }
}

/// The sink's producer config: its properties, then those it sets itself.
pub fn producer_config(config: &KafkaSinkConfig, brokers: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    let timeout_ms = config.timeout.0.as_millis().clamp(1, i32::MAX as u128);
    client
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", timeout_ms.to_string());
    client
}

impl KafkaSink {
    pub fn new(config: &KafkaSinkConfig, brokers: &str) -> Result<KafkaSink, String> {
        let producer = producer_config(config, brokers)
            .create_with_context(SinkContext::default())
            .map_err(|e| format!("cannot create the Kafka sink's producer: {e}"))?;
        Ok(KafkaSink {
            topic: config.topic.clone(),
            filter: Filter::new(&config.filter())?,
            producer,
        })
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    fn filter(&self) -> &Filter {
        &self.filter
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn deliver(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(event).unwrap_or_default();
        let key = event
            .incident_id()
            .unwrap_or_else(|| event.event_id.clone());
        let record = FutureRecord::to(&self.topic).payload(&body).key(&key);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| DeliveryError::Retryable(format!("produce to {}: {e}", self.topic)))
    }
}

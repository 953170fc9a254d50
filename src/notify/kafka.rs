//! The Kafka sink: incident events produced to a topic, keyed by incident id (so one incident's
//! events stay in order on one partition), with an idempotent producer and `acks=all`.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{DeliveryError, Filter, Sink};
use crate::config::KafkaSinkConfig;
use crate::outbox::OutboxEvent;

pub struct KafkaSink {
    topic: String,
    filter: Filter,
    producer: FutureProducer,
}

impl KafkaSink {
    pub fn new(config: &KafkaSinkConfig, brokers: &str) -> Result<KafkaSink, String> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let producer = client
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
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

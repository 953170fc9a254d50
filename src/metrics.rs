//! Every metric triaged exports, declared once on an explicit registry.
//!
//! Label values are bounded (sources, tiers, severities, reasons: never a fingerprint or an id)
//! and pre-initialised at zero, so a rate() over them works from the first scrape. Who increments
//! what is the business of the pipeline and the sources; this module only names and renders.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alert::{Severity, Source};
use crate::incident::Tier;

/// Reasons an ingest request is refused; the `reason` label of `triaged_alerts_rejected_total`.
pub const REJECT_REASONS: [&str; 14] = [
    "malformed_json",
    "invalid_alert",
    "unsupported_media_type",
    "body_too_large",
    "body_timeout",
    "too_many_alerts",
    "too_many_labels",
    "label_too_long",
    "overloaded",
    "too_many_connections",
    "unauthorized",
    "forbidden",
    "store_unavailable",
    "malformed_http",
];

/// Buckets for MTTA / MTTR: from seconds (automation) to days (vendor tickets).
const INCIDENT_SECONDS_BUCKETS: &[f64] = &[
    1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
    259200.0, 604800.0,
];

/// Every `reason` of `incidents_escalated_total`.
pub const ESCALATION_REASONS: [&str; 7] = [
    "severity",
    "member_tier",
    "ack_timeout",
    "resolve_timeout",
    "reopened",
    "flapping",
    "manual",
];

/// Every `result` of `notifications_total`: delivered, failed (and retried), not for the sink.
pub const NOTIFICATION_RESULTS: [&str; 3] = ["ok", "error", "filtered"];

pub struct Metrics {
    pub registry: Registry,
    pub alerts_received: IntCounterVec,
    pub alerts_rejected: IntCounterVec,
    pub alerts_deduplicated: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub alerts_auto_handled: IntCounter,
    pub incidents_opened: IntCounterVec,
    pub incidents_escalated: IntCounterVec,
    pub incidents_resolved: IntCounterVec,
    pub incidents_auto_resolved: IntCounterVec,
    pub incidents_reopened: IntCounterVec,
    pub incidents_deescalated: IntCounterVec,
    pub alerts_flapping: IntCounter,
    pub queue_capacity: IntGauge,
    pub rule_matches: IntCounterVec,
    pub notifications: IntCounterVec,
    pub outbox_pending: IntGaugeVec,
    pub kafka_messages: IntCounterVec,
    pub kafka_consumer_lag: IntGaugeVec,
    pub kafka_rebalances: IntCounterVec,
    pub kafka_pauses: IntCounter,
    pub kafka_assigned_partitions: IntGauge,
    pub kafka_connected: IntGauge,
    pub kafka_dead_letter_copies: IntCounterVec,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp_seconds: IntGauge,
    pub incidents_open: IntGaugeVec,
    pub incident_ack_seconds: HistogramVec,
    pub incident_resolve_seconds: HistogramVec,
    pub ingest_duration_seconds: HistogramVec,
    pub queue_depth: IntGauge,
    pub http_connections_open: IntGauge,
    pub http_inflight_bytes: IntGauge,
    pub http_connections_rejected: IntCounter,
    pub http_auth_failures: IntCounterVec,
    pub tls_handshake_failures: IntCounter,
    pub http_parse_errors: IntCounter,
    pub store_flush_seconds: Histogram,
    /// 1 while the store takes writes; 0 while it is down (disk full, read-only ...).
    pub store_writable: IntGauge,
    pub store_write_failures: IntCounter,
    /// Group commits by where they ran: `writer` (the writer's thread) or `runtime` (the HTTP
    /// runtime's committer, while its worker was idle).
    pub store_commits: IntCounterVec,
    pub store_refresh_log_entries: IntGauge,
    /// What retention removed, by kind (see [`crate::retention`]).
    pub retention_removed: IntCounterVec,
    pub build_info: IntGaugeVec,
    by_source: BySource<SourceSeries>,
}

/// The series of one source that ingestion touches for every request or repeated alert, looked
/// up by label once at start rather than each time.
pub struct SourceSeries {
    /// `triaged_alerts_received_total{source}`.
    pub received: IntCounter,
    /// `triaged_ingest_duration_seconds{source}`.
    pub ingest_duration: Histogram,
    /// `triaged_alerts_deduplicated_total{source}`, which the writer counts for each repeat.
    pub deduplicated: IntCounter,
}

/// One value per [`Source`].
struct BySource<T> {
    alertmanager: T,
    webhook: T,
    pagerduty: T,
    native: T,
}

impl<T> BySource<T> {
    fn new(make: impl Fn(Source) -> T) -> BySource<T> {
        BySource {
            alertmanager: make(Source::Alertmanager),
            webhook: make(Source::Webhook),
            pagerduty: make(Source::Pagerduty),
            native: make(Source::Native),
        }
    }

    fn get(&self, source: Source) -> &T {
        match source {
            Source::Alertmanager => &self.alertmanager,
            Source::Webhook => &self.webhook,
            Source::Pagerduty => &self.pagerduty,
            Source::Native => &self.native,
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("triaged")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let alerts_received = IntCounterVec::new(
            opts("alerts_received_total", "Alerts received, by source."),
            &["source"],
        )
        .unwrap();
        let ingest_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ingest_duration_seconds",
                "Time to accept an ingest request, durable write included.",
            )
            .namespace("triaged")
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).unwrap()),
            &["source"],
        )
        .unwrap();
        let alerts_deduplicated = IntCounterVec::new(
            opts(
                "alerts_deduplicated_total",
                "Alerts that repeated an alert already firing.",
            ),
            &["source"],
        )
        .unwrap();
        let m = Metrics {
            by_source: BySource::new(|source| SourceSeries {
                received: alerts_received.with_label_values(&[source.as_str()]),
                ingest_duration: ingest_duration_seconds.with_label_values(&[source.as_str()]),
                deduplicated: alerts_deduplicated.with_label_values(&[source.as_str()]),
            }),
            alerts_received,
            ingest_duration_seconds,
            alerts_rejected: IntCounterVec::new(
                opts(
                    "alerts_rejected_total",
                    "Ingest requests refused, by source and reason.",
                ),
                &["source", "reason"],
            )
            .unwrap(),
            alerts_deduplicated,
            alerts_suppressed: IntCounterVec::new(
                opts(
                    "alerts_suppressed_total",
                    "Alerts that opened nothing on purpose, by reason (drop: a rule dropped it).",
                ),
                &["reason"],
            )
            .unwrap(),
            alerts_auto_handled: IntCounter::with_opts(opts(
                "alerts_auto_handled_total",
                "Alerts triaged to L0: recorded, no human incident.",
            ))
            .unwrap(),
            incidents_opened: IntCounterVec::new(
                opts("incidents_opened_total", "Incidents opened."),
                &["tier", "severity"],
            )
            .unwrap(),
            incidents_escalated: IntCounterVec::new(
                opts("incidents_escalated_total", "Incident escalations."),
                &["from", "to", "reason"],
            )
            .unwrap(),
            incidents_resolved: IntCounterVec::new(
                opts(
                    "incidents_resolved_total",
                    "Incidents resolved, by the tier they were at and by whom: first_contact (the tier that opened it) or escalated (a later tier).",
                ),
                &["tier", "by"],
            )
            .unwrap(),
            incidents_auto_resolved: IntCounterVec::new(
                opts(
                    "incidents_auto_resolved_total",
                    "Incidents that resolved by themselves when all their alerts had resolved.",
                ),
                &["tier"],
            )
            .unwrap(),
            incidents_reopened: IntCounterVec::new(
                opts(
                    "incidents_reopened_total",
                    "Incidents reopened by an alert firing again within dedup.reopen_window.",
                ),
                &["tier"],
            )
            .unwrap(),
            incidents_deescalated: IntCounterVec::new(
                opts("incidents_deescalated_total", "Incident de-escalations."),
                &["from", "to"],
            )
            .unwrap(),
            alerts_flapping: IntCounter::with_opts(opts(
                "alerts_flapping_total",
                "Times an alert started flapping (more state changes than flapping.max_changes within flapping.window).",
            ))
            .unwrap(),
            kafka_messages: IntCounterVec::new(
                opts(
                    "kafka_messages_total",
                    "Kafka messages consumed, by topic and result (ok, dead_letter).",
                ),
                &["topic", "result"],
            )
            .unwrap(),
            kafka_consumer_lag: IntGaugeVec::new(
                opts(
                    "kafka_consumer_lag",
                    "Messages on the broker not yet stored as processed, per assigned partition.",
                ),
                &["topic", "partition"],
            )
            .unwrap(),
            kafka_rebalances: IntCounterVec::new(
                opts(
                    "kafka_rebalances_total",
                    "Consumer group rebalances, by kind (assign, revoke).",
                ),
                &["kind"],
            )
            .unwrap(),
            kafka_pauses: IntCounter::with_opts(opts(
                "kafka_pauses_total",
                "Times the consumer paused its partitions because the writer queue was full.",
            ))
            .unwrap(),
            kafka_assigned_partitions: IntGauge::with_opts(opts(
                "kafka_assigned_partitions",
                "Partitions assigned to this consumer.",
            ))
            .unwrap(),
            kafka_connected: IntGauge::with_opts(opts(
                "kafka_connected",
                "1 while the consumer is connected to at least one broker.",
            ))
            .unwrap(),
            kafka_dead_letter_copies: IntCounterVec::new(
                opts(
                    "kafka_dead_letter_copies_total",
                    "Dead letters copied to kafka.dead_letter_topic (ok), and failed attempts (error: tried again).",
                ),
                &["result"],
            )
            .unwrap(),
            notifications: IntCounterVec::new(
                opts(
                    "notifications_total",
                    "Outbox events per sink, by result (ok, error: retried, filtered: not for this sink).",
                ),
                &["sink", "result"],
            )
            .unwrap(),
            outbox_pending: IntGaugeVec::new(
                opts(
                    "outbox_pending",
                    "Outbox events a sink has not passed yet (its backlog).",
                ),
                &["sink"],
            )
            .unwrap(),
            rule_matches: IntCounterVec::new(
                opts(
                    "rule_matches_total",
                    "Alerts each classification rule matched (with `continue`, every matching rule counts).",
                ),
                &["rule"],
            )
            .unwrap(),
            config_last_reload_successful: IntGauge::with_opts(opts(
                "config_last_reload_successful",
                "Whether the last configuration reload succeeded (1) or was refused (0).",
            ))
            .unwrap(),
            config_last_reload_success_timestamp_seconds: IntGauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration in force was loaded (Unix seconds).",
            ))
            .unwrap(),
            queue_capacity: IntGauge::with_opts(opts(
                "queue_capacity",
                "Commands the writer queue holds at most (server.queue_capacity).",
            ))
            .unwrap(),
            incidents_open: IntGaugeVec::new(
                opts(
                    "incidents_open",
                    "Incidents not yet resolved (open or acknowledged).",
                ),
                &["tier"],
            )
            .unwrap(),
            incident_ack_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "incident_ack_seconds",
                    "Time from reaching a tier (opening, escalation, reopening) to acknowledgement at it (MTTA).",
                )
                .namespace("triaged")
                .buckets(INCIDENT_SECONDS_BUCKETS.to_vec()),
                &["tier", "severity"],
            )
            .unwrap(),
            incident_resolve_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "incident_resolve_seconds",
                    "Time from opening to resolution (MTTR).",
                )
                .namespace("triaged")
                .buckets(INCIDENT_SECONDS_BUCKETS.to_vec()),
                &["tier", "severity"],
            )
            .unwrap(),
            http_connections_open: IntGauge::with_opts(opts(
                "http_connections_open",
                "HTTP connections open now.",
            ))
            .unwrap(),
            http_inflight_bytes: IntGauge::with_opts(opts(
                "http_inflight_bytes",
                "Request bytes admitted against server.max_inflight_bytes and not yet answered (in KiB steps).",
            ))
            .unwrap(),
            http_connections_rejected: IntCounter::with_opts(opts(
                "http_connections_rejected_total",
                "Connections refused (503, then closed) beyond server.max_connections.",
            ))
            .unwrap(),
            http_auth_failures: IntCounterVec::new(
                opts(
                    "http_auth_failures_total",
                    "Requests refused by authentication: missing or invalid credentials (401), or a token without the role (403).",
                ),
                &["reason"],
            )
            .unwrap(),
            tls_handshake_failures: IntCounter::with_opts(opts(
                "tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
            ))
            .unwrap(),
            http_parse_errors: IntCounter::with_opts(opts(
                "http_parse_errors_total",
                "Requests refused by the HTTP parser before routing (400 with an empty body, or 431): a malformed request line or header, such as a duplicate or negative Content-Length.",
            ))
            .unwrap(),
            queue_depth: IntGauge::with_opts(opts(
                "queue_depth",
                "Commands waiting for the writer.",
            ))
            .unwrap(),
            store_flush_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "store_flush_seconds",
                    "Duration of one group commit (journal write and fdatasync, apply to sled).",
                )
                .namespace("triaged")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap()),
            )
            .unwrap(),
            store_writable: IntGauge::with_opts(opts(
                "store_writable",
                "1 while the store takes writes; 0 while it is down (disk full, read-only, I/O errors) and changes are answered 503.",
            ))
            .unwrap(),
            store_write_failures: IntCounter::with_opts(opts(
                "store_write_failures_total",
                "Group commits that failed; each took the store down until it could be reopened.",
            ))
            .unwrap(),
            store_commits: IntCounterVec::new(
                opts(
                    "store_commits_total",
                    "Group commits, by where they ran: the writer's own thread (writer), or the HTTP runtime's committer while its worker had nothing else to do (runtime).",
                ),
                &["by"],
            )
            .unwrap(),
            retention_removed: IntCounterVec::new(
                opts(
                    "retention_removed_total",
                    "What storage.retention removed from the store, by kind: incident (resolved), alert (resolved), silence (expired), dead_letter, outbox (events no sink reads).",
                ),
                &["kind"],
            )
            .unwrap(),
            store_refresh_log_entries: IntGauge::with_opts(opts(
                "store_refresh_log_entries",
                "Entries in the refresh log: re-sends of firing alerts not yet folded into their records.",
            ))
            .unwrap(),
            build_info: IntGaugeVec::new(
                opts("build_info", "Always 1; the version that runs."),
                &["version"],
            )
            .unwrap(),
            registry,
        };
        m.register_all();
        m.initialise_labels();
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.alerts_received.clone()),
            Box::new(self.alerts_rejected.clone()),
            Box::new(self.alerts_deduplicated.clone()),
            Box::new(self.alerts_suppressed.clone()),
            Box::new(self.alerts_auto_handled.clone()),
            Box::new(self.incidents_opened.clone()),
            Box::new(self.incidents_escalated.clone()),
            Box::new(self.incidents_resolved.clone()),
            Box::new(self.incidents_auto_resolved.clone()),
            Box::new(self.incidents_reopened.clone()),
            Box::new(self.incidents_deescalated.clone()),
            Box::new(self.alerts_flapping.clone()),
            Box::new(self.queue_capacity.clone()),
            Box::new(self.rule_matches.clone()),
            Box::new(self.notifications.clone()),
            Box::new(self.outbox_pending.clone()),
            Box::new(self.kafka_messages.clone()),
            Box::new(self.kafka_consumer_lag.clone()),
            Box::new(self.kafka_rebalances.clone()),
            Box::new(self.kafka_pauses.clone()),
            Box::new(self.kafka_assigned_partitions.clone()),
            Box::new(self.kafka_connected.clone()),
            Box::new(self.kafka_dead_letter_copies.clone()),
            Box::new(self.config_last_reload_successful.clone()),
            Box::new(self.config_last_reload_success_timestamp_seconds.clone()),
            Box::new(self.incidents_open.clone()),
            Box::new(self.incident_ack_seconds.clone()),
            Box::new(self.incident_resolve_seconds.clone()),
            Box::new(self.ingest_duration_seconds.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.http_connections_open.clone()),
            Box::new(self.http_inflight_bytes.clone()),
            Box::new(self.http_connections_rejected.clone()),
            Box::new(self.http_auth_failures.clone()),
            Box::new(self.tls_handshake_failures.clone()),
            Box::new(self.http_parse_errors.clone()),
            Box::new(self.store_flush_seconds.clone()),
            Box::new(self.store_writable.clone()),
            Box::new(self.store_write_failures.clone()),
            Box::new(self.store_commits.clone()),
            Box::new(self.store_refresh_log_entries.clone()),
            Box::new(self.retention_removed.clone()),
            Box::new(self.build_info.clone()),
        ];
        for c in collectors {
            // Names are unique by construction; a clash is a programming error caught by tests.
            self.registry.register(c).expect("metric registered once");
        }
    }

    /// The per-source series of ingestion (see [`SourceSeries`]).
    pub fn source(&self, source: Source) -> &SourceSeries {
        self.by_source.get(source)
    }

    fn initialise_labels(&self) {
        // `alerts_received`, `ingest_duration_seconds` and `alerts_deduplicated` are, for every
        // source, by `by_source`.
        for source in Source::ALL.map(Source::as_str) {
            for reason in REJECT_REASONS {
                self.alerts_rejected.with_label_values(&[source, reason]);
            }
        }
        for reason in ["missing", "invalid", "forbidden"] {
            self.http_auth_failures.with_label_values(&[reason]);
        }
        for reason in ["drop", "silence"] {
            self.alerts_suppressed.with_label_values(&[reason]);
        }
        for by in ["writer", "runtime"] {
            self.store_commits.with_label_values(&[by]);
        }
        for kind in crate::retention::KINDS {
            self.retention_removed.with_label_values(&[kind]);
        }
        for kind in ["assign", "revoke"] {
            self.kafka_rebalances.with_label_values(&[kind]);
        }
        for tier in &Tier::ALL[1..] {
            let tier = tier.as_str();
            self.incidents_open.with_label_values(&[tier]);
            self.incidents_auto_resolved.with_label_values(&[tier]);
            self.incidents_reopened.with_label_values(&[tier]);
            for by in ["first_contact", "escalated"] {
                self.incidents_resolved.with_label_values(&[tier, by]);
            }
            for severity in Severity::ALL {
                self.incidents_opened
                    .with_label_values(&[tier, severity.as_str()]);
                self.incident_ack_seconds
                    .with_label_values(&[tier, severity.as_str()]);
                self.incident_resolve_seconds
                    .with_label_values(&[tier, severity.as_str()]);
            }
        }
        // Escalations and de-escalations too, every (from, to) pair: a series that first shows
        // at 1 has no increase to Prometheus, so the first escalation of each kind would be
        // missing from the shipped escalation-rate rules (and a first resolution from MTTR).
        for from in &Tier::ALL[1..] {
            for to in &Tier::ALL[1..] {
                if to > from {
                    for reason in ESCALATION_REASONS {
                        self.incidents_escalated.with_label_values(&[
                            from.as_str(),
                            to.as_str(),
                            reason,
                        ]);
                    }
                } else if to < from {
                    self.incidents_deescalated
                        .with_label_values(&[from.as_str(), to.as_str()]);
                }
            }
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// The sinks started (their names known only from the config): each one's notification
    /// results and backlog show from zero.
    pub fn sinks_started(&self, sinks: &[String]) {
        for sink in sinks {
            for result in NOTIFICATION_RESULTS {
                self.notifications.with_label_values(&[sink, result]);
            }
            self.outbox_pending.with_label_values(&[sink]);
        }
    }

    /// A configuration is in force: its rules show from zero, the reload gauges say so.
    pub fn config_loaded(&self, rules: &[crate::config::RuleConfig]) {
        for rule in rules {
            self.rule_matches.with_label_values(&[&rule.name]);
        }
        self.config_last_reload_successful.set(1);
        self.config_last_reload_success_timestamp_seconds
            .set(chrono::Utc::now().timestamp());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own registry into a Vec cannot fail.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of metrics");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_from_the_first_scrape() {
        let text = Metrics::new().render();
        for name in [
            "triaged_alerts_received_total{source=\"alertmanager\"} 0",
            "triaged_alerts_received_total{source=\"pagerduty\"} 0",
            "triaged_ingest_duration_seconds_count{source=\"native\"} 0",
            "triaged_ingest_duration_seconds_count{source=\"webhook\"} 0",
            "triaged_alerts_rejected_total{reason=\"malformed_json\",source=\"native\"} 0",
            "triaged_alerts_deduplicated_total{source=\"webhook\"} 0",
            "triaged_alerts_suppressed_total{reason=\"drop\"} 0",
            "triaged_alerts_auto_handled_total 0",
            "triaged_incidents_opened_total{severity=\"critical\",tier=\"L3\"} 0",
            "triaged_incidents_resolved_total{by=\"first_contact\",tier=\"L1\"} 0",
            "triaged_incidents_reopened_total{tier=\"L2\"} 0",
            "triaged_alerts_suppressed_total{reason=\"silence\"} 0",
            "triaged_incidents_open{tier=\"L2\"} 0",
            "triaged_queue_depth 0",
            "triaged_store_flush_seconds_count 0",
            "triaged_incidents_escalated_total{from=\"L1\",reason=\"manual\",to=\"L2\"} 0",
            "triaged_incidents_escalated_total{from=\"L3\",reason=\"severity\",to=\"L4\"} 0",
            "triaged_incidents_deescalated_total{from=\"L4\",to=\"L1\"} 0",
            "triaged_incident_resolve_seconds_count{severity=\"warning\",tier=\"L1\"} 0",
            "triaged_incident_resolve_seconds_sum{severity=\"critical\",tier=\"L4\"} 0",
            "triaged_incident_ack_seconds_count{severity=\"major\",tier=\"L2\"} 0",
            "triaged_store_write_failures_total 0",
            "triaged_store_commits_total{by=\"runtime\"} 0",
            "triaged_store_commits_total{by=\"writer\"} 0",
            "triaged_store_writable 0",
            "triaged_store_refresh_log_entries 0",
            "triaged_retention_removed_total{kind=\"incident\"} 0",
            "triaged_retention_removed_total{kind=\"outbox\"} 0",
            "triaged_build_info{version=",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}

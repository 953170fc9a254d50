//! Alertmanager webhook receiver payload, version 4: the body Alertmanager's `webhook_configs`
//! send to `POST /api/v1/webhook/alertmanager`; and Grafana's webhook contact point, which sends
//! the same shape as its version 1 (with `orgId`, `title`, `state`, `message` beside the group,
//! and `values`, `valueString`, `silenceURL`, `dashboardURL`, `panelURL` on each alert).
//!
//! This module owns reading that body: one notification per request, carrying a whole alert
//! group in `alerts`. Only `version` and `alerts` matter; the group fields (`status`, `receiver`,
//! `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, `groupKey`,
//! `truncatedAlerts`), Grafana's additions and unknown fields are ignored, as is each alert's own
//! `fingerprint` (triaged computes its own, which equals Alertmanager's when no labels are
//! excluded).
//! Alertmanager reports resolution itself (`status: "resolved"`), so these alerts do not expire
//! without a refresh.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    clean_labels, from_object, non_empty, null_as_default, read_alerts, wire_times, AlertArray,
    ParseError,
};
use crate::alert::{Alert, Labels, Source, Status};

/// The payload versions this module reads: Alertmanager 0.x all send "4", Grafana's unified
/// alerting (9 and later) "1" for the same shape.
const VERSIONS: [&str; 2] = ["4", "1"];

#[derive(Debug, Deserialize)]
struct Message {
    /// Any JSON value, so that a wrong version is reported as such rather than as a type error.
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(deserialize_with = "null_as_default")]
    alerts: AlertArray<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
struct WebhookAlert {
    #[serde(default)]
    status: Option<String>,
    #[serde(deserialize_with = "super::labels_or_null")]
    labels: Labels,
    #[serde(default, deserialize_with = "super::annotations_or_null")]
    annotations: Labels,
    #[serde(rename = "startsAt", default, deserialize_with = "super::time")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt", default, deserialize_with = "super::time")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL", default)]
    generator_url: Option<String>,
}

/// Parse a webhook payload into its alerts. An empty `alerts` list yields no alerts.
pub fn parse(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    let message: Message =
        read_alerts(|| from_object(body, "an Alertmanager webhook payload object"))?;
    match &message.version {
        None => {}
        Some(serde_json::Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
        Some(other) => {
            return Err(ParseError::invalid(
                "payload",
                format!(
                    "unsupported webhook version {other}, expected \"4\" (Alertmanager) or \"1\" (Grafana)"
                ),
            ))
        }
    }
    let AlertArray(alerts) = message.alerts;
    alerts
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let status = match raw.status.as_deref() {
                Some("firing") => Status::Firing,
                Some("resolved") => Status::Resolved,
                Some(_) => {
                    return Err(ParseError::alert(
                        index,
                        "status must be \"firing\" or \"resolved\"",
                    ))
                }
                None => {
                    return Err(ParseError::alert(
                        index,
                        "status is required: \"firing\" or \"resolved\"",
                    ))
                }
            };
            let mut alert = Alert::new(Source::Webhook, clean_labels(raw.labels, index)?);
            alert.annotations = raw.annotations;
            alert.status = status;
            let ends_at;
            (alert.starts_at, ends_at) =
                wire_times(raw.starts_at, raw.ends_at, ["startsAt", "endsAt"], index)?;
            // `status` decides: a firing alert stays firing until it is sent resolved, whatever
            // its `endsAt` says (Alertmanager sends none; another sender's, past or future,
            // would otherwise resolve it, or expire it, unsent).
            alert.ends_at = match status {
                Status::Firing => None,
                Status::Resolved => ends_at,
            };
            alert.generator_url = non_empty(raw.generator_url);
            alert.expires_without_refresh = false;
            Ok(alert)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;
    use crate::alert::Fingerprint;

    const FIRING: &[u8] =
        include_bytes!("../../../tests/fixtures/alertmanager-0.25-webhook-firing.json");
    const RESOLVED: &[u8] =
        include_bytes!("../../../tests/fixtures/alertmanager-0.25-webhook-resolved.json");
    const GRAFANA: &[u8] = include_bytes!("../../../tests/fixtures/grafana-11-webhook-firing.json");
    const HUNDRED: &[u8] =
        include_bytes!("../../../tests/fixtures/alertmanager-0.25-webhook-100-alerts.json");

    fn time(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn firing_group() {
        let alerts = parse(FIRING).unwrap();
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!(a.source, Source::Webhook);
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.fingerprint, None);
        assert_eq!(a.severity, None);
        assert_eq!(
            a.labels,
            labels(&[
                ("alertname", "CaptureProbeFailure"),
                ("instance", "edge-1"),
                ("service", "edge"),
                ("severity", "major"),
            ])
        );
        assert_eq!(a.annotations, labels(&[("summary", "probe failed")]));
        assert_eq!(a.starts_at, Some(time("2026-11-26T16:12:42.956333655Z")));
        assert_eq!(a.ends_at, None, "the zero endsAt is not given");
        assert_eq!(a.generator_url, None, "an empty generatorURL is not given");
        assert!(!a.expires_without_refresh);
        assert_eq!(
            alerts[1].labels.get("instance").map(String::as_str),
            Some("edge-2")
        );
        assert_eq!(
            alerts[1].starts_at,
            Some(time("2026-11-26T16:12:42.986436322Z"))
        );
    }

    /// Grafana's webhook contact point: version "1", its own fields beside the group and on
    /// each alert (`values` a map of numbers, or null), a local-offset `startsAt`.
    #[test]
    fn grafana_group() {
        let alerts = parse(GRAFANA).unwrap();
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!((a.source, a.status), (Source::Webhook, Status::Firing));
        assert_eq!(
            a.labels,
            labels(&[
                ("alertname", "GrafanaDiskLatency"),
                ("grafana_folder", "Storage"),
                ("instance", "db-1"),
                ("service", "storage"),
                ("severity", "major"),
            ])
        );
        assert_eq!(
            a.annotations.get("runbook_url").map(String::as_str),
            Some("https://runbooks.example/disk-latency")
        );
        assert_eq!(a.starts_at, Some(time("2026-11-29T04:10:00.123456Z")));
        assert_eq!(a.ends_at, None, "the zero endsAt is not given");
        assert_eq!(
            a.generator_url.as_deref(),
            Some("https://grafana.example/alerting/grafana/c1f9a2b7/view?orgId=1")
        );
        assert!(!a.expires_without_refresh);
        let b = &alerts[1];
        assert_eq!(b.status, Status::Resolved);
        assert_eq!(b.ends_at, Some(time("2026-11-29T05:05:30Z")));
    }

    #[test]
    fn fingerprints_match_alertmanagers_own() {
        // The `fingerprint` fields of the fixture, as Alertmanager 0.25 computed them.
        let alerts = parse(FIRING).unwrap();
        let fps: Vec<String> = alerts
            .iter()
            .map(|a| Fingerprint::of(&a.labels, &[]).to_string())
            .collect();
        assert_eq!(fps, ["144ba4c113e82cf0", "131abf6533d9e66b"]);
    }

    #[test]
    fn resolved_group() {
        let firing = parse(FIRING).unwrap();
        let alerts = parse(RESOLVED).unwrap();
        assert_eq!(alerts.len(), 2);
        for (resolved, firing) in alerts.iter().zip(&firing) {
            assert_eq!(resolved.status, Status::Resolved);
            assert_eq!(resolved.labels, firing.labels);
            assert_eq!(resolved.starts_at, firing.starts_at);
            assert_eq!(resolved.ends_at, Some(time("2026-11-26T16:12:44Z")));
        }
    }

    #[test]
    fn truncated_group_of_a_hundred() {
        let alerts = parse(HUNDRED).unwrap();
        assert_eq!(alerts.len(), 100);
        assert!(alerts.iter().all(|a| a.status == Status::Firing
            && a.labels.get("alertname").map(String::as_str) == Some("HighLatency2")
            && a.annotations.contains_key("runbook_url")
            && a.generator_url.as_deref()
                == Some("http://prometheus.example.internal:9090/graph?g0.expr=latency")));
        assert_eq!(
            alerts[0].labels.get("instance").map(String::as_str),
            Some("host-100292.example.internal:9100")
        );
    }

    #[test]
    fn empty_alerts_and_missing_version_are_fine() {
        assert!(parse(br#"{"version":"4","alerts":[]}"#).unwrap().is_empty());
        let alerts = parse(
            br#"{"alerts":[{"status":"firing","labels":{"alertname":"X"},"annotations":null}]}"#,
        )
        .unwrap();
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].annotations.is_empty());
    }

    #[test]
    fn other_versions_are_rejected() {
        let err = parse(br#"{"version":"3","alerts":[]}"#).unwrap_err();
        assert_eq!(err.reason(), "invalid_alert");
        assert_eq!(
            err.to_string(),
            r#"invalid payload: unsupported webhook version "3", expected "4" (Alertmanager) or "1" (Grafana)"#
        );
        let err = parse(br#"{"version":4,"alerts":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid payload: unsupported webhook version 4, expected "4" (Alertmanager) or "1" (Grafana)"#
        );
    }

    #[test]
    fn the_status_decides_whatever_ends_at_says() {
        let body = br#"{"version":"4","alerts":[
            {"status":"firing","labels":{"alertname":"Past"},"endsAt":"2020-01-01T00:00:00Z"},
            {"status":"firing","labels":{"alertname":"Future"},"endsAt":"2999-01-01T00:00:00Z"},
            {"status":"resolved","labels":{"alertname":"Done"},"endsAt":"2020-01-01T00:00:00Z"}]}"#;
        let alerts = parse(body).unwrap();
        let now = Utc::now();
        let normalized: Vec<_> = alerts
            .into_iter()
            .map(|a| a.normalize(&[], &crate::alert::SeverityMap::default(), now))
            .collect();
        assert_eq!(normalized[0].alert.status, Status::Firing, "a past endsAt");
        assert_eq!(normalized[0].alert.ends_at, None);
        assert_eq!(normalized[1].alert.status, Status::Firing);
        assert_eq!(
            normalized[1].alert.ends_at, None,
            "no expiry from a future endsAt"
        );
        assert_eq!(normalized[2].alert.status, Status::Resolved);
        assert_eq!(
            normalized[2].alert.ends_at,
            Some(time("2020-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn unknown_status_names_the_alert() {
        let body = br#"{"version":"4","alerts":[
            {"status":"firing","labels":{"alertname":"A"}},
            {"status":"pending","labels":{"alertname":"B"}}]}"#;
        let err = parse(body).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid alert 1: status must be "firing" or "resolved""#
        );
        let err = parse(br#"{"alerts":[{"labels":{"alertname":"A"}}]}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid alert 0: status"),
            "{err}"
        );
    }

    #[test]
    fn empty_labels_name_the_alert() {
        let body = br#"{"alerts":[{"status":"firing","labels":{"alertname":""}}]}"#;
        let err = parse(body).unwrap_err();
        assert_eq!(err.to_string(), "invalid alert 0: labels must not be empty");
    }

    #[test]
    fn shape_errors_are_json_errors() {
        for body in [
            &br#"{"version":"4"}"#[..],
            br#"[]"#,
            br#"{"alerts":{}}"#,
            br#"{"alerts":[{"status":"firing"}]}"#,
            br#"{"alerts":[{"status":"firing","labels":{"a":"b"},"endsAt":5}]}"#,
            b"{",
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.reason(), "malformed_json", "{err}");
        }
        let err = parse(br#"{"version":"4"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `alerts`"), "{err}");
    }
}

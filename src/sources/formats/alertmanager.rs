//! Alertmanager API v2 postable alerts: the body of `POST /api/v2/alerts`, as Prometheus
//! (`alerting.alertmanagers` with `api_version: v2`) and `amtool alert add` send it.
//!
//! This module owns reading that body: a JSON array of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`. It is a foreign format, so unknown
//! fields are ignored and Go's `null` maps are accepted. Every alert is parsed as firing: the
//! senders re-send while an alert fires and say it resolved by an `endsAt` in the past, which
//! normalization turns into [`Status::Resolved`](crate::alert::Status::Resolved). Alerts from this
//! door expire without a refresh ([`Alert::expires_without_refresh`]).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{clean_labels, from_json, non_empty, read_alerts, wire_times, AlertArray, ParseError};
use crate::alert::{Alert, Labels, Source};

/// One element of the array (Alertmanager's `models.PostableAlert`).
#[derive(Debug, Deserialize)]
struct PostableAlert {
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

/// Parse a `POST /api/v2/alerts` body. An empty array yields no alerts; a JSON object instead of
/// an array is a [`ParseError::Json`] saying an array is expected.
pub fn parse(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    let AlertArray(raw) = read_alerts(|| from_json::<AlertArray<PostableAlert>>(body))?;
    raw.into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let mut alert = Alert::new(Source::Alertmanager, clean_labels(raw.labels, index)?);
            alert.annotations = raw.annotations;
            (alert.starts_at, alert.ends_at) =
                wire_times(raw.starts_at, raw.ends_at, ["startsAt", "endsAt"], index)?;
            alert.generator_url = non_empty(raw.generator_url);
            alert.expires_without_refresh = true;
            Ok(alert)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from as labels;
    use crate::alert::Status;

    const PROMETHEUS_FIRING: &[u8] =
        include_bytes!("../../../tests/fixtures/prometheus-2.42-firing.json");
    const PROMETHEUS_RESOLVED: &[u8] =
        include_bytes!("../../../tests/fixtures/prometheus-2.42-resolved.json");
    const AMTOOL: &[u8] = include_bytes!("../../../tests/fixtures/amtool-0.25-alert-add.json");
    const AMTOOL_SILENCE: &[u8] =
        include_bytes!("../../../tests/fixtures/amtool-0.25-silence-add.json");

    fn time(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn prometheus_firing_alert() {
        let alerts = parse(PROMETHEUS_FIRING).unwrap();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.source, Source::Alertmanager);
        assert_eq!(a.fingerprint, None);
        assert_eq!(a.severity, None);
        assert_eq!(
            a.labels,
            labels(&[
                ("alertname", "CaptureDiskFull"),
                ("service", "storage"),
                ("severity", "critical"),
            ])
        );
        assert_eq!(
            a.annotations,
            labels(&[
                ("runbook_url", "https://runbooks.example/disk"),
                ("summary", "Disk almost full on "),
            ])
        );
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.starts_at, Some(time("2026-11-26T16:12:09.255Z")));
        assert_eq!(a.ends_at, Some(time("2026-11-26T16:17:10.255Z")));
        assert_eq!(
            a.generator_url.as_deref(),
            Some("http://prometheus.example:9090/graph?g0.expr=vector%281%29&g0.tab=1")
        );
        assert!(a.expires_without_refresh);
    }

    #[test]
    fn prometheus_resolution_is_the_same_labels_with_an_end_in_the_past() {
        let firing = parse(PROMETHEUS_FIRING).unwrap();
        let resolved = parse(PROMETHEUS_RESOLVED).unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].labels, firing[0].labels);
        // The parser leaves status to normalization, which compares endsAt with the clock.
        assert_eq!(resolved[0].status, Status::Firing);
        assert_eq!(resolved[0].ends_at, Some(time("2026-11-26T16:13:19.255Z")));
        let normalized =
            resolved[0]
                .clone()
                .normalize(&[], &Default::default(), time("2026-11-26T16:14:00Z"));
        assert_eq!(normalized.alert.status, Status::Resolved);
    }

    #[test]
    fn amtool_zero_times_are_not_given() {
        let alerts = parse(AMTOOL).unwrap();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            a.labels.get("alertname").map(String::as_str),
            Some("CaptureAmtool")
        );
        assert_eq!(a.labels.len(), 4);
        assert_eq!(a.annotations, labels(&[("summary", "from amtool")]));
        assert_eq!(a.starts_at, None);
        assert_eq!(a.ends_at, None);
        assert_eq!(a.generator_url, None);
        assert!(a.expires_without_refresh);
    }

    #[test]
    fn empty_array_is_no_alerts() {
        assert!(parse(b"[]").unwrap().is_empty());
        assert!(parse(b" \n[ ]\n").unwrap().is_empty());
    }

    #[test]
    fn unknown_fields_and_null_maps_are_tolerated() {
        let body = br#"[{"labels":{"alertname":"X","empty":""},"annotations":null,"status":{"state":"active"},"generatorURL":""}]"#;
        let alerts = parse(body).unwrap();
        assert_eq!(alerts[0].labels, labels(&[("alertname", "X")]));
        assert!(alerts[0].annotations.is_empty());
        assert_eq!(alerts[0].generator_url, None);
    }

    #[test]
    fn an_object_instead_of_an_array_says_an_array_is_expected() {
        let err = parse(AMTOOL_SILENCE).unwrap_err();
        assert_eq!(err.reason(), "malformed_json");
        let text = err.to_string();
        assert!(text.contains("expected a JSON array of alerts"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
    }

    #[test]
    fn missing_or_empty_labels_are_rejected() {
        let err = parse(br#"[{"annotations":{}}]"#).unwrap_err();
        assert_eq!(err.reason(), "malformed_json");
        assert!(err.to_string().contains("missing field `labels`"), "{err}");

        let err = parse(br#"[{"labels":{"alertname":"A"}},{"labels":{"a":""}}]"#).unwrap_err();
        assert_eq!(err.reason(), "invalid_alert");
        assert_eq!(err.to_string(), "invalid alert 1: labels must not be empty");

        let err = parse(br#"[{"labels":null}]"#).unwrap_err();
        assert_eq!(err.to_string(), "invalid alert 0: labels must not be empty");
    }

    #[test]
    fn wrong_types_and_garbage_are_json_errors() {
        for body in [
            &b""[..],
            b"not json",
            b"[{\"labels\":{\"a\":1}}]",
            b"[{\"labels\":{\"a\":\"b\"},\"startsAt\":\"yesterday\"}]",
            b"[1]",
            b"[{\"labels\":{\"a\":\"b\"}}] trailing",
            b"\"[]\"",
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.reason(), "malformed_json", "{err}");
        }
    }
}

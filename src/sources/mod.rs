//! Sources: where alerts come in. Each source turns its wire format into `Vec<Alert>`
//! (`formats/`), sends one command into the writer queue and waits for the durable outcome
//! before it acknowledges anything (a 2xx, later a Kafka offset). Sources never touch the store
//! for writing; deciding is the pipeline's job.

pub mod auth;
pub mod formats;
pub mod http;
pub mod kafka;
pub mod tls;

use crate::alert::Alert;
use crate::config::ServerConfig;

/// The shape limits every source applies to what it parsed, before anything is queued: a storm
/// of giant label sets must not reach the store. From `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_alerts: usize,
    pub max_labels: usize,
    pub max_label_bytes: usize,
}

/// One limit breached: the `reason` of `triaged_alerts_rejected_total` and what to tell the
/// sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub reason: &'static str,
    pub detail: String,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            max_alerts: server.max_alerts_per_request,
            max_labels: server.max_labels_per_alert,
            max_label_bytes: server.max_label_bytes,
        }
    }

    /// The first limit `alerts` breach, if any. A request is accepted or refused whole.
    pub fn check(&self, alerts: &[Alert]) -> Result<(), Breach> {
        if alerts.len() > self.max_alerts {
            return Err(Breach {
                reason: "too_many_alerts",
                detail: format!(
                    "{} alerts in one request; server.max_alerts_per_request is {}: split the batch",
                    alerts.len(),
                    self.max_alerts
                ),
            });
        }
        for (i, alert) in alerts.iter().enumerate() {
            if alert.labels.len() > self.max_labels {
                return Err(Breach {
                    reason: "too_many_labels",
                    detail: format!(
                        "alert {i} has {} labels; server.max_labels_per_alert is {}",
                        alert.labels.len(),
                        self.max_labels
                    ),
                });
            }
            for (name, value) in &alert.labels {
                let long = if name.len() > self.max_label_bytes {
                    Some(("name", name.len()))
                } else if value.len() > self.max_label_bytes {
                    Some(("value", value.len()))
                } else {
                    None
                };
                if let Some((what, len)) = long {
                    let shown: String = name.chars().take(64).collect();
                    return Err(Breach {
                        reason: "label_too_long",
                        detail: format!(
                            "alert {i}: label {shown:?} has a {what} of {len} bytes; server.max_label_bytes is {}",
                            self.max_label_bytes
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{labels_from, Source};

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert::new(Source::Native, labels_from(labels))
    }

    #[test]
    fn each_limit_is_its_own_reason() {
        let limits = Limits {
            max_alerts: 2,
            max_labels: 2,
            max_label_bytes: 9,
        };
        let ok = alert(&[("alertname", "A"), ("sev", "x")]);
        assert_eq!(limits.check(&[ok.clone(), ok.clone()]), Ok(()));
        let reason = |alerts: &[Alert]| limits.check(alerts).unwrap_err().reason;
        assert_eq!(
            reason(&[ok.clone(), ok.clone(), ok.clone()]),
            "too_many_alerts"
        );
        assert_eq!(
            reason(&[ok.clone(), alert(&[("a", "1"), ("b", "2"), ("c", "3")])]),
            "too_many_labels"
        );
        assert_eq!(
            reason(&[alert(&[("alertname", "1234567890")])]),
            "label_too_long"
        );
        assert_eq!(
            reason(&[alert(&[("a_very_long_name", "1")])]),
            "label_too_long"
        );
        let detail = limits
            .check(&[ok.clone(), alert(&[("a", "1234567890")])])
            .unwrap_err()
            .detail;
        assert!(
            detail.contains("alert 1") && detail.contains("\"a\""),
            "{detail}"
        );
    }
}

//! The outbox: every incident change (and every L0 auto-handled alert) as an event, appended by
//! the writer in the same batch as the change it reports, so notifications are never lost nor
//! invented. Sinks (`notify/`) read it from their own cursors; delivery is at-least-once with a
//! stable `event_id`, so receivers can drop repeats.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::AlertRecord;
use crate::incident::{Incident, Tier};

/// The version of the event JSON sinks send.
pub const EVENT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub version: u32,
    /// Position in the outbox; increases by one per event.
    pub seq: u64,
    /// Stable across redeliveries: `INC-7:3` (the incident and its timeline entry), or
    /// `alert:<fingerprint>:<count>` for an auto-handled alert.
    pub event_id: String,
    /// opened, acknowledged, escalated, de_escalated, assigned, resolved, reopened, flapping,
    /// severity_raised, auto_handled.
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: Option<String>,
    pub from: Option<Tier>,
    pub to: Option<Tier>,
    /// The incident as it was right after the event (without its timeline).
    pub incident: Option<serde_json::Value>,
    /// The alert, for `auto_handled`.
    pub alert: Option<AlertRecord>,
    /// The runbook to run, for `auto_handled` (the L0 automation hook).
    pub runbook: Option<String>,
}

impl OutboxEvent {
    /// The incident's JSON without the timeline (which grows; the event says what happened).
    pub fn incident_snapshot(incident: &Incident) -> serde_json::Value {
        let mut v = serde_json::to_value(incident).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut v {
            map.remove("timeline");
            map.remove("events_published");
        }
        v
    }

    pub fn tier(&self) -> Option<Tier> {
        self.incident
            .as_ref()
            .and_then(|i| i.get("tier"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .or_else(|| self.alert.as_ref().map(|a| a.tier))
    }

    pub fn severity(&self) -> Option<crate::alert::Severity> {
        self.incident
            .as_ref()
            .and_then(|i| i.get("severity"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .or_else(|| self.alert.as_ref().map(|a| a.severity))
    }

    pub fn labels(&self) -> crate::alert::Labels {
        self.incident
            .as_ref()
            .and_then(|i| i.get("labels"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .or_else(|| self.alert.as_ref().map(|a| a.labels.clone()))
            .unwrap_or_default()
    }

    pub fn incident_id(&self) -> Option<String> {
        self.incident
            .as_ref()
            .and_then(|i| i.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

//! Offline tools over the pipeline: `triaged test-rules` (rule unit tests, like `promtool test
//! rules`) and `triaged replay` (recorded alerts through the rules, one row per alert).
//!
//! Both run the real pipeline in a [`Simulator`](crate::pipeline::Simulator): a throw-away store
//! on a manual clock, so they touch no state of a running daemon. This module owns what they
//! share: [`ToolError`] (and the exit code it maps to), naming a wire format, and showing a label
//! set.

pub mod replay;
pub mod test_rules;

use crate::alert::Labels;
use crate::pipeline::{Decision, Simulator};
use crate::sources::formats::Format;

/// Exit code for input that cannot be read or parsed (a test file, a recording, a config):
/// EX_USAGE, as for a bad config.
pub const EXIT_INPUT: u8 = 64;
/// Exit code for a run that could not be carried out (the scratch store failed).
pub const EXIT_FAILED: u8 = 1;

/// Why a tool could not do its job. Failing tests are not errors: `test_rules::run` reports them
/// in its output and its `Ok(false)`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file cannot be read or parsed; the text names the file and line, one problem per line.
    #[error("{0}")]
    Input(String),
    /// The simulation itself failed (scratch store, pipeline error).
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl ToolError {
    /// The process exit code for this error: 64 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Input(_) => EXIT_INPUT,
            ToolError::Failed(_) | ToolError::Output(_) => EXIT_FAILED,
        }
    }
}

/// The format names the tools accept (`--format`, `format = "..."`), with `auto` for detection.
pub const FORMAT_NAMES: [&str; 5] = ["auto", "alertmanager", "webhook", "pagerduty", "native"];

/// A wire format by name; `auto` is `None` (detect the format of each body).
pub fn format_from_name(name: &str) -> Result<Option<Format>, String> {
    Ok(Some(match name {
        "auto" => return Ok(None),
        "alertmanager" => Format::Alertmanager,
        "webhook" => Format::Webhook,
        "pagerduty" => Format::Pagerduty,
        "native" => Format::Native,
        other => {
            return Err(format!(
                "unknown format {other:?}: expected {}",
                FORMAT_NAMES.join(", ")
            ))
        }
    }))
}

/// Fill in what a decision leaves out for an alert that did not open or join its incident in
/// this request (a repeat, a resolution): the group key and runbook of the incident it belongs to.
pub(crate) fn complete(sim: &Simulator, decision: &mut Decision) {
    if decision.group_key.is_some() {
        return;
    }
    if let Some(incident) = decision.incident.and_then(|id| sim.incident(id)) {
        decision.group_key = Some(incident.group_key);
        decision.runbook = decision.runbook.take().or(incident.runbook);
    }
}

/// A label set as Prometheus shows one: `{alertname="DiskFull", env="prod"}`.
pub fn show_labels(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from;

    #[test]
    fn formats_by_name() {
        assert_eq!(format_from_name("auto"), Ok(None));
        assert_eq!(format_from_name("webhook"), Ok(Some(Format::Webhook)));
        assert!(format_from_name("prometheus")
            .unwrap_err()
            .contains("expected auto, alertmanager"));
    }

    #[test]
    fn labels_show_like_prometheus() {
        let l = labels_from(&[("env", "prod"), ("alertname", "Disk \"Full\"")]);
        assert_eq!(
            show_labels(&l),
            r#"{alertname="Disk \"Full\"", env="prod"}"#
        );
        assert_eq!(show_labels(&Labels::new()), "{}");
    }

    #[test]
    fn bad_input_is_64() {
        assert_eq!(ToolError::Input("x".into()).exit_code(), 64);
        assert_eq!(ToolError::Failed("x".into()).exit_code(), 1);
    }
}

//! `triaged replay [--config FILE] INPUT [--json] [--format F]`: recorded alerts through the
//! pipeline, one row per alert showing what triaged would decide.
//!
//! INPUT is one JSON body in any supported format, or NDJSON: one body per line, each in any
//! format (detected per line unless a format is given); blank lines are skipped. Every body goes,
//! in order, through ONE [`Simulator`], so dedup, grouping and silences span bodies: an alert
//! repeated on a later line shows `deduplicated` and joins the same incident.

use std::io::Write;

use chrono::Utc;
use serde_json::{Map, Value};

use super::ToolError;
use crate::alert::{Alert, Source};
use crate::config::Config;
use crate::pipeline::{Decision, Simulator, Verdict};
use crate::sources::formats::{self, Format, ParseError};

/// One row of the replay table.
struct Row {
    index: usize,
    alertname: Option<String>,
    decision: Decision,
}

/// Replay `input` on `config` as of `at` (default: now) and write the table (or, with `json`, a
/// JSON array) to `out`. Bad input (not JSON, a line that is not JSON, a body no format reads)
/// is [`ToolError::Input`] naming the line; nothing is printed then.
///
/// `at` matters for recordings of senders that say an alert's end ahead of time: Prometheus
/// sends a firing alert with `endsAt` a few minutes on, so replayed later than that, each is a
/// resolution; replayed as of when it was recorded, it is the firing alert it was.
pub fn run(
    config: &Config,
    input: &[u8],
    format: Option<Format>,
    at: Option<chrono::DateTime<Utc>>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ToolError> {
    let now = at.unwrap_or_else(Utc::now);
    let bodies = read_bodies(input, format, now, config.dedup.resolve_timeout.0)?;
    let mut sim = Simulator::new(config, now).map_err(ToolError::Failed)?;
    let mut rows = Vec::new();
    for (source, alerts) in bodies {
        let names: Vec<Option<String>> = alerts
            .iter()
            .map(|a| a.labels.get("alertname").cloned())
            .collect();
        let summary = sim
            .ingest(source, alerts)
            .map_err(|e| ToolError::Failed(format!("the pipeline failed: {e}")))?;
        for (i, mut decision) in summary.decisions.into_iter().enumerate() {
            super::complete(&sim, &mut decision);
            let alertname = decision
                .labels
                .get("alertname")
                .cloned()
                .or_else(|| names.get(i).cloned().flatten());
            rows.push(Row {
                index: rows.len(),
                alertname,
                decision,
            });
        }
    }
    if json {
        write_json(&rows, out)
    } else {
        write_table(&rows, out)
    }
}

/// The bodies of `input`, parsed: the whole input when it is one JSON value, else one per
/// non-blank line.
fn read_bodies(
    input: &[u8],
    format: Option<Format>,
    now: chrono::DateTime<Utc>,
    resolve_timeout: std::time::Duration,
) -> Result<Vec<(Source, Vec<Alert>)>, ToolError> {
    // Parsed, and refused as the sources refuse it if an alert would expire before it starts.
    let read = |body: &[u8]| {
        let (source, alerts) = formats::parse(format, body, now)?.into_alerts();
        formats::check_starts_before_expiry(&alerts, now, || resolve_timeout)?;
        Ok::<_, ParseError>((source, alerts))
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(input).is_ok() {
        let parsed = read(input)
            .map_err(|e| ToolError::Input(format!("the input is one JSON body, but {e}")))?;
        return Ok(vec![parsed]);
    }
    let mut bodies = Vec::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let indent = line.len() - line.trim_ascii_start().len();
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let number = i + 1;
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            return Err(ToolError::Input(format!(
                "{}: not JSON (the input is neither one JSON document nor NDJSON): {}",
                place(number, indent, &e),
                formats::json_message(&e)
            )));
        }
        let parsed = read(line).map_err(|e| {
            ToolError::Input(match &e {
                ParseError::Json { alert, error } => format!(
                    "{}: {}: {}{}",
                    place(number, indent, error),
                    formats::json_problem(error),
                    alert.map(|i| format!("alert {i}: ")).unwrap_or_default(),
                    formats::json_message(error)
                ),
                ParseError::Invalid { .. } => format!("line {number}: {e}"),
            })
        })?;
        bodies.push(parsed);
    }
    if bodies.is_empty() {
        return Err(ToolError::Input("the input holds no alerts".into()));
    }
    Ok(bodies)
}

/// Where a JSON error in line `number` (1-based) of the input lies: that line and the column
/// in it, the `indent` the line was trimmed of counted back in. (serde_json read the line alone:
/// its own "at line 1 column C" would name a second, different line.)
fn place(number: usize, indent: usize, e: &serde_json::Error) -> String {
    match e.line() {
        0 => format!("line {number}"),
        _ => format!("line {number} column {}", e.column() + indent),
    }
}

/// The decision column: the verdict, with the tier for incidents (`incident L2`).
fn decision_text(d: &Decision) -> String {
    match (d.verdict, d.tier) {
        (Verdict::Incident, Some(tier)) => format!("incident {tier}"),
        (verdict, _) => verdict.as_str().to_string(),
    }
}

fn write_table(rows: &[Row], out: &mut impl Write) -> Result<(), ToolError> {
    let header = [
        "#",
        "fingerprint",
        "alertname",
        "rule",
        "decision",
        "incident",
        "group",
    ];
    let dash = || "-".to_string();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let d = &r.decision;
            [
                r.index.to_string(),
                d.fingerprint.to_string(),
                r.alertname.clone().unwrap_or_else(dash),
                d.rule().map_or_else(dash, str::to_string),
                decision_text(d),
                d.incident.map_or_else(dash, |id| id.to_string()),
                d.group_key.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                // The last column is not padded: no trailing blanks.
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(&header))?;
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&refs))?;
    }
    Ok(())
}

fn write_json(rows: &[Row], out: &mut impl Write) -> Result<(), ToolError> {
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        let mut object = Map::new();
        object.insert("index".into(), Value::from(r.index));
        object.insert(
            "alertname".into(),
            r.alertname.clone().map_or(Value::Null, Value::from),
        );
        object.insert(
            "rule".into(),
            r.decision.rule().map_or(Value::Null, Value::from),
        );
        let decision = serde_json::to_value(&r.decision)
            .map_err(|e| ToolError::Failed(format!("cannot encode a decision: {e}")))?;
        if let Value::Object(fields) = decision {
            object.extend(fields);
        }
        list.push(Value::Object(object));
    }
    serde_json::to_writer_pretty(&mut *out, &Value::Array(list))
        .map_err(|e| ToolError::Output(e.into()))?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(input: &str, json: bool) -> Result<String, ToolError> {
        let mut out = Vec::new();
        run(
            &Config::embedded_default(),
            input.as_bytes(),
            None,
            None,
            json,
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn ndjson_bodies_share_one_pipeline() {
        let input = concat!(
            r#"[{"labels": {"alertname": "DiskFull", "env": "prod", "service": "db"}}]"#,
            "\n\n",
            r#"{"labels": {"alertname": "Watchdog"}}"#,
            "\n",
            r#"[{"labels": {"alertname": "DiskFull", "env": "prod", "service": "db"}}]"#,
            "\n",
        );
        let out = replay(input, false).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let cols: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "#",
                "fingerprint",
                "alertname",
                "rule",
                "decision",
                "incident",
                "group"
            ]
        );
        // Aligned: every column starts where its header does.
        let at = lines[0].find("decision").unwrap();
        assert!(lines[1][at..].starts_with("incident L2"), "{out}");
        assert!(lines[2][at..].starts_with("dropped"), "{out}");
        assert!(lines[3][at..].starts_with("deduplicated"), "{out}");
        assert!(lines[1].contains("storage-capacity"), "{out}");
        assert!(
            lines[1].ends_with(r#"alertname="DiskFull",service="db""#),
            "{out}"
        );
        assert!(lines[3].contains("INC-1"), "{out}");
        assert!(
            lines[3].ends_with(r#"alertname="DiskFull",service="db""#),
            "{out}"
        );
        assert!(out.lines().all(|l| l == l.trim_end()), "{out:?}");
    }

    #[test]
    fn json_rows_carry_index_alertname_and_the_decision() {
        let input = r#"{"alerts": [{"labels": {"alertname": "A", "severity": "info"}}]}"#;
        let v: Value = serde_json::from_str(&replay(input, true).unwrap()).unwrap();
        assert_eq!(v[0]["index"], 0);
        assert_eq!(v[0]["alertname"], "A");
        assert_eq!(v[0]["verdict"], "auto_handled");
        assert_eq!(v[0]["tier"], "L0");
        assert_eq!(v[0]["rule"], Value::Null);
    }

    /// Regression (QA): an alert that would expire before it starts stopped the replay with
    /// "the pipeline failed" (exit 1, no line); it is an invalid alert of its line, as the
    /// daemon's sources refuse it.
    #[test]
    fn an_alert_that_would_expire_before_it_starts_is_named_by_its_line() {
        let input = "[]\n[{\"labels\":{\"a\":\"b\"},\"startsAt\":\"9999-01-01T00:00:00Z\"}]\n";
        let err = replay(input, false).unwrap_err();
        assert_eq!(err.exit_code(), 64);
        assert!(
            err.to_string().starts_with(
                "line 2: invalid alert 0: startsAt 9999-01-01T00:00:00Z is after the alert would expire"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let input = "[{\"labels\": {\"alertname\": \"A\"}}]\n{not json\n";
        let err = replay(input, false).unwrap_err();
        assert_eq!(err.exit_code(), 64);
        // The file's line and the column in it: serde_json's own "at line 1" is not said.
        assert_eq!(
            err.to_string(),
            "line 2 column 2: not JSON (the input is neither one JSON document nor NDJSON): \
             key must be a string"
        );
        // Blanks the line was trimmed of count in its column.
        let err = replay("[]\n  \t{not json\n", false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2 column 5: not JSON"), "{err}");
        // A line of the wrong shape: the same, with the alert where there is one.
        let input = "[]\n[{\"labels\":{\"a\":\"b\"}},{\"labels\":{\"a\":1}}]\n";
        let err = replay(input, false).unwrap_err().to_string();
        assert_eq!(
            err,
            "line 2 column 38: JSON of the wrong shape: alert 1: invalid type: integer `1`, \
             expected a string"
        );
        // One native alert on its line, indented: its own column, no alert named.
        let err = replay(
            "[]\n {\"labels\":{\"a\":\"b\"},\"status\":\"open\"}\n",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("line 2 column 36: JSON of the wrong shape: unknown variant `open`"),
            "{err}"
        );
        assert!(!err.contains(" at line "), "{err}");
        let input = "[{\"labels\": {\"alertname\": \"A\"}}]\n\n{\"foo\": 1}\n";
        let err = replay(input, false).unwrap_err().to_string();
        assert!(err.starts_with("line 3: invalid body"), "{err}");
        assert!(replay("  \n", false).is_err());
    }
}

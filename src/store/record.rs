//! The binary form of an alert record (value version 2), which replaced JSON (version 1) for the
//! store's most numerous value. Records written as JSON are still read.
//!
//! Why: an alert record is written for every new or changed alert, and with 100,000 alerts the
//! records are most of what sled keeps in its cache and writes to its log. The JSON form spelled
//! out every field name and wrote each of its seven times as a 30-byte string; this form is
//! about half the size and needs no float or escape handling. It is internal to the store: the
//! API still shows records as JSON.
//!
//! Layout, after the version byte (the pieces are [`super::codec`]'s):
//!
//! | field | encoding |
//! |---|---|
//! | fingerprint | u64 |
//! | source, status, severity, tier | one byte each: the index in the type's `ALL` |
//! | flapping | one byte, 0 or 1 |
//! | labels, annotations | varint count, then name and value as strings |
//! | starts_at | time |
//! | ends_at, expires_at | optional time |
//! | generator_url | optional string |
//! | first_seen, last_seen | time |
//! | count | varint |
//! | incident | optional u64 |
//! | rules | varint count, then strings |
//! | silenced_by | optional 16 bytes (UUID) |
//! | state_changes | varint count, then times |
//! | timer_at | optional time |

use super::codec::{
    index_of, put_labels, put_list, put_opt, put_str, put_time, put_varint, Reader,
};
use crate::alert::{AlertRecord, Fingerprint, Labels, Severity, Source, Status};
use crate::incident::{IncidentId, Tier};
use crate::silence::SilenceId;

/// The value version byte of a binary record.
pub(super) const VERSION: u8 = 2;

const STATUSES: [Status; 2] = [Status::Firing, Status::Resolved];

/// The record's value: [`VERSION`] then the fields.
pub(super) fn encode(r: &AlertRecord) -> Vec<u8> {
    let mut w = Vec::with_capacity(256);
    w.push(VERSION);
    w.extend_from_slice(&r.fingerprint.0.to_le_bytes());
    w.push(index_of(&Source::ALL, r.source));
    w.push(index_of(&STATUSES, r.status));
    w.push(index_of(&Severity::ALL, r.severity));
    w.push(index_of(&Tier::ALL, r.tier));
    w.push(u8::from(r.flapping));
    put_labels(&mut w, &r.labels);
    put_labels(&mut w, &r.annotations);
    put_time(&mut w, r.starts_at);
    put_opt(&mut w, r.ends_at, put_time);
    put_opt(&mut w, r.expires_at, put_time);
    put_opt(&mut w, r.generator_url.as_deref(), put_str);
    put_time(&mut w, r.first_seen);
    put_time(&mut w, r.last_seen);
    put_varint(&mut w, r.count);
    put_opt(&mut w, r.incident, |w, id| {
        w.extend_from_slice(&id.0.to_le_bytes())
    });
    put_list(&mut w, &r.rules, |w, rule| put_str(w, rule));
    put_opt(&mut w, r.silenced_by, |w, id| {
        w.extend_from_slice(id.as_bytes())
    });
    put_list(&mut w, &r.state_changes, |w, &t| put_time(w, t));
    put_opt(&mut w, r.timer_at, put_time);
    w
}

/// The record in `bytes` (the value after its version byte), or why it cannot be read.
pub(super) fn decode(bytes: &[u8]) -> Result<AlertRecord, String> {
    let mut r = Reader::new(bytes);
    let record = AlertRecord {
        fingerprint: Fingerprint(r.u64()?),
        source: r.one_of(&Source::ALL, "source")?,
        status: r.one_of(&STATUSES, "status")?,
        severity: r.one_of(&Severity::ALL, "severity")?,
        tier: r.one_of(&Tier::ALL, "tier")?,
        flapping: r.one_of(&[false, true], "flapping")?,
        labels: r.labels()?,
        annotations: r.labels()?,
        starts_at: r.time()?,
        ends_at: r.opt(Reader::time)?,
        expires_at: r.opt(Reader::time)?,
        generator_url: r.opt(Reader::string)?,
        first_seen: r.time()?,
        last_seen: r.time()?,
        count: r.varint()?,
        incident: r.opt(|r| r.u64().map(IncidentId))?,
        rules: r.list(Reader::string)?,
        silenced_by: r.opt(|r| Ok(SilenceId::from_bytes(r.array()?)))?,
        state_changes: r.list(Reader::time)?,
        timer_at: r.opt(Reader::time)?,
    };
    r.end("record")?;
    Ok(record)
}

/// Only the labels of the record in `bytes` (the value after its version byte): what a scan that
/// matches labels needs, without decoding the rest (or allocating for it).
pub(super) fn decode_labels(bytes: &[u8]) -> Result<Labels, String> {
    let mut r = Reader::new(bytes);
    // fingerprint, then source, status, severity, tier and flapping, one byte each.
    r.take(8 + 5)?;
    r.labels()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{labels_from, Labels};
    use crate::store::codec::{cut_and_changed_are_errors, round_trips_in_half_of_json};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn full() -> AlertRecord {
        let t = |s: i64, ns: u32| Utc.timestamp_opt(s, ns).unwrap();
        let mut r = AlertRecord::sample(
            Fingerprint(0x0123_4567_89ab_cdef),
            Status::Resolved,
            labels_from(&[
                ("alertname", "DiskFull"),
                ("instance", "db-1:9100"),
                ("é", "ü"),
            ]),
        );
        r.source = Source::Pagerduty;
        r.severity = Severity::Critical;
        r.tier = Tier::L4;
        r.flapping = true;
        r.annotations = labels_from(&[("summary", "disk \"/\" is full"), ("empty", "")]);
        r.starts_at = t(-5, 1);
        r.ends_at = Some(t(1_700_000_000, 999_999_999));
        r.expires_at = Some(t(253_402_300_799, 0));
        r.generator_url = Some("http://prometheus:9090/graph?g0.expr=up%3D%3D0".into());
        r.first_seen = t(1_600_000_000, 123);
        r.last_seen = t(1_600_000_001, 456);
        r.count = u64::MAX;
        r.incident = Some(IncidentId(300));
        r.rules = vec!["disk".into(), String::new()];
        r.silenced_by = Some(SilenceId::from_u128(0x1234));
        r.state_changes = vec![t(1, 2), t(3, 4)];
        r.timer_at = Some(t(1_700_000_000, 5));
        r
    }

    #[test]
    fn every_field_round_trips_and_the_form_is_smaller_than_json() {
        let minimal = AlertRecord::sample(Fingerprint(7), Status::Firing, Labels::new());
        for record in [full(), minimal] {
            round_trips_in_half_of_json(&record, VERSION, encode, decode);
        }
    }

    #[test]
    fn every_variant_of_the_coded_enums_is_in_its_table() {
        // Each list names every variant; the exhaustive matches stop compiling when a variant is
        // added, until it is listed here, and then the assertions want it in the type's ALL.
        let sources = [
            Source::Alertmanager,
            Source::Webhook,
            Source::Pagerduty,
            Source::Native,
        ];
        for s in sources {
            match s {
                Source::Alertmanager | Source::Webhook | Source::Pagerduty | Source::Native => {}
            }
        }
        let severities = [
            Severity::Info,
            Severity::Warning,
            Severity::Minor,
            Severity::Major,
            Severity::Critical,
        ];
        for s in severities {
            match s {
                Severity::Info
                | Severity::Warning
                | Severity::Minor
                | Severity::Major
                | Severity::Critical => {}
            }
        }
        let tiers = [Tier::L0, Tier::L1, Tier::L2, Tier::L3, Tier::L4];
        for t in tiers {
            match t {
                Tier::L0 | Tier::L1 | Tier::L2 | Tier::L3 | Tier::L4 => {}
            }
        }
        let statuses = [Status::Firing, Status::Resolved];
        for s in statuses {
            match s {
                Status::Firing | Status::Resolved => {}
            }
        }
        assert!(statuses.iter().all(|s| STATUSES.contains(s)));
        assert!(sources.iter().all(|s| Source::ALL.contains(s)));
        assert!(severities.iter().all(|s| Severity::ALL.contains(s)));
        assert!(tiers.iter().all(|t| Tier::ALL.contains(t)));
        let mut r = full();
        for source in sources {
            for tier in tiers {
                for severity in severities {
                    for status in STATUSES {
                        (r.source, r.tier, r.severity, r.status) = (source, tier, severity, status);
                        assert_eq!(decode(&encode(&r)[1..]).unwrap(), r);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_bytes_are_errors_that_say_what_is_wrong() {
        let bytes = encode(&full());
        let body = &bytes[1..];
        let mut long = body.to_vec();
        long.push(0);
        assert_eq!(decode(&long).unwrap_err(), "1 bytes after the record");
        let mut bad = body.to_vec();
        bad[8] = 9; // the source
        assert_eq!(decode(&bad).unwrap_err(), "unknown source 9");
        assert!(decode(&body[..12]).unwrap_err().starts_with("truncated"));
    }

    proptest! {
        /// Any cut or any changed byte is an error or a record, never a panic or a huge
        /// allocation.
        #[test]
        fn damaged_records_never_panic(cut in 0usize..400, at in 0usize..400, byte: u8) {
            let body = &encode(&full())[1..];
            prop_assert!(cut_and_changed_are_errors(body, cut, at, byte, decode));
        }
    }
}

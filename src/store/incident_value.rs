//! The binary form of an incident (value version 2), which replaced JSON (version 1). Incidents
//! written as JSON are still read.
//!
//! Why: an incident is written again by every commit that changes it, and in a storm of new
//! alerts that is every commit, since each new member changes its incident's counts. The JSON
//! form spelled out every field name and every time as a 30-byte string (about 740 bytes for
//! an incident with one escalation); encoding it was 6 % of the writer's time in such a storm,
//! and its bytes went to the journal, to sled's log and into sled's cache each time. It is
//! internal to the store: the API still shows incidents as JSON.
//!
//! Layout, after the version byte (the pieces are [`super::codec`]'s):
//!
//! | field | encoding |
//! |---|---|
//! | id | u64 |
//! | tier, opened_tier, state, severity | one byte each: the index in the type's table |
//! | flapping | one byte, 0 or 1 |
//! | group_key | string |
//! | alert_count, firing_count, reopen_count, events_published | varint each |
//! | opened_at, tier_since | time |
//! | acknowledged_at, resolved_at, ack_deadline, resolve_deadline | optional time each |
//! | assignee, runbook, rule, vendor, vendor_ref, resolution_note | optional string each |
//! | labels | varint count, then name and value as strings |
//! | reopened_at | varint count, then times |
//! | timeline | varint count, then events |
//!
//! An event is its time, actor (string), kind (one byte), reason (optional string), and from
//! and to (optional tier each). The kind `severity_raised` (index 8) is newer than the rest: a
//! triaged older than it cannot read an incident whose timeline has one.
//!
//! Version 3 is version 2 followed by what silences did to the incident: `silenced_count`
//! (varint), `escalation_held_since` and `escalation_resumed_at` (optional time each). It is
//! written only for an incident a silence has touched, so every other incident keeps the
//! version 2 bytes that an older triaged reads.
//!
//! Version 4 is version 3 followed by the vendor and case number on the timeline's L4
//! handover entries (kept there when the incident leaves L4 and its own `vendor` is cleared): a
//! varint count, then per entry its index on the timeline (varint), `vendor` and `vendor_ref`
//! (optional string each). It is written only for an incident that was handed over, so every
//! other incident keeps the bytes of version 2 or 3.

use super::codec::{
    index_of, put_labels, put_list, put_opt, put_str, put_time, put_varint, Reader,
};
use crate::alert::Severity;
use crate::incident::{EventKind, Incident, IncidentId, State, Tier, TimelineEvent};

/// The value version byte of a binary incident.
pub(super) const VERSION: u8 = 2;
/// The value version byte of a binary incident with its silence fields (see the module's doc).
pub(super) const VERSION_SILENCED: u8 = 3;
/// The value version byte of a binary incident with its silence fields and the vendors on its
/// timeline (see the module's doc).
pub(super) const VERSION_HANDOVERS: u8 = 4;

const STATES: [State; 3] = [State::Open, State::Acknowledged, State::Resolved];

const EVENT_KINDS: [EventKind; 9] = [
    EventKind::Opened,
    EventKind::Acknowledged,
    EventKind::Escalated,
    EventKind::DeEscalated,
    EventKind::Assigned,
    EventKind::Resolved,
    EventKind::Reopened,
    EventKind::Flapping,
    EventKind::SeverityRaised,
];

/// The incident's value: [`VERSION`] then the fields; [`VERSION_SILENCED`] then the fields and
/// the silence fields when any of these is set; [`VERSION_HANDOVERS`] then those and the
/// timeline's vendors when an entry names one.
pub(super) fn encode(i: &Incident) -> Vec<u8> {
    let handovers: Vec<(usize, &TimelineEvent)> = i
        .timeline
        .iter()
        .enumerate()
        .filter(|(_, e)| e.vendor.is_some() || e.vendor_ref.is_some())
        .collect();
    let silenced = !handovers.is_empty()
        || i.silenced_count != 0
        || i.escalation_held_since.is_some()
        || i.escalation_resumed_at.is_some();
    let mut w = Vec::with_capacity(256);
    w.push(if !handovers.is_empty() {
        VERSION_HANDOVERS
    } else if silenced {
        VERSION_SILENCED
    } else {
        VERSION
    });
    w.extend_from_slice(&i.id.0.to_le_bytes());
    w.push(index_of(&Tier::ALL, i.tier));
    w.push(index_of(&Tier::ALL, i.opened_tier));
    w.push(index_of(&STATES, i.state));
    w.push(index_of(&Severity::ALL, i.severity));
    w.push(u8::from(i.flapping));
    put_str(&mut w, &i.group_key);
    put_varint(&mut w, i.alert_count);
    put_varint(&mut w, i.firing_count);
    put_varint(&mut w, i.reopen_count);
    put_varint(&mut w, i.events_published as u64);
    put_time(&mut w, i.opened_at);
    put_time(&mut w, i.tier_since);
    for t in [
        i.acknowledged_at,
        i.resolved_at,
        i.ack_deadline,
        i.resolve_deadline,
    ] {
        put_opt(&mut w, t, put_time);
    }
    for s in [
        &i.assignee,
        &i.runbook,
        &i.rule,
        &i.vendor,
        &i.vendor_ref,
        &i.resolution_note,
    ] {
        put_opt(&mut w, s.as_deref(), put_str);
    }
    put_labels(&mut w, &i.labels);
    put_list(&mut w, &i.reopened_at, |w, &t| put_time(w, t));
    put_list(&mut w, &i.timeline, |w, e| {
        put_time(w, e.at);
        put_str(w, &e.actor);
        w.push(index_of(&EVENT_KINDS, e.kind));
        put_opt(w, e.reason.as_deref(), put_str);
        put_opt(w, e.from, put_tier);
        put_opt(w, e.to, put_tier);
    });
    if silenced {
        put_varint(&mut w, i.silenced_count);
        put_opt(&mut w, i.escalation_held_since, put_time);
        put_opt(&mut w, i.escalation_resumed_at, put_time);
    }
    if !handovers.is_empty() {
        put_list(&mut w, &handovers, |w, (at, e)| {
            put_varint(w, *at as u64);
            put_opt(w, e.vendor.as_deref(), put_str);
            put_opt(w, e.vendor_ref.as_deref(), put_str);
        });
    }
    w
}

fn put_tier(w: &mut Vec<u8>, tier: Tier) {
    w.push(index_of(&Tier::ALL, tier));
}

/// The incident in `bytes` (the value after its [`VERSION`] byte), or why it cannot be read.
pub(super) fn decode(bytes: &[u8]) -> Result<Incident, String> {
    decode_as(bytes, VERSION)
}

/// The incident in `bytes` (the value after its [`VERSION_SILENCED`] byte), or why it cannot
/// be read.
pub(super) fn decode_silenced(bytes: &[u8]) -> Result<Incident, String> {
    decode_as(bytes, VERSION_SILENCED)
}

/// The incident in `bytes` (the value after its [`VERSION_HANDOVERS`] byte), or why it cannot
/// be read.
pub(super) fn decode_handovers(bytes: &[u8]) -> Result<Incident, String> {
    decode_as(bytes, VERSION_HANDOVERS)
}

fn decode_as(bytes: &[u8], version: u8) -> Result<Incident, String> {
    let silenced = version >= VERSION_SILENCED;
    let mut r = Reader::new(bytes);
    let id = IncidentId(r.u64()?);
    let tier = r.one_of(&Tier::ALL, "tier")?;
    let opened_tier = r.one_of(&Tier::ALL, "tier")?;
    let state = r.one_of(&STATES, "state")?;
    let severity = r.one_of(&Severity::ALL, "severity")?;
    let flapping = r.one_of(&[false, true], "flapping")?;
    let group_key = r.string()?;
    let alert_count = r.varint()?;
    let firing_count = r.varint()?;
    let reopen_count = r.varint()?;
    let events_published = usize::try_from(r.varint()?)
        .map_err(|_| "an events_published beyond this machine's usize".to_string())?;
    let opened_at = r.time()?;
    let tier_since = r.time()?;
    let acknowledged_at = r.opt(Reader::time)?;
    let resolved_at = r.opt(Reader::time)?;
    let ack_deadline = r.opt(Reader::time)?;
    let resolve_deadline = r.opt(Reader::time)?;
    let assignee = r.opt(Reader::string)?;
    let runbook = r.opt(Reader::string)?;
    let rule = r.opt(Reader::string)?;
    let vendor = r.opt(Reader::string)?;
    let vendor_ref = r.opt(Reader::string)?;
    let resolution_note = r.opt(Reader::string)?;
    let labels = r.labels()?;
    let reopened_at = r.list(Reader::time)?;
    let mut timeline = r.list(|r| {
        Ok(TimelineEvent {
            at: r.time()?,
            actor: r.string()?,
            kind: r.one_of(&EVENT_KINDS, "event kind")?,
            reason: r.opt(Reader::string)?,
            from: r.opt(|r| r.one_of(&Tier::ALL, "tier"))?,
            to: r.opt(|r| r.one_of(&Tier::ALL, "tier"))?,
            vendor: None,
            vendor_ref: None,
        })
    })?;
    let (silenced_count, escalation_held_since, escalation_resumed_at) = if silenced {
        (r.varint()?, r.opt(Reader::time)?, r.opt(Reader::time)?)
    } else {
        (0, None, None)
    };
    if version >= VERSION_HANDOVERS {
        let handovers =
            r.list(|r| Ok((r.varint()?, r.opt(Reader::string)?, r.opt(Reader::string)?)))?;
        for (at, vendor, vendor_ref) in handovers {
            let n = timeline.len();
            let event = usize::try_from(at)
                .ok()
                .and_then(|at| timeline.get_mut(at))
                .ok_or_else(|| format!("a vendor for timeline entry {at} of {n}"))?;
            event.vendor = vendor;
            event.vendor_ref = vendor_ref;
        }
    }
    r.end("incident")?;
    Ok(Incident {
        id,
        tier,
        opened_tier,
        state,
        severity,
        group_key,
        alert_count,
        firing_count,
        opened_at,
        acknowledged_at,
        resolved_at,
        assignee,
        labels,
        runbook,
        rule,
        tier_since,
        ack_deadline,
        resolve_deadline,
        reopen_count,
        reopened_at,
        vendor,
        vendor_ref,
        resolution_note,
        flapping,
        timeline,
        events_published,
        silenced_count,
        escalation_held_since,
        escalation_resumed_at,
    })
}

/// The incident in a binary value of either version (`bytes` after the version byte).
pub(super) fn decode_version(version: u8, bytes: &[u8]) -> Option<Result<Incident, String>> {
    match version {
        VERSION => Some(decode(bytes)),
        VERSION_SILENCED => Some(decode_silenced(bytes)),
        VERSION_HANDOVERS => Some(decode_handovers(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::labels_from;
    use crate::store::codec::{cut_and_changed_are_errors, round_trips_in_half_of_json};
    use chrono::{DateTime, TimeZone, Utc};
    use proptest::prelude::*;

    fn t(s: i64, ns: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(s, ns).unwrap()
    }

    fn minimal() -> Incident {
        Incident::open(
            IncidentId(1),
            Tier::L1,
            Severity::Warning,
            "alertname=\"DiskFull\"".into(),
            labels_from(&[("alertname", "DiskFull")]),
            None,
            None,
            t(1_700_000_000, 0),
        )
    }

    /// Every field set, with times at the edges chrono holds and text that JSON would escape.
    fn full() -> Incident {
        let mut i = minimal();
        i.id = IncidentId(u64::MAX);
        i.tier = Tier::L4;
        i.opened_tier = Tier::L2;
        i.state = State::Resolved;
        i.severity = Severity::Critical;
        i.group_key = "team=\"db\" é".into();
        i.alert_count = u64::MAX;
        i.firing_count = 300;
        i.opened_at = t(-5, 1);
        i.acknowledged_at = Some(t(1_700_000_001, 999_999_999));
        i.resolved_at = Some(t(253_402_300_799, 0));
        i.assignee = Some("ana".into());
        i.labels = labels_from(&[("team", "db"), ("", "\"\n")]);
        i.runbook = Some("https://runbooks/disk".into());
        i.rule = Some(String::new());
        i.tier_since = t(1_700_000_002, 3);
        i.ack_deadline = Some(t(1_700_000_900, 0));
        i.resolve_deadline = Some(t(1_700_003_600, 0));
        i.reopen_count = 2;
        i.reopened_at = vec![t(1, 2), t(3, 4)];
        i.vendor = Some("acme".into());
        i.vendor_ref = Some("CASE-7".into());
        i.resolution_note = Some("replaced the disk".into());
        i.flapping = true;
        i.timeline.push(TimelineEvent {
            at: t(1_700_000_002, 3),
            actor: "ana".into(),
            kind: EventKind::Escalated,
            reason: Some("needs the DBA".into()),
            from: Some(Tier::L1),
            to: Some(Tier::L2),
            vendor: None,
            vendor_ref: None,
        });
        i.events_published = 1;
        i
    }

    /// [`full`] handed over to a vendor, and back: the handover's entry names it (version 4).
    fn handed_over() -> Incident {
        let mut i = full();
        let entry = |to, vendor: Option<&str>, vendor_ref: Option<&str>| TimelineEvent {
            at: t(1_700_000_300, 0),
            actor: "bob".into(),
            kind: EventKind::Escalated,
            reason: Some("controller".into()),
            from: Some(Tier::L3),
            to: Some(to),
            vendor: vendor.map(Into::into),
            vendor_ref: vendor_ref.map(Into::into),
        };
        i.timeline
            .push(entry(Tier::L4, Some("acme"), Some("CASE-7")));
        i.timeline.push(entry(Tier::L2, None, None));
        i.timeline.push(entry(Tier::L4, Some("other é"), None));
        i.vendor = Some("other é".into());
        i.vendor_ref = None;
        i
    }

    /// [`full`] with what a silence sets too: written as version 3.
    fn silenced() -> Incident {
        let mut i = full();
        i.silenced_count = 7;
        i.escalation_held_since = Some(t(1_700_000_100, 5));
        i.escalation_resumed_at = Some(t(1_700_000_200, 6));
        i
    }

    #[test]
    fn every_field_round_trips_and_the_form_is_smaller_than_json() {
        for incident in [full(), minimal()] {
            round_trips_in_half_of_json(&incident, VERSION, encode, decode);
        }
        round_trips_in_half_of_json(&silenced(), VERSION_SILENCED, encode, decode_silenced);
        round_trips_in_half_of_json(&handed_over(), VERSION_HANDOVERS, encode, decode_handovers);
        // With the silence fields too, and once the incident left L4: its vendor is cleared and
        // the timeline still names it.
        let mut both = handed_over();
        both.silenced_count = 2;
        both.vendor = None;
        round_trips_in_half_of_json(&both, VERSION_HANDOVERS, encode, decode_handovers);
        assert_eq!(
            decode_version(4, &encode(&both)[1..]).unwrap().unwrap(),
            both
        );
        // No vendor on the timeline: the bytes of version 2 or 3, as before version 4.
        let mut plain = handed_over();
        for e in &mut plain.timeline {
            (e.vendor, e.vendor_ref) = (None, None);
        }
        assert_eq!(encode(&plain)[0], VERSION);
        // Any one silence field is enough to need version 3; none keeps version 2's bytes.
        let mut held = full();
        held.escalation_held_since = Some(t(5, 0));
        assert_eq!(encode(&held)[0], VERSION_SILENCED);
        assert_eq!(
            decode_version(3, &encode(&held)[1..]).unwrap().unwrap(),
            held
        );
        assert_eq!(
            decode_version(2, &encode(&full())[1..]).unwrap().unwrap(),
            full()
        );
        assert!(decode_version(5, &[]).is_none());
    }

    #[test]
    fn every_variant_of_the_coded_enums_is_in_its_table() {
        // Each list names every variant; the exhaustive matches stop compiling when a variant is
        // added, until it is listed here, and then the assertions want it in the table.
        let states = [State::Open, State::Acknowledged, State::Resolved];
        for s in states {
            match s {
                State::Open | State::Acknowledged | State::Resolved => {}
            }
        }
        let kinds = {
            use EventKind::*;
            [
                Opened,
                Acknowledged,
                Escalated,
                DeEscalated,
                Assigned,
                Resolved,
                Reopened,
                Flapping,
                SeverityRaised,
            ]
        };
        for k in kinds {
            match k {
                EventKind::Opened
                | EventKind::Acknowledged
                | EventKind::Escalated
                | EventKind::DeEscalated
                | EventKind::Assigned
                | EventKind::Resolved
                | EventKind::Reopened
                | EventKind::Flapping
                | EventKind::SeverityRaised => {}
            }
        }
        assert!(states.iter().all(|s| STATES.contains(s)));
        assert!(kinds.iter().all(|k| EVENT_KINDS.contains(k)));
        let mut i = full();
        for state in STATES {
            for kind in EVENT_KINDS {
                for tier in Tier::ALL {
                    i.state = state;
                    i.tier = tier;
                    i.timeline[1].kind = kind;
                    i.timeline[1].to = Some(tier);
                    assert_eq!(decode(&encode(&i)[1..]).unwrap(), i);
                }
            }
        }
    }

    #[test]
    fn bad_bytes_are_errors_that_say_what_is_wrong() {
        let body = encode(&full()).split_off(1);
        let longer = [body.as_slice(), &[0]].concat();
        assert_eq!(decode(&longer).unwrap_err(), "1 bytes after the incident");
        let mut bad = body.clone();
        bad[10] = 3; // the state
        assert_eq!(decode(&bad).unwrap_err(), "unknown state 3");
        assert!(decode(&body[..12]).unwrap_err().starts_with("truncated"));
        // A vendor for an entry the timeline does not have.
        let mut i = full();
        i.timeline[1].vendor = Some("acme".into());
        let mut body = encode(&i).split_off(1);
        let at = body.len() - 1 - (1 + 1 + 4) - 1; // the index, before the vendor and no ref
        assert_eq!(body[at], 1);
        body[at] = 9;
        assert_eq!(
            decode_handovers(&body).unwrap_err(),
            "a vendor for timeline entry 9 of 2"
        );
    }

    /// An incident encoded before version 4 (here: the bytes version 3 wrote for one handed
    /// over to L4, its vendor on the incident only) reads as it did.
    #[test]
    fn an_incident_written_before_version_4_still_reads() {
        let mut i = silenced();
        for e in &mut i.timeline {
            (e.vendor, e.vendor_ref) = (None, None);
        }
        let bytes = encode(&i);
        assert_eq!(bytes[0], VERSION_SILENCED);
        assert_eq!(decode_version(3, &bytes[1..]).unwrap().unwrap(), i);
        assert_eq!(i.vendor.as_deref(), Some("acme"));
    }

    proptest! {
        /// Any cut or any changed byte is an error or an incident, never a panic or a huge
        /// allocation.
        #[test]
        fn damaged_incidents_never_panic(cut in 0usize..600, at in 0usize..600, byte: u8) {
            let body = &encode(&full())[1..];
            prop_assert!(cut_and_changed_are_errors(body, cut, at, byte, decode));
            let body = &encode(&silenced())[1..];
            prop_assert!(cut_and_changed_are_errors(body, cut, at, byte, decode_silenced));
            let body = &encode(&handed_over())[1..];
            prop_assert!(cut_and_changed_are_errors(body, cut, at, byte, decode_handovers));
        }
    }
}

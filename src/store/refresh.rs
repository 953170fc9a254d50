//! The refresh log: how a re-send of an alert that is already firing is made durable without
//! rewriting its record.
//!
//! Prometheus re-sends every firing alert every minute, and during a storm the same alerts
//! arrive many times a second. Such a repeat changes only four things of the stored record: the
//! reception count, the last-seen time, the sender's `endsAt` and the expiry derived from it.
//! Rewriting the whole record (its labels, annotations and history, as JSON) for each of them
//! made repeats cost as much as new alerts. Instead, a group commit appends the repeats it
//! acknowledges to the log as one value, `refresh/<slot u64 BE>`, holding a fixed-size binary
//! entry per alert (see [`Refresh`]), in the same journal record, fdatasynced, as everything
//! else the commit writes; so a 2xx still means the repeat is on disk.
//!
//! Reads see a record with its latest refresh applied ([`Refresh::apply`]), read from the log
//! value that holds it (entries are sorted by fingerprint, so it is found by binary search):
//! memory keeps only where each alert's latest refresh is and its count, 16 bytes instead of the
//! 64 of the refresh itself, since only reads need its times. Which one is newer
//! needs no bookkeeping on disk: every reception increments the record's `count`, so a refresh
//! applies only when its count is higher than the record's. A record written in full after the
//! refresh (it resolved, or its annotations changed) has absorbed it and carries at least its
//! count, so a stale log entry is harmless and its deletion can wait.
//!
//! The log stays small: an entry is dead once a later refresh or a full write of its alert
//! supersedes it, and a log value whose entries are all dead goes with the next commit: that
//! commit's own value takes its slot (its key), or it is removed. (Overwriting a key costs sled
//! a fraction of removing one and inserting another; at one request per commit those two were
//! most of the time a commit spent in sled.) So slots say nothing of age: memory keeps the order
//! values were written in, and the oldest is folded first.
//! Alerts that stop being re-sent would keep old values alive, so the writer folds the oldest
//! value's live entries into their records ([`Log::due`]) when the log grows past
//! [`MAX_LOGGED`] entries or its oldest value is older than [`FOLD_AFTER`].
//!
//! The writer also needs, to recognise a pure repeat without reading and decoding the record,
//! a small digest of each firing alert it has written since start ([`Digest`]).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::alert::{AlertRecord, FastMap, Fingerprint, Labels, Severity, Status};
use crate::incident::IncidentId;

pub(super) const PREFIX: &[u8] = b"refresh/";

/// Version byte of a log value.
const LOG_VERSION: u8 = 1;
/// fingerprint, count, then three times (seconds i64, nanoseconds u32; `u32::MAX` for none).
const ENTRY_BYTES: usize = 8 + 8 + 3 * TIME_BYTES;
const TIME_BYTES: usize = 12;
const NO_TIME: u32 = u32::MAX;

/// Fold when the log holds more entries than this (live or not): about 13 MB on disk.
pub const MAX_LOGGED: usize = 256 * 1024;
/// Fold a log value whose entries are still live after this long.
pub const FOLD_AFTER: Duration = Duration::from_secs(30);

/// A repeat of a firing alert: what it changes of the alert's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    pub fingerprint: Fingerprint,
    /// The record's reception count with this repeat counted.
    pub count: u64,
    pub last_seen: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Refresh {
    /// Bring `record` up to this refresh, unless the record is at least as new.
    pub fn apply(&self, record: &mut AlertRecord) {
        if supersedes(self.count, record) {
            record.count = self.count;
            record.last_seen = self.last_seen;
            record.ends_at = self.ends_at;
            record.expires_at = self.expires_at;
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fingerprint.0.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        for t in [Some(self.last_seen), self.ends_at, self.expires_at] {
            match t {
                Some(t) => {
                    out.extend_from_slice(&t.timestamp().to_be_bytes());
                    out.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
                }
                None => {
                    out.extend_from_slice(&0i64.to_be_bytes());
                    out.extend_from_slice(&NO_TIME.to_be_bytes());
                }
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Refresh> {
        let u64_at = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let time_at = |i: usize| -> Option<Option<DateTime<Utc>>> {
            let secs = i64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?);
            let nanos = u32::from_be_bytes(b.get(i + 8..i + 12)?.try_into().ok()?);
            if nanos == NO_TIME {
                return Some(None);
            }
            Utc.timestamp_opt(secs, nanos).single().map(Some)
        };
        Some(Refresh {
            fingerprint: Fingerprint(u64_at(0)?),
            count: u64_at(8)?,
            last_seen: time_at(16)??,
            ends_at: time_at(16 + TIME_BYTES)?,
            expires_at: time_at(16 + 2 * TIME_BYTES)?,
        })
    }
}

/// Whether a refresh counted `count` is newer than `record`: only a firing record takes one.
fn supersedes(count: u64, record: &AlertRecord) -> bool {
    count > record.count && record.status == Status::Firing
}

/// One log value: the refreshes of one group commit, in fingerprint order (see [`find`]).
pub(super) fn encode(refreshes: &[Refresh]) -> Vec<u8> {
    let mut sorted: Vec<&Refresh> = refreshes.iter().collect();
    sorted.sort_unstable_by_key(|r| r.fingerprint.0);
    let mut out = Vec::with_capacity(1 + refreshes.len() * ENTRY_BYTES);
    out.push(LOG_VERSION);
    for r in sorted {
        r.encode_into(&mut out);
    }
    out
}

/// The entries of a log value, checked for version and length but not decoded.
fn entries(bytes: &[u8]) -> Result<&[u8], String> {
    let Some((&LOG_VERSION, entries)) = bytes.split_first() else {
        return Err(match bytes.first() {
            Some(v) => format!("unknown refresh log version {v}"),
            None => "empty refresh log value".into(),
        });
    };
    if entries.len() % ENTRY_BYTES != 0 {
        return Err(format!(
            "refresh log value of {} bytes is not a whole number of {ENTRY_BYTES}-byte entries",
            entries.len()
        ));
    }
    Ok(entries)
}

fn decode_entry(entry: &[u8]) -> Result<Refresh, String> {
    Refresh::decode(entry).ok_or_else(|| "refresh log entry out of range".to_string())
}

pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Refresh>, String> {
    entries(bytes)?
        .chunks_exact(ENTRY_BYTES)
        .map(decode_entry)
        .collect()
}

/// The entry for `fp` in a log value: by binary search, since values are written in fingerprint
/// order; by a scan when that misses, for values written before they were sorted. A value holds
/// at most one entry per alert.
pub(super) fn find(bytes: &[u8], fp: Fingerprint) -> Result<Option<Refresh>, String> {
    let entries = entries(bytes)?;
    let entry = |i: usize| &entries[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
    let fp_of = |entry: &[u8]| super::be_u64(&entry[..8]);
    let (mut low, mut high) = (0, entries.len() / ENTRY_BYTES);
    while low < high {
        let mid = low + (high - low) / 2;
        match fp_of(entry(mid)).cmp(&fp.0) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return decode_entry(entry(mid)).map(Some),
        }
    }
    entries
        .chunks_exact(ENTRY_BYTES)
        .find(|e| fp_of(e) == fp.0)
        .map(decode_entry)
        .transpose()
}

pub(super) fn key(slot: u64) -> Vec<u8> {
    [PREFIX, &slot.to_be_bytes()].concat()
}

/// What decides whether a received firing alert is a pure repeat of a stored firing record:
/// the record's annotations (hashed), severity, placement and armed expiry timer; and what
/// the repeat's expiry is merged with (a re-send never pulls back an expiry its sender gave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub annotations: u64,
    pub severity: Severity,
    pub incident: Option<IncidentId>,
    pub silenced: bool,
    pub timer_at: Option<DateTime<Utc>>,
    /// The record's own count (refreshes since are in the log).
    pub count: u64,
    /// The alert's `ends_at` and `expires_at`, with its latest refresh applied.
    pub ends_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Digest {
    /// The digest of a firing record; none for a resolved one.
    pub fn of(record: &AlertRecord) -> Option<Digest> {
        (record.status == Status::Firing).then(|| Digest {
            annotations: annotations_hash(&record.annotations),
            severity: record.severity,
            incident: record.incident,
            silenced: record.silenced_by.is_some(),
            timer_at: record.timer_at,
            count: record.count,
            ends_at: record.ends_at,
            expires_at: record.expires_at,
        })
    }
}

/// A keyed hash of annotations, for comparing them without keeping them. The key is random
/// per process (digests are never stored), so colliding annotations cannot be crafted.
pub fn annotations_hash(annotations: &Labels) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(annotations)
}

/// One log value still referred to.
#[derive(Debug)]
struct Value {
    /// Entries that are still their alert's latest refresh.
    live: u32,
    /// Entries in all.
    logged: usize,
    written: Instant,
    /// Its place in the order values were written in (its key says only which slot it took).
    born: u64,
}

/// Where an alert's latest refresh is: the log value holding it, and its count (all the writer
/// needs of it to count a repeat; a read takes the rest from the value, [`Log::merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    slot: u64,
    count: u64,
}

/// The log's state in memory: rebuilt from disk at open, moved on by each commit.
#[derive(Debug, Default)]
pub(super) struct Log {
    /// The slot after the highest in use: the key of a new value when no dead one is free.
    next_slot: u64,
    /// Each alert's latest refresh: where it is.
    latest: FastMap<Fingerprint, Latest>,
    /// By slot.
    values: BTreeMap<u64, Value>,
    /// The slots of `values`, oldest first (by [`Value::born`]): the next to fold is first.
    by_age: BTreeMap<u64, u64>,
    next_born: u64,
    /// Entries in the values on disk, dead ones included.
    logged: usize,
    /// Values with no live entry: the next commit removes them, or writes its own value over one.
    dead: Vec<u64>,
    digests: FastMap<Fingerprint, Digest>,
}

impl Log {
    /// Rebuild from the log values on disk.
    pub(super) fn load(db: &sled::Db) -> super::Result<Log> {
        let mut log = Log::default();
        let now = Instant::now();
        for kv in db.scan_prefix(PREFIX) {
            let (k, v) = kv?;
            let slot = super::be_u64(&k[PREFIX.len()..]);
            let entries = decode(&v).map_err(|why| super::StoreError::Corrupt {
                key: format!("refresh/{slot}"),
                why,
            })?;
            log.add_value(slot, entries.len(), now);
            for r in &entries {
                log.set_latest(slot, r);
            }
            log.next_slot = slot + 1;
        }
        let dead: Vec<u64> = log
            .values
            .iter()
            .filter(|(_, v)| v.live == 0)
            .map(|(slot, _)| *slot)
            .collect();
        for slot in dead {
            log.drop_value(slot);
        }
        Ok(log)
    }

    /// Make `r` its alert's latest refresh, if it is newer than the one known.
    fn set_latest(&mut self, slot: u64, r: &Refresh) {
        if let Some(known) = self.latest.get(&r.fingerprint) {
            if known.count >= r.count {
                return;
            }
        }
        if let Some(v) = self.values.get_mut(&slot) {
            v.live += 1;
        }
        let latest = Latest {
            slot,
            count: r.count,
        };
        if let Some(old) = self.latest.insert(r.fingerprint, latest) {
            self.release(old.slot);
        }
    }

    fn release(&mut self, slot: u64) {
        let Some(v) = self.values.get_mut(&slot) else {
            return;
        };
        v.live = v.live.saturating_sub(1);
        if v.live == 0 {
            self.drop_value(slot);
        }
    }

    /// A value just written (or found at open) in `slot`, the newest so far.
    fn add_value(&mut self, slot: u64, logged: usize, written: Instant) {
        let born = self.next_born;
        self.next_born += 1;
        self.values.insert(
            slot,
            Value {
                live: 0,
                logged,
                written,
                born,
            },
        );
        self.by_age.insert(born, slot);
        self.logged += logged;
    }

    fn drop_value(&mut self, slot: u64) {
        if let Some(v) = self.values.remove(&slot) {
            self.by_age.remove(&v.born);
            self.logged -= v.logged;
            self.dead.push(slot);
        }
    }

    /// The count of the alert's latest refresh.
    pub(super) fn latest_count(&self, fp: Fingerprint) -> Option<u64> {
        self.latest.get(&fp).map(|l| l.count)
    }

    pub(super) fn digest(&self, fp: Fingerprint) -> Option<Digest> {
        self.digests.get(&fp).copied()
    }

    /// Apply the alert's latest refresh to a record read from the store, reading the refresh
    /// from its log value (there while an alert's latest refresh is in it: a value is removed
    /// only once no alert's latest refresh is).
    pub(super) fn merge(&self, db: &sled::Db, record: &mut AlertRecord) -> super::Result<()> {
        let fp = record.fingerprint;
        let Some(latest) = self.latest.get(&fp) else {
            return Ok(());
        };
        if !supersedes(latest.count, record) {
            // What `Refresh::apply` would decide, without reading the refresh.
            return Ok(());
        }
        let corrupt = |why: String| super::StoreError::Corrupt {
            key: format!("refresh/{}", latest.slot),
            why,
        };
        let value = db.get(key(latest.slot))?.ok_or_else(|| {
            corrupt(format!(
                "missing, yet alert {fp} has its latest refresh there"
            ))
        })?;
        match find(&value, fp).map_err(corrupt)? {
            Some(r) => r.apply(record),
            None => {
                return Err(corrupt(format!(
                    "no entry for alert {fp}, which has its latest refresh there"
                )))
            }
        }
        Ok(())
    }

    /// Add this commit's log value and the removal of dead ones to `batch`. The new value
    /// takes the slot of a dead one when there is one (in sled, overwriting a key costs a
    /// fraction of removing one and inserting another), else a new slot. Returns the new value's
    /// slot (if any) and how many dead values it disposes of, for [`Log::committed`].
    pub(super) fn stage(
        &self,
        batch: &mut super::Writes,
        refreshes: &[Refresh],
    ) -> (Option<u64>, usize) {
        let mut dead = self.dead.iter().copied();
        let slot = (!refreshes.is_empty()).then(|| dead.next().unwrap_or(self.next_slot));
        for other in dead {
            batch.remove(key(other));
        }
        if let Some(slot) = slot {
            batch.insert(key(slot), encode(refreshes));
        }
        (slot, self.dead.len())
    }

    /// The staged commit is durable: move the state on.
    pub(super) fn committed(
        &mut self,
        staged: (Option<u64>, usize),
        refreshes: &[Refresh],
        written: &[(Fingerprint, u64, Option<Digest>)],
    ) {
        let (slot, removed) = staged;
        self.dead.drain(..removed);
        for &(fp, count, digest) in written {
            if let Some(&latest) = self.latest.get(&fp) {
                if latest.count <= count {
                    self.latest.remove(&fp);
                    self.release(latest.slot);
                }
            }
            match digest {
                Some(d) => self.digests.insert(fp, d),
                None => self.digests.remove(&fp),
            };
        }
        for r in refreshes {
            if let Some(d) = self.digests.get_mut(&r.fingerprint) {
                d.ends_at = r.ends_at;
                d.expires_at = r.expires_at;
            }
        }
        if let Some(slot) = slot {
            self.next_slot = self.next_slot.max(slot + 1);
            self.add_value(slot, refreshes.len(), Instant::now());
            for r in refreshes {
                self.set_latest(slot, r);
            }
            if self.values.get(&slot).is_some_and(|v| v.live == 0) {
                self.drop_value(slot);
            }
        }
    }

    /// The oldest log value, when it is due to be folded into the records: the log is past
    /// [`MAX_LOGGED`] entries, or that value is `fold_after` old ([`FOLD_AFTER`] but in tests).
    pub(super) fn due(&self, now: Instant, fold_after: Duration) -> Option<u64> {
        let (_, &slot) = self.by_age.first_key_value()?;
        let oldest = self.values.get(&slot)?;
        (self.logged > MAX_LOGGED || now.duration_since(oldest.written) >= fold_after)
            .then_some(slot)
    }

    /// Entries in the log values on disk, dead ones included (they go with the next commit).
    pub(super) fn logged(&self) -> usize {
        self.logged
    }

    /// The alerts whose latest refresh is in the log value at `slot` (read from disk as `bytes`).
    pub(super) fn live_in(&self, slot: u64, bytes: &[u8]) -> Result<Vec<Fingerprint>, String> {
        Ok(decode(bytes)?
            .into_iter()
            .filter(|r| {
                self.latest
                    .get(&r.fingerprint)
                    .is_some_and(|l| l.slot == slot && l.count == r.count)
            })
            .map(|r| r.fingerprint)
            .collect())
    }

    #[cfg(test)]
    pub(super) fn values(&self) -> Vec<u64> {
        self.values.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(fp: u64, count: u64, secs: i64) -> Refresh {
        Refresh {
            fingerprint: Fingerprint(fp),
            count,
            last_seen: Utc.timestamp_opt(secs, 123_456_789).unwrap(),
            ends_at: (fp % 2 == 0).then(|| Utc.timestamp_opt(secs + 240, 7).unwrap()),
            expires_at: Some(Utc.timestamp_opt(secs + 240, 7).unwrap()),
        }
    }

    #[test]
    fn entries_round_trip_to_the_nanosecond() {
        let entries: Vec<Refresh> = (0..5).map(|i| refresh(i, i + 10, 1_700_000_000)).collect();
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 1 + 5 * ENTRY_BYTES);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert!(decode(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("whole number"));
        assert!(decode(&[9]).unwrap_err().contains("version 9"));
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn values_are_written_in_fingerprint_order_and_searched_in_them() {
        let entries: Vec<Refresh> = [9, 2, 7, 4, 1]
            .into_iter()
            .map(|fp| refresh(fp, fp + 10, 1_700_000_000))
            .collect();
        let bytes = encode(&entries);
        let order: Vec<u64> = decode(&bytes)
            .unwrap()
            .iter()
            .map(|r| r.fingerprint.0)
            .collect();
        assert_eq!(order, [1, 2, 4, 7, 9]);
        for r in &entries {
            assert_eq!(find(&bytes, r.fingerprint).unwrap(), Some(*r));
        }
        assert_eq!(find(&bytes, Fingerprint(5)).unwrap(), None);
        // A value written before values were sorted is still searched, by a scan.
        let mut unsorted = vec![LOG_VERSION];
        for r in &entries {
            r.encode_into(&mut unsorted);
        }
        for r in &entries {
            assert_eq!(find(&unsorted, r.fingerprint).unwrap(), Some(*r));
        }
        assert!(find(&unsorted[..unsorted.len() - 1], Fingerprint(9))
            .unwrap_err()
            .contains("whole number"));
    }

    #[test]
    fn a_refresh_applies_only_to_an_older_firing_record() {
        let mut record = AlertRecord::sample(Fingerprint(4), Status::Firing, Labels::new());
        record.count = 3;
        let newer = refresh(4, 4, 1_700_000_000);
        let mut r = record.clone();
        newer.apply(&mut r);
        assert_eq!(
            (r.count, r.last_seen, r.ends_at),
            (4, newer.last_seen, newer.ends_at)
        );
        let mut r = record.clone();
        refresh(4, 3, 1_700_000_000).apply(&mut r);
        assert_eq!(r, record, "a refresh no newer than the record is stale");
        let mut resolved = record.clone();
        resolved.status = Status::Resolved;
        let before = resolved.clone();
        newer.apply(&mut resolved);
        assert_eq!(resolved, before);
    }

    #[test]
    fn values_die_when_superseded_or_written_and_are_removed_by_the_next_commit() {
        let mut log = Log::default();
        let mut batch = super::super::Writes::default();
        let first = [refresh(1, 2, 100), refresh(2, 2, 100)];
        let staged = log.stage(&mut batch, &first);
        assert_eq!(staged, (Some(0), 0));
        log.committed(staged, &first, &[]);
        assert_eq!(log.values(), vec![0]);

        // Alert 1 is refreshed again; alert 2 is written in full: value 0 is dead.
        let second = [refresh(1, 3, 101)];
        let staged = log.stage(&mut batch, &second);
        log.committed(staged, &second, &[(Fingerprint(2), 2, None)]);
        assert_eq!(log.values(), vec![1]);
        assert_eq!(log.dead, vec![0]);
        assert_eq!(log.latest_count(Fingerprint(1)), Some(3));
        assert_eq!(log.latest_count(Fingerprint(2)), None);

        // The next commit removes it, even with no refresh of its own.
        let staged = log.stage(&mut batch, &[]);
        assert_eq!(staged, (None, 1));
        log.committed(staged, &[], &[]);
        assert!(log.dead.is_empty());
        assert_eq!(log.logged, 1);
    }

    #[test]
    fn a_new_value_takes_a_dead_ones_slot_and_the_oldest_is_folded_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut log = Log::default();
        let commit = |log: &mut Log,
                      refreshes: &[Refresh],
                      written: &[(Fingerprint, u64, Option<Digest>)]| {
            let mut batch = super::super::Writes::default();
            let staged = log.stage(&mut batch, refreshes);
            batch.apply(&db).unwrap();
            log.committed(staged, refreshes, written);
            staged
        };
        commit(&mut log, &[refresh(1, 2, 100)], &[]);
        commit(&mut log, &[refresh(2, 2, 100)], &[]);
        // Alert 1 is written in full: value 0 dies.
        commit(&mut log, &[], &[(Fingerprint(1), 2, None)]);
        assert_eq!(log.dead, vec![0]);
        assert!(
            db.get(key(0)).unwrap().is_some(),
            "removed by the next commit only"
        );

        // The next value goes into slot 0, over the dead one: nothing is removed.
        let staged = commit(&mut log, &[refresh(3, 5, 101)], &[]);
        assert_eq!(staged, (Some(0), 1));
        assert!(log.dead.is_empty());
        assert_eq!(log.values(), vec![0, 1]);
        let in_slot = decode(&db.get(key(0)).unwrap().unwrap()).unwrap();
        assert_eq!(in_slot, vec![refresh(3, 5, 101)]);
        assert_eq!(db.scan_prefix(PREFIX).count(), 2);

        // Slot 1 holds the older value: it is the one due.
        let now = Instant::now();
        assert_eq!(log.due(now + FOLD_AFTER, FOLD_AFTER), Some(1));

        // Two dead at once: one slot is taken, the other removed; a commit with no refresh
        // removes what is dead and takes nothing.
        commit(&mut log, &[refresh(4, 1, 102)], &[]);
        commit(
            &mut log,
            &[],
            &[(Fingerprint(2), 2, None), (Fingerprint(3), 5, None)],
        );
        assert_eq!(log.dead.len(), 2);
        let staged = commit(&mut log, &[refresh(5, 1, 103)], &[]);
        assert_eq!(staged.1, 2);
        assert!(matches!(staged.0, Some(0 | 1)));
        assert_eq!(
            db.scan_prefix(PREFIX).count(),
            2,
            "slot 2 and the one taken"
        );
        assert_eq!(log.next_slot, 3);

        // Rebuilt from disk, the log finds the same values and latest refreshes.
        let loaded = Log::load(&db).unwrap();
        assert_eq!(loaded.values(), log.values());
        for fp in 1..=5 {
            let fp = Fingerprint(fp);
            assert_eq!(loaded.latest_count(fp), log.latest_count(fp), "{fp}");
        }
    }

    #[test]
    fn a_full_write_older_than_the_latest_refresh_keeps_it() {
        let mut log = Log::default();
        let mut batch = super::super::Writes::default();
        let r = [refresh(7, 9, 100)];
        let staged = log.stage(&mut batch, &r);
        log.committed(staged, &r, &[]);
        let staged = log.stage(&mut batch, &[]);
        log.committed(staged, &[], &[(Fingerprint(7), 8, None)]);
        assert_eq!(log.latest_count(Fingerprint(7)), Some(9));
        assert_eq!(log.values(), vec![0]);
    }

    #[test]
    fn the_oldest_value_falls_due_by_size_or_age() {
        let mut log = Log::default();
        let mut batch = super::super::Writes::default();
        let r = [refresh(1, 2, 100)];
        let staged = log.stage(&mut batch, &r);
        log.committed(staged, &r, &[]);
        let now = Instant::now();
        assert_eq!(log.due(now, FOLD_AFTER), None);
        assert_eq!(log.due(now + FOLD_AFTER, FOLD_AFTER), Some(0));
        log.logged = MAX_LOGGED + 1;
        assert_eq!(log.due(now, FOLD_AFTER), Some(0));
        let live = log.live_in(0, &encode(&[refresh(1, 2, 100), refresh(3, 1, 100)]));
        assert_eq!(live.unwrap(), vec![Fingerprint(1)]);
    }
}

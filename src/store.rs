//! The store: the only module that uses sled. Owns the key layout, value encoding, the group
//! commit (one [`journal`] record, one fdatasync, then the writes applied to sled) and the read
//! queries the API needs.
//!
//! All state lives in sled's default tree under typed key prefixes:
//!
//! | key | value |
//! |---|---|
//! | `meta/schema` | schema version |
//! | `meta/next_incident` | next incident number (u64 BE) |
//! | `alert/<fp u64 BE>` | [`AlertRecord`] of a resolved alert, binary ([`record`]) |
//! | `firing/<fp u64 BE>` | [`AlertRecord`] of a firing alert; or empty: the record is in `alert/` |
//! | `incident/<id u64 BE>` | [`Incident`] |
//! | `open/<id u64 BE>` | the incident's tier (`L1`): index of incidents not yet resolved |
//! | `group/<group key>` | id of the active incident of that group (u64 BE) |
//! | `member/<id u64 BE><seq u64 BE>` | fingerprints made members of the incident, added to until it holds 64 ([`write_members`]) |
//! | `timer/<deadline ms u64 BE><seq u64 BE>` | the deadlines ([`Timer`]s) one commit set for that time ([`write_timers`]) |
//! | `silence/<uuid 16 bytes>` | [`Silence`] |
//! | `silenced/<uuid 16 bytes><fp u64 BE>` | alerts a silence holds back: empty for one held on arrival, or the incident (u64 BE) it was firing in when the silence took it |
//! | `meta/next_dead_letter` | next dead letter id (u64 BE): ids never repeat once old ones go |
//! | `deadletter/<id u64 BE>` | [`DeadLetter`]: a message a source could not read |
//! | `outbox/<seq u64 BE>` | [`OutboxEvent`]: an incident change for the sinks |
//! | `cursor/<sink name>` | the last outbox seq the sink has passed (u64 BE) |
//! | `refresh/<seq u64 BE>` | the repeats of firing alerts one commit acknowledged ([`refresh`]) |
//!
//! Beside sled's files, in the same directory, `triaged.journal` holds the commits since sled was
//! last flushed ([`journal`]).
//!
//! Values are a version byte followed by JSON, except alert records and incidents (binary,
//! version 2: [`record`], [`incident_value`]; JSON values written before are still read) and the
//! refresh log's fixed-size entries.
//!
//! An alert's record lives under the prefix of its status, so listing the firing alerts is one
//! prefix scan and a firing alert costs sled one key, not a record plus an index key (sled's
//! memory grows with its key count: `examples/sled_keys.rs`). Stores written before kept every
//! record in `alert/` with an empty `firing/` key as the index; such a key is still followed to
//! `alert/`, and the alert's next write moves its record (see [`Batch::put_alert`]).
//! What to write is decided by the pipeline; this module only encodes it.

mod codec;
mod hot;
mod incident_value;
mod journal;
mod record;
pub mod refresh;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use chrono::{DateTime, TimeZone, Utc};

use crate::alert::{AlertRecord, Fingerprint, Labels, Status};
use crate::dead_letter::DeadLetter;
use crate::incident::{Incident, IncidentId, State, Tier};
use crate::outbox::OutboxEvent;
use crate::silence::{Silence, SilenceId};

use journal::Journal;
pub use journal::Writes;
pub use refresh::{Digest, Refresh};

const SCHEMA_VERSION: &[u8] = b"1";
/// The page cache when none is configured: `storage.cache_mb`'s default.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Journal bytes between checkpoints by default (`storage.checkpoint_kb`).
pub const DEFAULT_CHECKPOINT_BYTES: u64 = journal::CHECKPOINT_BYTES;
const VALUE_VERSION: u8 = 1;
/// sled's file in the store's directory: its log, which a checkpoint fdatasyncs, and what it
/// locks against a second process.
const SLED_FILE: &str = "db";
/// Written beside sled's files once a store's schema is durable, and again after each
/// checkpoint with the journal seq that checkpoint stored in sled. sled opens missing files as
/// an empty store and a damaged file as what it can read of it, silently: a store that has the
/// marker and in which sled finds nothing, or an older checkpoint than the marker's, lost
/// durable data, and is refused rather than started on what is left.
const STORE_MARKER: &str = "triaged.store";
/// The marker's first line; the second is the journal seq of the last checkpoint.
const MARKER_TEXT: &str = "a triaged store: sled's files and the journal beside this file";

const META_SCHEMA: &[u8] = b"meta/schema";
const META_NEXT_INCIDENT: &[u8] = b"meta/next_incident";
const META_NEXT_DEAD_LETTER: &[u8] = b"meta/next_dead_letter";
/// The seq the journal's current generation starts with (written with each checkpoint's
/// flush): what tells a damaged first record from a torn one ([`journal::End`]).
const META_JOURNAL_SEQ: &[u8] = b"meta/journal_seq";
/// Present once the `firing/` index covers every alert (stores written before it existed get it
/// built once, when opened).
const META_FIRING_INDEX: &[u8] = b"meta/firing_index";
const ALERT: &[u8] = b"alert/";
const FIRING: &[u8] = b"firing/";
const INCIDENT: &[u8] = b"incident/";
const OPEN: &[u8] = b"open/";
const GROUP: &[u8] = b"group/";
const MEMBER: &[u8] = b"member/";
const TIMER: &[u8] = b"timer/";
const SILENCE: &[u8] = b"silence/";
const SILENCED: &[u8] = b"silenced/";
const DEAD_LETTER: &[u8] = b"deadletter/";
const OUTBOX: &[u8] = b"outbox/";
const CURSOR: &[u8] = b"cursor/";

/// Something due at a time. Each kind's owner records the deadline it expects, so a timer whose
/// deadline has since moved is recognised as stale and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// An alert resolves unless refreshed.
    AlertExpiry(Fingerprint),
    /// An incident escalates unless acknowledged.
    AckTimeout(IncidentId),
    /// An incident escalates unless resolved.
    ResolveTimeout(IncidentId),
    /// A silence ends: what it held back is triaged.
    SilenceEnd(SilenceId),
    /// A silence set to start later starts: it takes the firing alerts it matches.
    SilenceStart(SilenceId),
}

impl Timer {
    fn encode(&self) -> Vec<u8> {
        match self {
            Timer::AlertExpiry(fp) => [&[1u8][..], &fp.0.to_be_bytes()].concat(),
            Timer::AckTimeout(id) => [&[2u8][..], &id.0.to_be_bytes()].concat(),
            Timer::ResolveTimeout(id) => [&[3u8][..], &id.0.to_be_bytes()].concat(),
            Timer::SilenceEnd(id) => [&[4u8][..], id.as_bytes()].concat(),
            Timer::SilenceStart(id) => [&[5u8][..], id.as_bytes()].concat(),
        }
    }

    /// The timer at the start of `bytes`, and the bytes after it.
    fn read(bytes: &[u8]) -> Option<(Timer, &[u8])> {
        let len = match bytes.first()? {
            4 | 5 => 17,
            _ => 9,
        };
        let (entry, rest) = bytes.split_at_checked(len)?;
        Some((Timer::decode(entry)?, rest))
    }

    fn decode(bytes: &[u8]) -> Option<Timer> {
        let (kind, id) = bytes.split_first()?;
        Some(match kind {
            1 => Timer::AlertExpiry(Fingerprint(be_u64(id))),
            2 => Timer::AckTimeout(IncidentId(be_u64(id))),
            3 => Timer::ResolveTimeout(IncidentId(be_u64(id))),
            4 => Timer::SilenceEnd(SilenceId::from_slice(id).ok()?),
            5 => Timer::SilenceStart(SilenceId::from_slice(id).ok()?),
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}{hint}")]
    Open {
        path: PathBuf,
        source: sled::Error,
        hint: &'static str,
    },
    #[error("cannot open sled's log file {path} for fdatasync: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store at {path} has schema version {found:?}; this triaged reads version 1")]
    Schema { path: PathBuf, found: String },
    #[error(
        "the store at {path} lost data it had made durable: its last checkpoint stored journal \
         commit {checkpointed} ({STORE_MARKER} says so), but sled finds commit {found} (0: \
         nothing); sled's files are damaged or gone, and triaged does not start on what is left. \
         Restore the directory from a backup, or move it aside to start with an empty store"
    )]
    Emptied {
        path: PathBuf,
        found: u64,
        checkpointed: u64,
    },
    #[error(
        "the store at {path} is damaged: sled failed while opening it ({why}). Move the \
         directory aside and restore a backup; triaged never resets it by itself"
    )]
    Panicked { path: PathBuf, why: String },
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("fdatasync of the store failed: {0}")]
    Sync(#[source] std::io::Error),
    #[error("the store's journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store's journal {path} cannot be applied: {source}")]
    Replay {
        path: PathBuf,
        source: journal::ApplyError,
    },
    #[error(
        "the store's journal {path} is damaged: the record at byte {at} (commit {expected}) \
         cannot be read, yet commit {found_seq} at byte {found_at} after it is intact, so \
         acknowledged commits would be lost; triaged does not start on it. Restore the data \
         directory from a backup, or keep the commits before the damage and drop the rest with \
         `truncate -s {at} {path}`"
    )]
    JournalDamaged {
        path: PathBuf,
        at: usize,
        expected: u64,
        found_at: usize,
        found_seq: u64,
    },
    #[error(
        "the store's journal {path} is missing, though {STORE_MARKER} beside it says the store \
         has one: the commits acknowledged since the last checkpoint may be lost; triaged does \
         not start on it. Restore the data directory from a backup, or, accepting that loss, \
         create an empty journal with `touch {path}`"
    )]
    JournalMissing { path: PathBuf },
    #[error("corrupt value under {key}: {why}")]
    Corrupt { key: String, why: String },
    /// The store is down: a write failed (disk full, read-only, I/O error) and it has not been
    /// reopened yet. Nothing is read or written until it is.
    #[error("store not writable: {0}")]
    Unavailable(String),
    /// A long read was given up because the daemon stops.
    #[error("given up: the daemon is stopping")]
    Stopping,
}

impl StoreError {
    /// Why, in few words, for a client and for `/-/ready`: the operating system's words for an
    /// I/O failure ("No space left on device (os error 28)"), else the whole message.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }
            | StoreError::Sled(sled::Error::Io(e))
            | StoreError::Sync(e)
            | StoreError::Journal { source: e, .. }
            | StoreError::LogFile { source: e, .. } => os_words(e),
            StoreError::Unavailable(reason) => reason.clone(),
            other => other.to_string(),
        }
    }

    /// The disk refuses writes (full, over quota, read-only): a state that an operator fixes
    /// while triaged waits, unlike a damaged or locked store.
    /// What is on disk is damaged or not ours (corrupt data, a damaged journal, another schema):
    /// starting again will not help, an operator must act.
    pub fn is_damaged(&self) -> bool {
        matches!(
            self,
            StoreError::Open {
                source: sled::Error::Corruption { .. },
                ..
            } | StoreError::Schema { .. }
                | StoreError::Emptied { .. }
                | StoreError::Panicked { .. }
                | StoreError::Replay { .. }
                | StoreError::JournalDamaged { .. }
                | StoreError::JournalMissing { .. }
                | StoreError::Corrupt { .. }
        )
    }

    pub fn is_disk_refusing_writes(&self) -> bool {
        use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
        match self {
            StoreError::Unavailable(_) => true,
            other => other.io().is_some_and(|e| {
                matches!(e.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem)
            }),
        }
    }

    /// An I/O failure of any kind (a full disk, a read-only or immutable file, an I/O error),
    /// as against damage or a refusal of ours. sled keeps the first one it meets, in its own
    /// writes too, and answers every later call with it, so only closing and reopening the
    /// store clears it.
    pub fn is_io_failure(&self) -> bool {
        matches!(self, StoreError::Unavailable(_)) || self.io().is_some()
    }

    fn io(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }
            | StoreError::Sled(sled::Error::Io(e))
            | StoreError::Sync(e)
            | StoreError::Journal { source: e, .. }
            | StoreError::LogFile { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The operating system's words for an I/O error: "No space left on device (os error 28)".
/// sled copies the I/O errors it keeps, and its copy carries only the `Debug` text of the
/// original (`Os { code: 28, kind: StorageFull, message: "..." }`): read the code back.
fn os_words(e: &std::io::Error) -> String {
    if e.raw_os_error().is_some() {
        return e.to_string();
    }
    let text = e.to_string();
    let code = text
        .split_once("code: ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => text,
    }
}

/// Handle on the store; cheap to share behind an `Arc` (sled is internally synchronized).
///
/// The store can go down: when a group commit fails (disk full, file system read-only, an I/O
/// error), sled may have applied part of the batch in memory, so readers would see what is not
/// acknowledged, and sled refuses every later write anyway (its I/O error is sticky). So the
/// failed commit closes the database at once, under the lock no reader holds, and every read
/// and write answers [`StoreError::Unavailable`] until the writer [reopens](Store::reopen) it
/// from disk, which applies the journal again and so shows exactly what was durable. Nothing is
/// reset, nothing half-written is ever shown.
pub struct Store {
    path: PathBuf,
    cache_bytes: u64,
    /// Journal bytes between checkpoints ([`journal`]).
    checkpoint_bytes: u64,
    /// The open database, or why there is none. Also what makes commits visible at once:
    /// readers see a group commit only once it is durable, whole, and its metrics are counted
    /// (sled makes each write visible when it is applied), so the commit holds this for writing
    /// from the journal's write to the end, and every read holds it for reading.
    state: RwLock<std::result::Result<Handle, String>>,
    /// How old a refresh log value may get before it is folded ([`refresh::FOLD_AFTER`]).
    fold_after: std::sync::Mutex<std::time::Duration>,
    /// Set while a commit waits for the state lock: a long scan ([`Store::scan_chunked`]) lets
    /// go of it and waits. (The lock's own queueing did not do: a scan that took it again at
    /// once kept a commit waiting for hundreds of milliseconds, winning every race against
    /// the commit's wake-up.)
    commit_waiting: AtomicBool,
    /// What opening found at `path`; none for a store that started [down](Store::down).
    opened: Option<Opened>,
}

/// What [`Store::open_with`] found at the store's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The store that was there.
    Existing,
    /// No store was there, so a new, empty one was made: in a directory that was there
    /// (`dir_existed`: empty, or holding no store), or in one made for it.
    Created { dir_existed: bool },
}

/// The open sled database.
struct Handle {
    db: sled::Db,
    /// sled's log file, kept open so that a checkpoint can fdatasync it: sled 0.34's `flush`
    /// ends in `sync_file_range`, which survives a process crash but not a power cut.
    log: File,
    /// The refresh log's state, and the digests of firing alerts (see [`refresh`]).
    refreshes: refresh::Log,
    /// What makes a commit durable ([`journal`]).
    journal: Journal,
    /// The incidents and open `member/` values the latest commits wrote ([`hot`]).
    hot: hot::Hot,
}

/// A read of the open store: holds the state lock for reading (see `Store::state`).
struct View<'a>(RwLockReadGuard<'a, std::result::Result<Handle, String>>);

impl std::ops::Deref for View<'_> {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        match &*self.0 {
            Ok(handle) => handle,
            // `Store::view` hands out views of an open store only.
            Err(_) => unreachable!("a view of a closed store"),
        }
    }
}

/// What retention may remove ([`Store::expired`]), in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expired {
    pub incidents: Vec<IncidentId>,
    pub alerts: Vec<Fingerprint>,
    pub silences: Vec<SilenceId>,
    pub dead_letters: Vec<u64>,
}

/// An incident resolved at or before `cutoff` none of whose alerts still fires (one resolved by
/// hand while its alerts fire stays while they do: they name it): retention may remove it.
pub fn incident_expired(incident: &Incident, cutoff: DateTime<Utc>) -> bool {
    !incident.is_active()
        && incident.firing_count == 0
        && incident.resolved_at.is_some_and(|at| at <= cutoff)
}

/// A resolved alert whose last reception and end are both at or before `cutoff`: retention may
/// remove it (unless its incident is still stored). A firing one never.
pub fn alert_expired(record: &AlertRecord, cutoff: DateTime<Utc>) -> bool {
    record.status == Status::Resolved
        && record.silenced_by.is_none()
        && record.last_seen <= cutoff
        && record.ends_at.is_none_or(|at| at <= cutoff)
}

/// Filters of the incident list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<State>,
    pub tier: Option<Tier>,
    /// Only incidents not yet resolved (open or acknowledged): what the NOC board shows.
    pub active: bool,
    /// Only incidents with these label values (`team`, `service`: the group-by labels and
    /// those rules set); an empty value takes those without the label.
    pub labels: Vec<(&'static str, String)>,
}

impl IncidentFilter {
    fn takes(&self, incident: &Incident) -> bool {
        self.state.is_none_or(|s| s == incident.state)
            && self.tier.is_none_or(|t| t == incident.tier)
            && (!self.active || incident.is_active())
            && self
                .labels
                .iter()
                .all(|(name, value)| incident.labels.get(*name).map_or("", String::as_str) == value)
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, DEFAULT_CACHE_BYTES, DEFAULT_CHECKPOINT_BYTES)
    }

    /// Open with sled's page cache bounded to `cache_bytes` (sled's own default is 1 GiB, which
    /// would make RSS grow with the store).
    /// Also, a checkpoint every `checkpoint_bytes` of journal (see [`journal`]).
    pub fn open_with(path: &Path, cache_bytes: u64, checkpoint_bytes: u64) -> Result<Store> {
        let (handle, opened) = Handle::open(path, cache_bytes, checkpoint_bytes)?;
        Ok(Store {
            path: path.to_path_buf(),
            cache_bytes,
            checkpoint_bytes,
            state: RwLock::new(Ok(handle)),
            fold_after: std::sync::Mutex::new(refresh::FOLD_AFTER),
            commit_waiting: AtomicBool::new(false),
            opened: Some(opened),
        })
    }

    /// Whether opening found a store at the path or made a new one; none for a store that
    /// started [down](Store::down).
    pub fn opened(&self) -> Option<Opened> {
        self.opened
    }

    /// A store that could not be opened because its disk refuses writes
    /// ([`StoreError::is_disk_refusing_writes`]): it starts down, saying `reason`, and the
    /// writer [reopens](Store::reopen) it once the disk takes writes again.
    pub fn down(path: &Path, cache_bytes: u64, checkpoint_bytes: u64, reason: String) -> Store {
        Store {
            path: path.to_path_buf(),
            cache_bytes,
            checkpoint_bytes,
            state: RwLock::new(Err(reason)),
            fold_after: std::sync::Mutex::new(refresh::FOLD_AFTER),
            commit_waiting: AtomicBool::new(false),
            opened: None,
        }
    }

    /// Why the store is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            Ok(_) => None,
            Err(reason) => Some(reason.clone()),
        }
    }

    /// Close the store, if open, and answer [`StoreError::Unavailable`] with `reason` until
    /// [`Store::reopen`].
    pub fn close(&self, reason: String) {
        let closed = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *state, Err(reason))
        };
        // Readers are answered Unavailable from here on, while this waits for the lock.
        if let Ok(handle) = closed {
            handle.close(&self.path);
        }
    }

    /// Open a store that is down again, from what is on disk, and prove that it takes a durable
    /// write. Ok at once if it is open.
    pub fn reopen(&self) -> Result<()> {
        if self.down_reason().is_none() {
            return Ok(());
        }
        // Only the writer reopens, so nothing opens it meanwhile; readers are answered
        // Unavailable at once rather than wait for sled's recovery.
        let opened = Handle::open(&self.path, self.cache_bytes, self.checkpoint_bytes).and_then(
            |(handle, _)| {
                handle.db.insert(META_SCHEMA, SCHEMA_VERSION)?;
                flush_durably(&handle.db, &handle.log)?;
                Ok(handle)
            },
        );
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match opened {
            Ok(handle) => {
                *state = Ok(handle);
                Ok(())
            }
            Err(e) => {
                *state = Err(e.reason());
                Err(e)
            }
        }
    }

    /// Make `batch` durable and apply it: one [`journal`] record with one fdatasync, then its
    /// writes applied to sled (not flushed: the journal is what a restart reads them from, and
    /// every [`journal::CHECKPOINT_BYTES`] sled is flushed and the journal starts again). Then
    /// `durable` runs (the writer counts its metrics there) before any reader sees the batch.
    /// Nothing may be acknowledged before this returns `Ok`. When it fails, the store is down
    /// (see [`Store`]) until [`Store::reopen`].
    pub fn commit(&self, batch: Batch, durable: impl FnOnce()) -> Result<()> {
        self.commit_waiting.store(true, Ordering::Release);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        self.commit_waiting.store(false, Ordering::Release);
        let handle = open_handle(&mut state)?;
        let Batch {
            mut inner,
            refreshes,
            written,
            timers,
            members,
            incidents,
            removed_incidents,
        } = batch;
        let staged = handle.refreshes.stage(&mut inner, &refreshes);
        let written_out = (|| -> Result<_> {
            write_timers(&handle.db, &mut inner, &timers)?;
            let open_members = write_members(&handle.db, &mut inner, &members, &handle.hot)?;
            if inner.is_empty() {
                return Ok(open_members);
            }
            let journal = &mut handle.journal;
            journal
                .append(&mut inner)
                .map_err(|e| journal_failed(journal.path(), e))?;
            inner
                .apply(&handle.db)
                .map_err(|e| applying(journal.path(), e))?;
            if journal.checkpoint_due() {
                flush_generation(&handle.db, &handle.log, journal)?;
                journal.restart();
            }
            Ok(open_members)
        })();
        let open_members = match written_out {
            Ok(open_members) => open_members,
            Err(e) => {
                // Part of the batch may be in sled's memory, and its journal record may or may
                // not be whole on disk: close before any reader sees it. The reopen applies the
                // journal again, so this is at worst a batch stored but not acknowledged, which
                // the client's retry finds deduplicated.
                *state = Err(e.reason());
                return Err(e);
            }
        };
        handle.refreshes.committed(staged, &refreshes, &written);
        handle.hot.committed(incidents, open_members);
        handle.hot.forget(&removed_incidents);
        durable();
        Ok(())
    }

    /// Make everything applied durable in sled itself and empty the journal (see [`journal`]):
    /// what the writer does when it stops, so that the next start has nothing to apply again.
    pub fn checkpoint(&self) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let handle = open_handle(&mut state)?;
        flush_generation(&handle.db, &handle.log, &handle.journal)?;
        let journal = &mut handle.journal;
        journal
            .clear()
            .map_err(|e| journal_failed(journal.path(), e))
    }

    /// Hold while reading: see `state`. Public reads take it once and use unlocked helpers
    /// inside, so no thread ever takes it twice.
    fn view(&self) -> Result<View<'_>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if let Err(reason) = &*state {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        Ok(View(state))
    }

    /// The alert's record, with its latest refresh applied.
    pub fn alert(&self, fp: Fingerprint) -> Result<Option<AlertRecord>> {
        let view = self.view()?;
        view.alert(fp)
    }

    /// What the writer needs to recognise a pure repeat of a firing alert without reading its
    /// record: the digest of the record it last wrote (none for an alert it has not written
    /// since start, or one not firing) and the count of the alert's latest refresh.
    pub fn repeat_view(&self, fp: Fingerprint) -> Result<Option<(Digest, Option<u64>)>> {
        let view = self.view()?;
        Ok(view
            .refreshes
            .digest(fp)
            .map(|d| (d, view.refreshes.latest_count(fp))))
    }

    /// Entries in the refresh log on disk (`triaged_store_refresh_log_entries`); 0 while down.
    pub fn refresh_log_entries(&self) -> usize {
        self.view().map_or(0, |view| view.refreshes.logged())
    }

    /// Fold refresh log values older than `after` (30 s otherwise): for tests.
    pub fn set_fold_after(&self, after: std::time::Duration) {
        *self.fold_after.lock().unwrap_or_else(|e| e.into_inner()) = after;
    }

    /// Alerts whose latest refresh should now be folded into their records (at most `limit`):
    /// those in the oldest log value, once the log is too big or that value too old.
    pub fn refreshes_due(&self, limit: usize) -> Result<Vec<Fingerprint>> {
        let fold_after = *self.fold_after.lock().unwrap_or_else(|e| e.into_inner());
        let view = self.view()?;
        let Some(slot) = view.refreshes.due(std::time::Instant::now(), fold_after) else {
            return Ok(Vec::new());
        };
        let key = refresh::key(slot);
        let Some(bytes) = view.db.get(&key)? else {
            return Ok(Vec::new());
        };
        let mut live = view
            .refreshes
            .live_in(slot, &bytes)
            .map_err(|why| StoreError::Corrupt {
                key: format!("refresh/{slot}"),
                why,
            })?;
        live.truncate(limit);
        Ok(live)
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>> {
        let view = self.view()?;
        view.incident(id)
    }

    /// The active incident of a group, if any.
    pub fn group(&self, key: &str) -> Result<Option<IncidentId>> {
        let view = self.view()?;
        Ok(view.db.get(group_key(key))?.map(|v| IncidentId(be_u64(&v))))
    }

    /// The number the next incident gets: past the stored counter and past every incident
    /// stored. They agree unless the counter went back while incidents stayed: a journal cut at
    /// damage (the `truncate` its refusal suggests) replays its older records over a sled that
    /// had already written later ones, and a number given again would overwrite an incident.
    pub fn next_incident_number(&self) -> Result<u64> {
        let view = self.view()?;
        let counter = view.db.get(META_NEXT_INCIDENT)?.map_or(1, |v| be_u64(&v));
        let past_stored = view
            .db
            .scan_prefix(INCIDENT)
            .keys()
            .next_back()
            .transpose()?
            .map_or(1, |k| be_u64(&k[INCIDENT.len()..]) + 1);
        if past_stored > counter {
            tracing::warn!(
                counter,
                next_incident = past_stored,
                "the store's incident counter is behind its incidents (a journal cut at damage?): numbering goes on after the highest stored"
            );
        }
        Ok(counter.max(past_stored))
    }

    /// Alerts whose status is firing, in fingerprint order: one scan of `firing/`, so resolved
    /// history is never walked.
    pub fn firing_alerts(&self) -> Result<Vec<AlertRecord>> {
        let mut out = Vec::new();
        self.scan_firing(|view, fp, key, value| {
            out.extend(view.record(fp, key, Some(value))?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The firing alerts whose labels `wanted`, in fingerprint order: a scan of the `firing/`
    /// index that decodes only each record's labels (a whole record, with its latest refresh,
    /// costs several times as much: a silence's take of the firing alerts runs this in the
    /// writer, over every firing alert).
    pub fn firing_matching(&self, wanted: impl Fn(&Labels) -> bool) -> Result<Vec<Fingerprint>> {
        let mut out = Vec::new();
        self.scan_firing(|view, fp, key, value| {
            let matched = match value.split_first() {
                Some((&record::VERSION, body)) => {
                    wanted(&record::decode_labels(body).map_err(|why| corrupt(key, why))?)
                }
                // JSON, or the older layout's empty entry: the whole record.
                _ => view
                    .record(fp, key, Some(value))?
                    .is_some_and(|record| wanted(&record.labels)),
            };
            if matched {
                out.push(fp);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every `firing/` entry, in fingerprint order, to `each` with its view. Read in chunks,
    /// each under its own view, so that a long scan never holds a group commit back for long;
    /// an alert that changes meanwhile is seen before or after its change, as a later read
    /// would see it.
    fn scan_firing(
        &self,
        mut each: impl FnMut(&View<'_>, Fingerprint, &[u8], sled::IVec) -> Result<()>,
    ) -> Result<()> {
        self.scan_chunked(FIRING, |view, key, value| {
            each(view, Fingerprint(be_u64(&key[FIRING.len()..])), key, value)
        })
    }

    /// Every entry under `prefix`, in key order, to `each` with its view, read in chunks of at
    /// most 512 entries and 1 ms, each under its own view, and cut short as soon as a commit
    /// waits (see `commit_waiting`): see [`Store::scan_firing`]. (A store larger than sled's
    /// cache reads its pages from disk as it goes: 512 of them held commits back for seconds
    /// while the disk was busy.)
    fn scan_chunked(
        &self,
        prefix: &[u8],
        mut each: impl FnMut(&View<'_>, &[u8], sled::IVec) -> Result<()>,
    ) -> Result<()> {
        const CHUNK: usize = 512;
        const HOLD: std::time::Duration = std::time::Duration::from_millis(1);
        let mut start = prefix.to_vec();
        loop {
            while self.commit_waiting.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let view = self.view()?;
            let held = std::time::Instant::now();
            let mut range = view.db.range(start.clone()..prefix_end(prefix));
            for _ in 0..CHUNK {
                let Some(kv) = range.next() else {
                    return Ok(());
                };
                let (key, value) = kv?;
                each(&view, &key, value)?;
                // The next chunk starts just after this key.
                start = [key.as_ref(), &[0]].concat();
                if held.elapsed() >= HOLD || self.commit_waiting.load(Ordering::Acquire) {
                    break;
                }
            }
        }
    }

    /// What retention may remove at `cutoff` ([`crate::retention`]): resolved incidents resolved
    /// at or before it; resolved alerts last seen and ended by then that belong to no incident
    /// still stored (an incident's members go after it); silences that ended by then; dead
    /// letters kept by then. Read in chunks, so it holds no commit back for long; the writer
    /// checks each again before it removes anything. Given up ([`StoreError::Stopping`]) as
    /// soon as `stop` is set.
    pub fn expired(&self, cutoff: DateTime<Utc>, stop: &AtomicBool) -> Result<Expired> {
        let mut out = Expired::default();
        let going_on = || {
            if stop.load(Ordering::Relaxed) {
                Err(StoreError::Stopping)
            } else {
                Ok(())
            }
        };
        self.scan_chunked(INCIDENT, |view, key, value| {
            going_on()?;
            let id = IncidentId(be_u64(&key[INCIDENT.len()..]));
            let expired = match view.hot.incident(id) {
                Some(incident) => incident_expired(incident, cutoff),
                None => incident_expired(&decode_incident(key, &value)?, cutoff),
            };
            if expired {
                out.incidents.push(id);
            }
            Ok(())
        })?;
        self.scan_chunked(ALERT, |view, key, value| {
            going_on()?;
            let record = decode_alert(key, &value)?;
            if !alert_expired(&record, cutoff) {
                return Ok(());
            }
            // A member of an incident still stored goes after it.
            if let Some(id) = record.incident {
                if view.db.contains_key(incident_key(id))? {
                    return Ok(());
                }
            }
            out.alerts.push(record.fingerprint);
            Ok(())
        })?;
        self.scan_chunked(SILENCE, |_, key, value| {
            let silence: Silence = decode(key, &value)?;
            if silence.ends_at <= cutoff {
                out.silences.push(silence.id);
            }
            Ok(())
        })?;
        self.scan_chunked(DEAD_LETTER, |_, key, value| {
            let letter: DeadLetter = decode(key, &value)?;
            if letter.at <= cutoff {
                out.dead_letters.push(letter.id);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The keys of an incident's `member/` values.
    pub fn member_keys(&self, id: IncidentId) -> Result<Vec<Vec<u8>>> {
        let view = self.view()?;
        let prefix = member_prefix(id);
        view.db
            .scan_prefix(&prefix)
            .keys()
            .map(|k| Ok(k?.to_vec()))
            .collect()
    }

    /// Member fingerprints of an incident, in fingerprint order.
    pub fn members(&self, id: IncidentId) -> Result<Vec<Fingerprint>> {
        let view = self.view()?;
        let prefix = member_prefix(id);
        let mut out = Vec::new();
        for kv in view.db.scan_prefix(&prefix) {
            let (key, value) = kv?;
            match value.split_first() {
                // The older layout: one empty-valued key per member, its fingerprint last.
                None => out.push(Fingerprint(be_u64(&key[prefix.len()..]))),
                Some((&MEMBERS_VERSION, fps)) if fps.len() % 8 == 0 => {
                    out.extend(fps.chunks_exact(8).map(|fp| Fingerprint(be_u64(fp))));
                }
                Some(_) => return Err(corrupt(&key, "not a list of fingerprints".into())),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Incidents not yet resolved.
    pub fn active_incidents(&self) -> Result<Vec<Incident>> {
        let view = self.view()?;
        let mut out = Vec::new();
        for key in view.db.scan_prefix(OPEN).keys() {
            let id = IncidentId(be_u64(&key?[OPEN.len()..]));
            if let Some(incident) = view.incident(id)? {
                out.push(incident);
            }
        }
        Ok(out)
    }

    /// How many incidents are active, per tier, from the `open/` index alone: its values carry
    /// the tier, so start-up decodes no incident. An entry without one (written before the
    /// index carried it) is read from its incident.
    pub fn active_by_tier(&self) -> Result<BTreeMap<Tier, i64>> {
        let view = self.view()?;
        let mut counts = BTreeMap::new();
        for kv in view.db.scan_prefix(OPEN) {
            let (key, value) = kv?;
            let indexed = std::str::from_utf8(&value)
                .ok()
                .and_then(|t| t.parse::<Tier>().ok());
            let tier = match indexed {
                Some(tier) => tier,
                None => {
                    let id = IncidentId(be_u64(&key[OPEN.len()..]));
                    match view.incident(id)? {
                        Some(incident) => incident.tier,
                        None => continue,
                    }
                }
            };
            *counts.entry(tier).or_default() += 1;
        }
        Ok(counts)
    }

    /// Newest first, starting below `before`; returns the page and the cursor of the next one.
    pub fn list_incidents(
        &self,
        filter: &IncidentFilter,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<(Vec<Incident>, Option<IncidentId>)> {
        let view = self.view()?;
        let wants_active =
            filter.active || matches!(filter.state, Some(State::Open | State::Acknowledged));
        // Active incidents have their own index, so an "open" query never walks history.
        let index = if wants_active { OPEN } else { INCIDENT };
        let end = match before {
            Some(id) => [index, &id.0.to_be_bytes()].concat(),
            None => prefix_end(index),
        };
        let mut page = Vec::new();
        for key in view.db.range(index.to_vec()..end).keys().rev() {
            let id = IncidentId(be_u64(&key?[index.len()..]));
            let Some(incident) = view.incident(id)? else {
                continue;
            };
            if !filter.takes(&incident) {
                continue;
            }
            if page.len() == limit {
                let last = page.last().map(|i: &Incident| i.id);
                return Ok((page, last));
            }
            page.push(incident);
        }
        Ok((page, None))
    }

    /// The earliest pending alert expiry.
    pub fn next_deadline(&self) -> Result<Option<DateTime<Utc>>> {
        let view = self.view()?;
        Ok(view
            .db
            .scan_prefix(TIMER)
            .keys()
            .next()
            .transpose()?
            .map(|k| from_millis(be_u64(&k[TIMER.len()..]))))
    }

    /// Deadlines due at or before `now`, earliest first, at most `limit`.
    pub fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, Timer)>> {
        let view = self.view()?;
        let end = [TIMER, &(millis(now).saturating_add(1)).to_be_bytes()].concat();
        let mut out = Vec::new();
        for kv in view.db.range(TIMER.to_vec()..end) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = kv?;
            let at = from_millis(be_u64(&key[TIMER.len()..TIMER.len() + 8]));
            out.extend(decode_timers(&key, &value)?.into_iter().map(|t| (at, t)));
        }
        // The same timer set twice for one deadline is due once.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The seq the next outbox event gets.
    pub fn next_outbox_seq(&self) -> Result<u64> {
        let view = self.view()?;
        Ok(view
            .db
            .scan_prefix(OUTBOX)
            .keys()
            .next_back()
            .transpose()?
            .map_or(1, |k| be_u64(&k[OUTBOX.len()..]) + 1)
            .max(view.db.get(b"meta/next_outbox")?.map_or(1, |v| be_u64(&v))))
    }

    /// Outbox events after `seq`, in order, at most `limit`.
    pub fn outbox_after(&self, seq: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        self.numbered_after(OUTBOX, seq, limit)
    }

    /// The values under `prefix` (keyed by a big-endian number) numbered above `n`, in order,
    /// at most `limit`.
    fn numbered_after<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        n: u64,
        limit: usize,
    ) -> Result<Vec<T>> {
        let view = self.view()?;
        let start = [prefix, &n.saturating_add(1).to_be_bytes()].concat();
        view.db
            .range(start..prefix_end(prefix))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Outbox seqs at or below `seq`, at most `limit`: what every sink has passed.
    pub fn outbox_up_to(&self, seq: u64, limit: usize) -> Result<Vec<u64>> {
        let view = self.view()?;
        let end = [OUTBOX, &seq.saturating_add(1).to_be_bytes()].concat();
        view.db
            .range(OUTBOX.to_vec()..end)
            .keys()
            .take(limit)
            .map(|k| Ok(be_u64(&k?[OUTBOX.len()..])))
            .collect()
    }

    /// The last outbox seq a sink has passed (0: none).
    pub fn cursor(&self, sink: &str) -> Result<u64> {
        let view = self.view()?;
        Ok(view
            .db
            .get([CURSOR, sink.as_bytes()].concat())?
            .map_or(0, |v| be_u64(&v)))
    }

    /// The id the next dead letter gets.
    pub fn next_dead_letter_id(&self) -> Result<u64> {
        let view = self.view()?;
        Ok(view
            .db
            .scan_prefix(DEAD_LETTER)
            .keys()
            .next_back()
            .transpose()?
            .map_or(1, |k| be_u64(&k[DEAD_LETTER.len()..]) + 1)
            .max(
                view.db
                    .get(META_NEXT_DEAD_LETTER)?
                    .map_or(1, |v| be_u64(&v)),
            ))
    }

    /// Dead letters with an id above `id`, oldest first, at most `limit`.
    pub fn dead_letters_after(&self, id: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        self.numbered_after(DEAD_LETTER, id, limit)
    }

    /// Dead letters, newest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let view = self.view()?;
        view.db
            .scan_prefix(DEAD_LETTER)
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    pub fn silence(&self, id: SilenceId) -> Result<Option<Silence>> {
        let view = self.view()?;
        view.get(&silence_key(id))
    }

    /// Every stored silence, expired ones included.
    pub fn silences(&self) -> Result<Vec<Silence>> {
        let view = self.view()?;
        view.db
            .scan_prefix(SILENCE)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Alerts a silence holds back.
    pub fn silenced(&self, id: SilenceId) -> Result<Vec<Fingerprint>> {
        Ok(self.held_by(id)?.into_iter().map(|(fp, _)| fp).collect())
    }

    /// Alerts a silence holds back, each with the incident it was firing in when the silence
    /// took it (none for an alert held on arrival): see [`Batch::set_silenced`].
    pub fn held_by(&self, id: SilenceId) -> Result<Vec<(Fingerprint, Option<IncidentId>)>> {
        let view = self.view()?;
        let prefix = [SILENCED, id.as_bytes()].concat();
        view.db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((Fingerprint(be_u64(&k[prefix.len()..])), member_of(&v)))
            })
            .collect()
    }

    /// The incident alert `fp` was firing in when silence `id` took it; none if the silence
    /// holds it from its arrival, or does not hold it.
    pub fn held_member_of(&self, id: SilenceId, fp: Fingerprint) -> Result<Option<IncidentId>> {
        let view = self.view()?;
        Ok(view
            .db
            .get(silenced_key(id, fp))?
            .and_then(|v| member_of(&v)))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close("dropped".to_string());
    }
}

impl Handle {
    /// Drop the database, which flushes what sled can, and return once sled has let go of the
    /// directory's lock, so that the store can be opened again at once: see [`await_unlocked`].
    fn close(self, path: &Path) {
        drop(self);
        await_unlocked(&path.join(SLED_FILE));
    }

    fn open(path: &Path, cache_bytes: u64, checkpoint_bytes: u64) -> Result<(Handle, Opened)> {
        // sled makes the directory (and its parents) when it is not there.
        let dir_existed = path.is_dir();
        match Handle::open_once(path, cache_bytes, checkpoint_bytes, dir_existed) {
            // sled writes a snapshot as `snap.<lsn>.generating`, then renames it; a write that
            // failed (a full disk) or a crash leaves the unfinished file, which sled then takes
            // for the newest snapshot and refuses as corrupt. Without it, sled reads the last
            // finished snapshot and its log, which a snapshot never finished did not release.
            Err(StoreError::Open {
                source: sled::Error::Corruption { .. },
                ..
            }) if remove_unfinished_snapshots(path) => {
                Handle::open_once(path, cache_bytes, checkpoint_bytes, dir_existed)
            }
            opened => opened,
        }
    }

    fn open_once(
        path: &Path,
        cache_bytes: u64,
        checkpoint_bytes: u64,
        dir_existed: bool,
    ) -> Result<(Handle, Opened)> {
        let marked = read_marker(path);
        // Some damage makes sled panic rather than answer an error: it is damage all the same.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput)
                .open()
                .map_err(|source| opening(path, source))?;
            // sled reads much of its file lazily: what it finds damaged now is the opening's too.
            let (handle, created) =
                Handle::load(path, db, checkpoint_bytes, marked).map_err(|e| match e {
                    StoreError::Sled(source) => opening(path, source),
                    other => other,
                })?;
            let opened = if created {
                Opened::Created { dir_existed }
            } else {
                Opened::Existing
            };
            Ok((handle, opened))
        }));
        opened.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(StoreError::Panicked {
                path: path.to_path_buf(),
                why,
            })
        })
    }

    /// What opening a store does once sled has opened its file. `marked`: what the directory's
    /// [`STORE_MARKER`] said before the open (none: a new store, or one of a triaged before it).
    /// With whether the store is new (sled held no schema: no store was there).
    fn load(
        path: &Path,
        db: sled::Db,
        checkpoint_bytes: u64,
        marked: Option<u64>,
    ) -> Result<(Handle, bool)> {
        let generation = db.get(META_JOURNAL_SEQ)?.map(|v| be_u64(&v));
        if let Some(checkpointed) = marked {
            let found = generation.unwrap_or(0);
            if found < checkpointed {
                return Err(StoreError::Emptied {
                    path: path.to_path_buf(),
                    found,
                    checkpointed,
                });
            }
        }
        let created = match db.get(META_SCHEMA)? {
            None => {
                db.insert(META_SCHEMA, SCHEMA_VERSION)?;
                db.flush()?;
                true
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION => false,
            Some(v) => {
                return Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                })
            }
        };
        let log_path = path.join(SLED_FILE);
        let log = File::open(&log_path).map_err(|source| StoreError::LogFile {
            path: log_path,
            source,
        })?;
        // Without a marker, the replay's checkpoint writes one (the schema durable with it).
        let journal = replay_journal(
            path,
            &db,
            &log,
            checkpoint_bytes,
            generation,
            marked.is_none(),
        )?;
        build_firing_index(&db)?;
        let refreshes = refresh::Log::load(&db)?;
        let handle = Handle {
            db,
            log,
            refreshes,
            journal,
            hot: hot::Hot::default(),
        };
        Ok((handle, created))
    }

    fn alert(&self, fp: Fingerprint) -> Result<Option<AlertRecord>> {
        let firing = firing_key(fp);
        let value = self.db.get(&firing)?;
        self.record(fp, &firing, value)
    }

    /// Alert `fp`'s record, given what its key in `firing/` holds: the record of a firing alert,
    /// or (absent, or the older layout's empty index entry) nothing, and the record is read from
    /// `alert/`. With its latest refresh applied.
    fn record(
        &self,
        fp: Fingerprint,
        firing: &[u8],
        value: Option<sled::IVec>,
    ) -> Result<Option<AlertRecord>> {
        let mut record = match value {
            Some(bytes) if !bytes.is_empty() => Some(decode_alert(firing, &bytes)?),
            _ => self.get_as(&alert_key(fp), decode_alert)?,
        };
        if let Some(record) = &mut record {
            self.refreshes.merge(&self.db, record)?;
        }
        Ok(record)
    }

    /// The incident as last committed: kept decoded ([`hot`]) or read from sled.
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>> {
        match self.hot.incident(id) {
            Some(incident) => Ok(Some(incident.clone())),
            None => self.get_as(&incident_key(id), decode_incident),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.get_as(key, decode)
    }

    /// The value under `key`, read by `decode` (given the key, for its errors).
    fn get_as<T>(
        &self,
        key: &[u8],
        decode: impl FnOnce(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        self.db
            .get(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }
}

/// The writes of one group commit. Built by the pipeline, applied by [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    inner: Writes,
    /// Repeats of firing alerts, for the refresh log: at most one per alert, and none for an
    /// alert also written in full.
    refreshes: Vec<Refresh>,
    /// Alerts written in full: fingerprint, count and digest.
    written: Vec<(Fingerprint, u64, Option<Digest>)>,
    /// Deadlines set (true) or cleared (false), the last word for each: written at commit, one
    /// value per deadline ([`write_timers`]).
    timers: BTreeMap<(u64, Timer), bool>,
    /// New members of each incident: written at commit ([`write_members`]).
    members: BTreeMap<IncidentId, Vec<Fingerprint>>,
    /// The incidents written, kept decoded once the commit is durable ([`hot`]).
    incidents: Vec<Incident>,
    /// The incidents removed (retention), forgotten by [`hot`] once the commit is durable.
    removed_incidents: Vec<IncidentId>,
}

impl Batch {
    /// Whether committing the batch sets or clears a deadline: if not, the earliest
    /// ([`Store::next_deadline`]) stays what it was.
    pub fn moves_deadlines(&self) -> bool {
        !self.timers.is_empty()
    }

    /// Log a repeat of a firing alert (see [`refresh`]).
    pub fn refresh(&mut self, refresh: Refresh) {
        self.refreshes.push(refresh);
    }

    /// Writes the alert's record under the prefix of its status and removes it from the other
    /// (a removal of an absent key costs sled a lookup and writes nothing).
    pub fn put_alert(&mut self, record: &AlertRecord) {
        self.written
            .push((record.fingerprint, record.count, Digest::of(record)));
        let (firing, resolved) = (
            firing_key(record.fingerprint),
            alert_key(record.fingerprint),
        );
        let (to, from) = match record.status {
            Status::Firing => (firing, resolved),
            Status::Resolved => (resolved, firing),
        };
        self.inner.insert(to, record::encode(record));
        self.inner.remove(from);
    }

    /// Writes the incident and keeps the index of active incidents in step.
    pub fn put_incident(&mut self, incident: Incident) {
        self.inner.insert(
            incident_key(incident.id).as_slice(),
            incident_value::encode(&incident),
        );
        let open = [OPEN, &incident.id.0.to_be_bytes()].concat();
        if incident.is_active() {
            self.inner.insert(open, incident.tier.as_str().as_bytes());
        } else {
            self.inner.remove(open);
        }
        self.incidents.push(incident);
    }

    pub fn set_group(&mut self, key: &str, id: Option<IncidentId>) {
        match id {
            Some(id) => self.inner.insert(group_key(key), id.0.to_be_bytes()),
            None => self.inner.remove(group_key(key)),
        }
    }

    pub fn add_member(&mut self, id: IncidentId, fp: Fingerprint) {
        self.members.entry(id).or_default().push(fp);
    }

    pub fn set_timer(&mut self, at: DateTime<Utc>, timer: Timer, present: bool) {
        self.timers.insert((millis(at), timer), present);
    }

    pub fn put_outbox(&mut self, event: &OutboxEvent) {
        let key = [OUTBOX, &event.seq.to_be_bytes()].concat();
        self.inner.insert(key, encode(event));
        // Kept so that seqs never repeat once the outbox is trimmed empty.
        self.inner
            .insert(&b"meta/next_outbox"[..], (event.seq + 1).to_be_bytes());
    }

    pub fn remove_outbox(&mut self, seq: u64) {
        self.inner.remove([OUTBOX, &seq.to_be_bytes()].concat());
    }

    pub fn set_cursor(&mut self, sink: &str, seq: u64) {
        self.inner
            .insert([CURSOR, sink.as_bytes()].concat(), seq.to_be_bytes());
    }

    pub fn put_dead_letter(&mut self, letter: &DeadLetter) {
        let key = [DEAD_LETTER, &letter.id.to_be_bytes()].concat();
        self.inner.insert(key, encode(letter));
        // Kept so that ids never repeat once the old letters are gone (retention).
        self.inner
            .insert(META_NEXT_DEAD_LETTER, (letter.id + 1).to_be_bytes());
    }

    pub fn put_silence(&mut self, silence: &Silence) {
        self.inner
            .insert(silence_key(silence.id).as_slice(), encode(silence));
    }

    /// Alert `fp` is held by silence `id` (`present`), or no longer. `member_of` is the
    /// incident the alert was firing in when the silence took it: the alert stays its member,
    /// counted among its firing alerts, where an alert held on arrival (`None`) is in no
    /// incident. The difference decides what its resolution and the silence's end do.
    pub fn set_silenced(
        &mut self,
        id: SilenceId,
        fp: Fingerprint,
        present: bool,
        member_of: Option<IncidentId>,
    ) {
        let key = silenced_key(id, fp);
        match (present, member_of) {
            (true, None) => self.inner.insert(key, []),
            (true, Some(incident)) => self.inner.insert(key, incident.0.to_be_bytes()),
            (false, _) => self.inner.remove(key),
        }
    }

    pub fn set_next_incident_number(&mut self, n: u64) {
        self.inner.insert(META_NEXT_INCIDENT, n.to_be_bytes());
    }

    /// Remove a resolved incident (retention): its value, its index entry, and its `member/`
    /// values, whose keys the caller read ([`Store::member_keys`]). Its group's pointer is the
    /// caller's to clear, if it still points here.
    pub fn remove_incident(&mut self, id: IncidentId, member_keys: Vec<Vec<u8>>) {
        self.inner.remove(incident_key(id));
        self.inner.remove([OPEN, &id.0.to_be_bytes()].concat());
        for key in member_keys {
            self.inner.remove(key);
        }
        self.members.remove(&id);
        self.removed_incidents.push(id);
    }

    /// Remove an alert's record (retention), under either prefix.
    pub fn remove_alert(&mut self, fp: Fingerprint) {
        self.inner.remove(alert_key(fp));
        self.inner.remove(firing_key(fp));
        // Supersedes any refresh of it still logged (as a full write would) and its digest, so
        // that an alert of this fingerprint arriving later starts afresh.
        self.written.push((fp, u64::MAX, None));
    }

    /// Remove a silence (retention) and whatever it still lists as held (`held`, from
    /// [`Store::held_by`]).
    pub fn remove_silence(&mut self, id: SilenceId, held: &[Fingerprint]) {
        self.inner.remove(silence_key(id));
        for &fp in held {
            self.inner.remove(silenced_key(id, fp));
        }
    }

    pub fn remove_dead_letter(&mut self, id: u64) {
        self.inner.remove([DEAD_LETTER, &id.to_be_bytes()].concat());
    }
}

/// The prefix of an incident's `member/` values.
fn member_prefix(id: IncidentId) -> Vec<u8> {
    [MEMBER, &id.0.to_be_bytes()].concat()
}

fn silenced_key(id: SilenceId, fp: Fingerprint) -> Vec<u8> {
    [SILENCED, id.as_bytes(), &fp.0.to_be_bytes()].concat()
}

/// The incident a `silenced/` value names; empty (held on arrival, or written before such
/// values existed) names none.
fn member_of(value: &[u8]) -> Option<IncidentId> {
    (value.len() == 8).then(|| IncidentId(be_u64(value)))
}

fn alert_key(fp: Fingerprint) -> Vec<u8> {
    [ALERT, &fp.0.to_be_bytes()].concat()
}

fn firing_key(fp: Fingerprint) -> Vec<u8> {
    [FIRING, &fp.0.to_be_bytes()].concat()
}

/// Open the journal, apply again what it holds (the commits since the last checkpoint, which
/// sled may have lost), make that durable in sled, and empty it. `first_seq`: the seq the
/// journal's generation started with, as sled has it; `unmarked`: the store has no
/// [`STORE_MARKER`] yet, so the checkpoint is made (and writes it) even with nothing to apply.
fn replay_journal(
    path: &Path,
    db: &sled::Db,
    log: &File,
    checkpoint_bytes: u64,
    first_seq: Option<u64>,
    unmarked: bool,
) -> Result<Journal> {
    // A marked store always has its journal (made with the marker, rewritten in place, never
    // removed): without it, whatever it held since the last checkpoint is gone unseen.
    let journal_path = path.join(journal::FILE_NAME);
    if !unmarked && !journal_path.exists() {
        return Err(StoreError::JournalMissing { path: journal_path });
    }
    let (mut journal, replay) = Journal::open(path, checkpoint_bytes, first_seq)
        .map_err(|e| journal_failed(&path.join(journal::FILE_NAME), e))?;
    match replay.end() {
        journal::End::Clean => {}
        journal::End::Torn { at, seq } => tracing::warn!(
            path = %journal.path().display(),
            at,
            commit = seq,
            "the journal ends in a commit cut short by a crash (never acknowledged): ignored"
        ),
        journal::End::Damaged {
            at,
            expected,
            found_at,
            found_seq,
        } => {
            return Err(StoreError::JournalDamaged {
                path: journal.path().to_path_buf(),
                at,
                expected,
                found_at,
                found_seq,
            })
        }
    }
    if replay.len() > 0 {
        replay.apply(db).map_err(|e| applying(journal.path(), e))?;
        tracing::info!(
            records = replay.len(),
            "applied the journal's commits since the last checkpoint again"
        );
    }
    // Emptied even with nothing to apply: what is left (a torn first record) must not be read
    // as the continuation of the records written next.
    if !replay.file_is_empty() || first_seq != Some(journal.next_seq()) || unmarked {
        flush_generation(db, log, &journal)?;
    }
    if !replay.file_is_empty() {
        journal
            .clear()
            .map_err(|e| journal_failed(journal.path(), e))?;
    }
    Ok(journal)
}

/// A checkpoint's flush: what is applied, and the seq the journal's next generation starts
/// with, made durable in sled, before the journal starts again (or is emptied).
fn flush_generation(db: &sled::Db, log: &File, journal: &Journal) -> Result<()> {
    db.insert(META_JOURNAL_SEQ, &journal.next_seq().to_be_bytes())?;
    flush_durably(db, log)?;
    match journal.path().parent() {
        Some(dir) => mark(dir, journal.next_seq()),
        None => Ok(()),
    }
}

/// Flush sled and fdatasync its file: sled 0.34's `flush` ends in `sync_file_range`, which
/// survives a process crash but not a power cut.
fn flush_durably(db: &sled::Db, log: &File) -> Result<()> {
    db.flush()?;
    log.sync_data().map_err(StoreError::Sync)
}

/// How long closing a store waits for sled to release the directory ([`await_unlocked`]).
const RELEASE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Return once nothing holds the lock on `lock_path` (sled's `db` file), or after
/// [`RELEASE_WITHIN`], saying so. sled releases it only when the last reference to the database
/// goes, and a task of its I/O pool may hold one for a while after the `Db` is dropped (a
/// regression: reopening a store at once failed "could not acquire lock" on a loaded machine).
/// Nothing tells when, so this tries the lock itself, backing off.
fn await_unlocked(lock_path: &Path) {
    let Ok(file) = File::open(lock_path) else {
        return;
    };
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(50);
    loop {
        // Taken means released; dropping `file` lets it go again.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && started.elapsed() < RELEASE_WITHIN => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!(
                    path = %lock_path.display(),
                    error = %e,
                    "closed the store, but its lock is still held"
                );
                return;
            }
        }
    }
}

/// The open database, or the reason it is down, for a writer holding the state lock.
fn open_handle(state: &mut std::result::Result<Handle, String>) -> Result<&mut Handle> {
    state
        .as_mut()
        .map_err(|reason| StoreError::Unavailable(reason.clone()))
}

/// Write [`STORE_MARKER`] in `path` with the journal seq `checkpointed`, durably and whole (a
/// new file renamed over the old).
fn mark(path: &Path, checkpointed: u64) -> Result<()> {
    let marker = path.join(STORE_MARKER);
    let new = path.join(format!("{STORE_MARKER}.new"));
    let failed = |source| StoreError::Journal {
        path: marker.clone(),
        source,
    };
    let file = File::create(&new).map_err(failed)?;
    use std::io::Write;
    (&file)
        .write_all(format!("{MARKER_TEXT}\n{checkpointed}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&new, &marker))
        .and_then(|()| File::open(path)?.sync_all())
        .map_err(failed)
}

/// The journal seq [`STORE_MARKER`] in `path` holds, if it is there (0 for a marker without one).
fn read_marker(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path.join(STORE_MARKER)).ok()?;
    Some(
        text.lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0),
    )
}

/// Remove the snapshot files sled left unfinished in `path` (see [`Handle::open`]); true when
/// there was one to remove.
fn remove_unfinished_snapshots(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("snap.") && name.ends_with(".generating")) {
            continue;
        }
        let file = entry.path();
        let bytes = entry.metadata().map_or(0, |m| m.len());
        match std::fs::remove_file(&file) {
            Ok(()) => {
                tracing::warn!(file = %file.display(), bytes, "removed a snapshot sled left unfinished (a failed write or a crash); opening the store again");
                removed = true;
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot remove a snapshot sled left unfinished")
            }
        }
    }
    if removed {
        if let Err(e) = File::open(path).and_then(|dir| dir.sync_all()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot sync the data directory");
        }
    }
    removed
}

/// sled could not open (or read, while opening) the store at `path`: why, with what to do.
fn opening(path: &Path, source: sled::Error) -> StoreError {
    let hint = match &source {
        sled::Error::Io(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock") =>
        {
            " (is another triaged running on this data directory?)"
        }
        sled::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            " (check the ownership and permissions of the data directory)"
        }
        sled::Error::Corruption { .. } => {
            " (the store is damaged: move the directory aside and restore a backup; triaged never resets it by itself)"
        }
        _ => "",
    };
    StoreError::Open {
        path: path.to_path_buf(),
        source,
        hint,
    }
}

/// The journal at `path` could not be read or written.
fn journal_failed(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Journal {
        path: path.to_path_buf(),
        source,
    }
}

fn applying(path: &Path, e: journal::ApplyError) -> StoreError {
    match e {
        journal::ApplyError::Sled(e) => StoreError::Sled(e),
        source => StoreError::Replay {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Build the `firing/` index of a store written before it existed: one pass over `alert/`, at
/// open, committed atomically with the marker that it is done, so it never runs twice.
fn build_firing_index(db: &sled::Db) -> Result<()> {
    if db.get(META_FIRING_INDEX)?.is_some() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let mut firing = 0u64;
    for kv in db.scan_prefix(ALERT) {
        let (key, value) = kv?;
        let record = decode_alert(&key, &value)?;
        if record.status == Status::Firing {
            batch.insert(firing_key(record.fingerprint), &[]);
            firing += 1;
        }
    }
    batch.insert(META_FIRING_INDEX, &[]);
    db.apply_batch(batch)?;
    db.flush()?;
    if firing > 0 {
        tracing::info!(firing, "built the index of firing alerts");
    }
    Ok(())
}

fn incident_key(id: IncidentId) -> Vec<u8> {
    [INCIDENT, &id.0.to_be_bytes()].concat()
}

fn group_key(key: &str) -> Vec<u8> {
    [GROUP, key.as_bytes()].concat()
}

fn silence_key(id: SilenceId) -> Vec<u8> {
    [SILENCE, id.as_bytes()].concat()
}

/// Version byte of a `member/` value.
const MEMBERS_VERSION: u8 = 1;

/// Write a commit's new memberships into `out`, as values `member/<id><seq>` of up to 1,024
/// fingerprints (a seq from sled's id generator, as in [`add_values`]). An incident whose latest
/// value the store wrote since it opened and that still has room for these members
/// ([`hot::OPEN_MEMBERS`]) gets that value rewritten with them added; otherwise they start new
/// values. At one new alert per commit, a value per commit was a new sled key per alert.
/// Membership is never taken back, so a value only ever grows; for why values and not a key
/// per member, see [`write_timers`]. Keys of the older layout (`member/<id><fp>`, empty) are
/// still read.
///
/// Returns, per incident, its latest value if it still has room (for [`hot::Hot::committed`]).
fn write_members(
    db: &sled::Db,
    out: &mut Writes,
    members: &BTreeMap<IncidentId, Vec<Fingerprint>>,
    hot: &hot::Hot,
) -> Result<Vec<(IncidentId, Option<hot::OpenMembers>)>> {
    let mut open = Vec::with_capacity(members.len());
    for (&id, fps) in members {
        let room = |fps: &[Fingerprint]| fps.len() < hot::OPEN_MEMBERS;
        let latest = match hot.open_members(id) {
            Some(latest) if latest.fps.len() + fps.len() <= hot::OPEN_MEMBERS => {
                let mut all = latest.fps.clone();
                all.extend_from_slice(fps);
                out.insert(&latest.key, encode_members(&all));
                room(&all).then(|| hot::OpenMembers {
                    key: latest.key.clone(),
                    fps: all,
                })
            }
            _ => {
                let prefix = member_prefix(id);
                add_values(db, out, &prefix, fps, encode_members)?
                    .filter(|(_, chunk)| room(chunk))
                    .map(|(key, chunk)| hot::OpenMembers {
                        key,
                        fps: chunk.to_vec(),
                    })
            }
        };
        open.push((id, latest));
    }
    Ok(open)
}

fn encode_members(fps: &[Fingerprint]) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + 8 * fps.len());
    value.push(MEMBERS_VERSION);
    for fp in fps {
        value.extend_from_slice(&fp.0.to_be_bytes());
    }
    value
}

/// Add `items` under `prefix` as new values of at most [`MAX_PER_VALUE`] items each, encoded by
/// `encode` and keyed `<prefix><seq>` with a seq from sled's id generator, which never repeats,
/// even across crashes, so a new value never overwrites a stored one. Returns the last value's
/// key and items (none when `items` is empty).
fn add_values<'a, T>(
    db: &sled::Db,
    out: &mut Writes,
    prefix: &[u8],
    items: &'a [T],
    encode: impl Fn(&[T]) -> Vec<u8>,
) -> Result<Option<(Vec<u8>, &'a [T])>> {
    let mut last = None;
    for chunk in items.chunks(MAX_PER_VALUE) {
        let key = [prefix, &db.generate_id()?.to_be_bytes()].concat();
        out.insert(&key, encode(chunk));
        last = Some((key, chunk));
    }
    Ok(last)
}

/// Version byte of a `timer/` value.
const TIMERS_VERSION: u8 = 1;
/// Most timers in one `timer/` value, or fingerprints in one `member/` value, so that a commit
/// that sets thousands of deadlines for the same millisecond (a storm of new alerts with the
/// same `endsAt`) or adds thousands of members to one incident still writes values of a bounded
/// size.
const MAX_PER_VALUE: usize = 1024;

/// Write a commit's deadline changes into `out`: the timers set for one deadline become one new
/// value, `timer/<deadline ms><seq>` ([`add_values`]), and a cleared timer is
/// taken out of the values stored for its deadline, read here (the writer is the only one that
/// commits, and it holds the store's write lock).
///
/// Why values and not one empty key per timer, as before: every new alert arms an expiry, and
/// sled's cost grows with keys far more than with bytes. `examples/sled_keys` measures about
/// 20 MB of peak memory and 0.9 s of insert time per 100,000 index keys, whether their keys are
/// spread or clustered. Alerts that arrive together mostly share their `endsAt`, so their
/// deadlines now cost one key per commit. Keys of the older layout (`<kind u8><id>` after the
/// deadline, empty value) are still read and cleared.
fn write_timers(
    db: &sled::Db,
    out: &mut Writes,
    changes: &BTreeMap<(u64, Timer), bool>,
) -> Result<()> {
    let mut by_deadline: BTreeMap<u64, (Vec<Timer>, std::collections::HashSet<Timer>)> =
        BTreeMap::new();
    for (&(ms, timer), &present) in changes {
        let (set, cleared) = by_deadline.entry(ms).or_default();
        if present {
            set.push(timer);
        } else {
            cleared.insert(timer);
        }
    }
    for (ms, (set, cleared)) in by_deadline {
        let prefix = [TIMER, &ms.to_be_bytes()].concat();
        if !cleared.is_empty() {
            for kv in db.scan_prefix(&prefix) {
                let (key, value) = kv?;
                let stored = decode_timers(&key, &value)?;
                let kept: Vec<Timer> = stored
                    .iter()
                    .filter(|t| !cleared.contains(t))
                    .copied()
                    .collect();
                if kept.is_empty() {
                    out.remove(key);
                } else if kept.len() < stored.len() {
                    out.insert(key, encode_timers(&kept));
                }
            }
        }
        add_values(db, out, &prefix, &set, encode_timers)?;
    }
    Ok(())
}

fn encode_timers(timers: &[Timer]) -> Vec<u8> {
    let mut value = vec![TIMERS_VERSION];
    for timer in timers {
        value.extend_from_slice(&timer.encode());
    }
    value
}

/// The timers of one `timer/` key: its value's, or, for a key of the older layout (empty
/// value), the one its key names.
fn decode_timers(key: &[u8], value: &[u8]) -> Result<Vec<Timer>> {
    let bad = |why: &str| corrupt(key, why.to_string());
    let Some((&version, mut rest)) = value.split_first() else {
        let timer =
            Timer::decode(&key[TIMER.len() + 8..]).ok_or_else(|| bad("unknown timer kind"))?;
        return Ok(vec![timer]);
    };
    if version != TIMERS_VERSION {
        return Err(bad("unknown timer value version"));
    }
    let mut timers = Vec::new();
    while !rest.is_empty() {
        let (timer, after) =
            Timer::read(rest).ok_or_else(|| bad("a timer entry cut short or of unknown kind"))?;
        timers.push(timer);
        rest = after;
    }
    Ok(timers)
}

/// Milliseconds since the epoch, clamped at 0 so that keys sort by time.
fn millis(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn from_millis(ms: u64) -> DateTime<Utc> {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first key after every key with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    // Serializing our own plain structs into a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("serializing a stored value");
    out
}

fn corrupt(key: &[u8], why: String) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why,
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    let corrupt = |why: String| corrupt(key, why);
    match bytes.split_first() {
        Some((&VALUE_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!("unknown value version {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// An alert record in either form: binary ([`record`]), or JSON as written before.
fn decode_alert(key: &[u8], bytes: &[u8]) -> Result<AlertRecord> {
    match bytes.split_first() {
        Some((&record::VERSION, body)) => record::decode(body).map_err(|why| corrupt(key, why)),
        _ => decode(key, bytes),
    }
}

/// An incident in either form: binary ([`incident_value`]), or JSON as written before. One an
/// older triaged de-escalated from L4 without clearing its vendor reads as one de-escalated now
/// ([`Incident::end_handover_left_behind`]).
fn decode_incident(key: &[u8], bytes: &[u8]) -> Result<Incident> {
    let mut incident: Incident = match bytes
        .split_first()
        .and_then(|(&version, body)| incident_value::decode_version(version, body))
    {
        Some(decoded) => decoded.map_err(|why| corrupt(key, why))?,
        None => decode(key, bytes)?,
    };
    incident.end_handover_left_behind();
    Ok(incident)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn incident(n: u64, tier: Tier) -> Incident {
        Incident::open(
            IncidentId(n),
            tier,
            Severity::Warning,
            format!("alertname=\"A{n}\""),
            Default::default(),
            None,
            None,
            Utc::now(),
        )
    }

    #[test]
    fn a_commit_survives_reopening_and_indexes_follow_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            for n in 1..=5 {
                batch.put_incident(incident(n, if n % 2 == 0 { Tier::L2 } else { Tier::L1 }));
            }
            let mut resolved = incident(3, Tier::L1);
            resolved.resolve("a", None, Utc::now()).unwrap();
            batch.put_incident(resolved);
            batch.set_group("g", Some(IncidentId(5)));
            batch.add_member(IncidentId(5), Fingerprint(9));
            batch.add_member(IncidentId(5), Fingerprint(2));
            batch.set_next_incident_number(6);
            store.commit(batch, || ()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.next_incident_number().unwrap(), 6);
        assert_eq!(store.group("g").unwrap(), Some(IncidentId(5)));
        assert_eq!(
            store.members(IncidentId(5)).unwrap(),
            [Fingerprint(2), Fingerprint(9)]
        );
        let active: Vec<u64> = store
            .active_incidents()
            .unwrap()
            .iter()
            .map(|i| i.id.0)
            .collect();
        assert_eq!(active, [1, 2, 4, 5]);

        assert_eq!(
            store.active_by_tier().unwrap(),
            BTreeMap::from([(Tier::L1, 2), (Tier::L2, 2)])
        );

        let all = IncidentFilter::default();
        let (page, next) = store.list_incidents(&all, None, 2).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [5, 4]);
        assert_eq!(next, Some(IncidentId(4)));
        let (page, next) = store.list_incidents(&all, next, 2).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [3, 2]);
        let (page, next) = store.list_incidents(&all, next, 2).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [1]);
        assert_eq!(next, None);

        let open_l1 = IncidentFilter {
            state: Some(State::Open),
            tier: Some(Tier::L1),
            ..Default::default()
        };
        let (page, _) = store.list_incidents(&open_l1, None, 10).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [5, 1]);
        let resolved = IncidentFilter {
            state: Some(State::Resolved),
            ..Default::default()
        };
        let (page, _) = store.list_incidents(&resolved, None, 10).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [3]);
        // Active: open and acknowledged, never resolved; paged like the rest.
        let active = IncidentFilter {
            active: true,
            ..Default::default()
        };
        let (page, next) = store.list_incidents(&active, None, 2).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [5, 4]);
        let (page, _) = store.list_incidents(&active, next, 10).unwrap();
        assert_eq!(page.iter().map(|i| i.id.0).collect::<Vec<_>>(), [2, 1]);
    }

    /// The open index carries each incident's tier, following escalations and resolutions; an
    /// entry an older triaged left without its tier is counted from the incident.
    #[test]
    fn active_incidents_are_counted_by_tier_from_the_open_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for n in 1..=4 {
            batch.put_incident(incident(n, Tier::L1));
        }
        store.commit(batch, || ()).unwrap();
        let mut batch = Batch::default();
        let mut escalated = incident(1, Tier::L1);
        escalated
            .escalate("a", Some(Tier::L3), "manual", Utc::now())
            .unwrap();
        batch.put_incident(escalated);
        let mut resolved = incident(2, Tier::L1);
        resolved.resolve("a", None, Utc::now()).unwrap();
        batch.put_incident(resolved);
        store.commit(batch, || ()).unwrap();
        let counts = BTreeMap::from([(Tier::L1, 2), (Tier::L3, 1)]);
        assert_eq!(store.active_by_tier().unwrap(), counts);
        // As an older triaged wrote it: no tier in the index.
        store
            .view()
            .unwrap()
            .db
            .insert([OPEN, &4u64.to_be_bytes()].concat(), &[])
            .unwrap();
        assert_eq!(store.active_by_tier().unwrap(), counts);
        assert_eq!(
            store
                .view()
                .unwrap()
                .db
                .get([OPEN, &1u64.to_be_bytes()].concat())
                .unwrap()
                .unwrap(),
            b"L3"[..]
        );
    }

    fn alert(fp: u64, status: Status) -> AlertRecord {
        AlertRecord::sample(
            Fingerprint(fp),
            status,
            crate::alert::labels_from(&[("alertname", "A")]),
        )
    }

    fn refresh_of(record: &AlertRecord, secs: i64) -> Refresh {
        let at = Utc.timestamp_opt(secs, 0).unwrap();
        Refresh {
            fingerprint: record.fingerprint,
            count: record.count + 1,
            last_seen: at,
            ends_at: Some(at + chrono::Duration::seconds(240)),
            expires_at: Some(at + chrono::Duration::seconds(240)),
        }
    }

    fn refresh_keys(store: &Store) -> usize {
        let view = store.view().unwrap();
        view.db.scan_prefix(refresh::PREFIX).count()
    }

    #[test]
    fn refreshes_are_read_merged_survive_reopening_and_go_once_written_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let record = alert(5, Status::Firing);
        let other = alert(6, Status::Firing);
        let r1 = refresh_of(&record, 1_800_000_000);
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            batch.put_alert(&record);
            batch.put_alert(&other);
            store.commit(batch, || {}).unwrap();
            assert_eq!(
                store.repeat_view(record.fingerprint).unwrap(),
                Some((Digest::of(&record).unwrap(), None))
            );
            let mut batch = Batch::default();
            batch.refresh(r1);
            batch.refresh(refresh_of(&other, 1_800_000_000));
            store.commit(batch, || {}).unwrap();
            let read = store.alert(record.fingerprint).unwrap().unwrap();
            assert_eq!((read.count, read.last_seen), (r1.count, r1.last_seen));
            assert_eq!(read.expires_at, r1.expires_at);
            // The record on disk is untouched: the repeat is in the log.
            let view = store.view().unwrap();
            let raw = view
                .db
                .get(firing_key(record.fingerprint))
                .unwrap()
                .unwrap();
            assert_eq!(decode_alert(b"firing/", &raw).unwrap(), record);
        }
        // Reopened (as after a crash): the log is read back.
        let store = Store::open(dir.path()).unwrap();
        let read = store.alert(record.fingerprint).unwrap().unwrap();
        assert_eq!((read.count, read.ends_at), (r1.count, r1.ends_at));
        assert_eq!(firing(&store), vec![5, 6]);
        assert_eq!(
            store
                .firing_alerts()
                .unwrap()
                .iter()
                .map(|r| r.count)
                .collect::<Vec<_>>(),
            vec![2, 2],
            "the listing sees the refreshes too"
        );
        assert_eq!(refresh_keys(&store), 1);

        // Both written in full (one resolved): the log value is dead, and the next commit
        // removes it.
        let mut resolved = read.clone();
        resolved.status = Status::Resolved;
        let mut batch = Batch::default();
        batch.put_alert(&resolved);
        batch.put_alert(&store.alert(Fingerprint(6)).unwrap().unwrap());
        store.commit(batch, || {}).unwrap();
        assert_eq!(store.repeat_view(record.fingerprint).unwrap(), None);
        assert_eq!(refresh_keys(&store), 1);
        store.commit(Batch::default(), || {}).unwrap();
        assert_eq!(refresh_keys(&store), 0);
        let read = store.alert(record.fingerprint).unwrap().unwrap();
        assert_eq!((read.status, read.count), (Status::Resolved, r1.count));
    }

    #[test]
    fn a_stale_log_value_left_by_a_crash_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let record = alert(8, Status::Firing);
        let r = refresh_of(&record, 1_800_000_000);
        let mut written = record.clone();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            batch.put_alert(&record);
            batch.refresh(r);
            store.commit(batch, || {}).unwrap();
            // Resolved in full; the process dies before the dead value is removed.
            r.apply(&mut written);
            written.status = Status::Resolved;
            written.count += 1;
            let mut batch = Batch::default();
            batch.put_alert(&written);
            store.commit(batch, || {}).unwrap();
            assert_eq!(refresh_keys(&store), 1);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.alert(record.fingerprint).unwrap().unwrap(), written);
        assert_eq!(store.firing_alerts().unwrap(), vec![]);
    }

    #[test]
    fn refreshes_fall_due_for_folding_once_the_log_is_too_big() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = alert(9, Status::Firing);
        let mut batch = Batch::default();
        batch.refresh(refresh_of(&record, 1_800_000_000));
        store.commit(batch, || {}).unwrap();
        assert_eq!(store.refreshes_due(10).unwrap(), vec![]);
        // Past the size bound, the oldest value's live entries are due, oldest value first.
        let mut batch = Batch::default();
        for fp in 100..(100 + refresh::MAX_LOGGED as u64) {
            batch.refresh(refresh_of(&alert(fp, Status::Firing), 1_800_000_000));
        }
        store.commit(batch, || {}).unwrap();
        assert_eq!(store.refreshes_due(10).unwrap(), vec![Fingerprint(9)]);
    }

    fn firing(store: &Store) -> Vec<u64> {
        store
            .firing_alerts()
            .unwrap()
            .iter()
            .map(|r| r.fingerprint.0)
            .collect()
    }

    /// The raw values under `firing/<fp>` and `alert/<fp>`.
    fn raw_record(store: &Store, fp: u64) -> (Option<sled::IVec>, Option<sled::IVec>) {
        let view = store.view().unwrap();
        let get = |key: Vec<u8>| view.db.get(key).unwrap();
        (
            get(firing_key(Fingerprint(fp))),
            get(alert_key(Fingerprint(fp))),
        )
    }

    #[test]
    fn each_record_is_one_key_under_the_prefix_of_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut record = alert(4, Status::Firing);
        for status in [Status::Firing, Status::Resolved, Status::Firing] {
            record.status = status;
            record.count += 1;
            let mut batch = Batch::default();
            batch.put_alert(&record);
            store.commit(batch, || ()).unwrap();
            let (firing, resolved) = raw_record(&store, 4);
            let (here, gone) = match status {
                Status::Firing => (firing, resolved),
                Status::Resolved => (resolved, firing),
            };
            assert_eq!(gone, None, "{status:?}: the other prefix is emptied");
            assert_eq!(decode_alert(b"", &here.unwrap()).unwrap(), record);
            assert_eq!(store.alert(Fingerprint(4)).unwrap().as_ref(), Some(&record));
        }
        assert_eq!(store.alert(Fingerprint(5)).unwrap(), None);
    }

    /// The layout before records moved into `firing/`: every record in `alert/`, and an empty
    /// `firing/` key per firing alert. It is read as it is, and moved by the next write.
    #[test]
    fn records_of_the_index_layout_are_read_and_moved_when_next_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (firing, resolved) = (alert(1, Status::Firing), alert(2, Status::Resolved));
        {
            let view = store.view().unwrap();
            for record in [&firing, &resolved] {
                view.db
                    .insert(alert_key(record.fingerprint), record::encode(record))
                    .unwrap();
            }
            view.db.insert(firing_key(firing.fingerprint), &[]).unwrap();
        }
        assert_eq!(store.alert(Fingerprint(1)).unwrap().as_ref(), Some(&firing));
        assert_eq!(
            store.alert(Fingerprint(2)).unwrap().as_ref(),
            Some(&resolved)
        );
        assert_eq!(
            store.firing_alerts().unwrap(),
            std::slice::from_ref(&firing)
        );

        let mut again = firing.clone();
        again.count += 1;
        let mut batch = Batch::default();
        batch.put_alert(&again);
        store.commit(batch, || ()).unwrap();
        let (in_firing, in_alert) = raw_record(&store, 1);
        assert_eq!(in_alert, None);
        assert_eq!(decode_alert(b"", &in_firing.unwrap()).unwrap(), again);
        assert_eq!(store.firing_alerts().unwrap(), [again]);
    }

    /// The labels-only scan a silence makes finds what the whole records would: binary
    /// records, JSON ones and the older layout's empty `firing/` entries alike.
    #[test]
    fn firing_matching_reads_labels_of_every_record_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let with = |fp: u64, name: &str| {
            let mut record = alert(fp, Status::Firing);
            record.labels = crate::alert::labels_from(&[("alertname", name), ("x", "y")]);
            record
        };
        let (binary, json, older) = (with(1, "Disk"), with(2, "Disk"), with(3, "Disk"));
        let mut batch = Batch::default();
        batch.put_alert(&binary);
        batch.put_alert(&with(4, "Other"));
        store.commit(batch, || ()).unwrap();
        {
            let view = store.view().unwrap();
            view.db
                .insert(firing_key(json.fingerprint), encode(&json))
                .unwrap();
            view.db
                .insert(alert_key(older.fingerprint), record::encode(&older))
                .unwrap();
            view.db.insert(firing_key(older.fingerprint), &[]).unwrap();
        }
        let disk = |labels: &Labels| labels.get("alertname").map(String::as_str) == Some("Disk");
        assert_eq!(
            store.firing_matching(disk).unwrap(),
            [Fingerprint(1), Fingerprint(2), Fingerprint(3)]
        );
        assert_eq!(store.firing_matching(|_| true).unwrap().len(), 4);
    }

    #[test]
    fn firing_alerts_follow_each_alerts_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.put_alert(&alert(3, Status::Firing));
        batch.put_alert(&alert(1, Status::Firing));
        batch.put_alert(&alert(2, Status::Resolved));
        store.commit(batch, || ()).unwrap();
        assert_eq!(firing(&store), [1, 3]);
        let mut batch = Batch::default();
        batch.put_alert(&alert(1, Status::Resolved));
        batch.put_alert(&alert(2, Status::Firing));
        store.commit(batch, || ()).unwrap();
        assert_eq!(firing(&store), [2, 3]);
        // More than one chunk's worth, every one read once.
        let mut batch = Batch::default();
        for fp in 10..1300 {
            batch.put_alert(&alert(fp, Status::Firing));
        }
        store.commit(batch, || ()).unwrap();
        let expected: Vec<u64> = [2, 3].into_iter().chain(10..1300).collect();
        assert_eq!(firing(&store), expected);
    }

    /// A store written before the index existed gets it built when opened.
    #[test]
    fn a_store_of_json_records_without_the_firing_index_is_read_and_gets_it_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            alert(5, Status::Firing),
            alert(6, Status::Resolved),
            alert(7, Status::Firing),
        ];
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            for record in &records {
                batch.put_alert(record);
            }
            store.commit(batch, || ()).unwrap();
            // Back to what an older triaged left: JSON records (value version 1), no index,
            // no marker.
            for record in &records {
                let json = encode(record);
                assert_eq!(json[0], 1);
                let key = alert_key(record.fingerprint);
                store.view().unwrap().db.insert(key, json).unwrap();
            }
            for key in store.view().unwrap().db.scan_prefix(FIRING).keys() {
                store.view().unwrap().db.remove(key.unwrap()).unwrap();
            }
            store.view().unwrap().db.remove(META_FIRING_INDEX).unwrap();
            store.view().unwrap().db.flush().unwrap();
            assert_eq!(firing(&store), Vec::<u64>::new());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(firing(&store), [5, 7]);
        for record in &records {
            assert_eq!(
                store.alert(record.fingerprint).unwrap().as_ref(),
                Some(record)
            );
        }
    }

    /// Incidents an older triaged wrote as JSON (value version 1) are read, and written back
    /// binary when they next change.
    #[test]
    fn incidents_written_as_json_are_read_and_the_next_write_is_binary() {
        let dir = tempfile::tempdir().unwrap();
        let mut escalated = incident(2, Tier::L1);
        escalated
            .escalate("ana", Some(Tier::L3), "needs the DBA", Utc::now())
            .unwrap();
        let older = [incident(1, Tier::L2), escalated];
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            for i in &older {
                batch.put_incident(i.clone());
            }
            store.commit(batch, || ()).unwrap();
            for i in &older {
                let json = encode(i);
                assert_eq!(json[0], VALUE_VERSION);
                store
                    .view()
                    .unwrap()
                    .db
                    .insert(incident_key(i.id), json)
                    .unwrap();
            }
            store.view().unwrap().db.flush().unwrap();
        }
        // Reopened, so that nothing is kept decoded and both come from sled.
        let store = Store::open(dir.path()).unwrap();
        for i in &older {
            assert_eq!(store.incident(i.id).unwrap().as_ref(), Some(i));
        }
        assert_eq!(store.active_incidents().unwrap(), older);
        let mut acked = older[0].clone();
        acked.acknowledge("ana", None, Utc::now()).unwrap();
        let mut batch = Batch::default();
        batch.put_incident(acked.clone());
        store.commit(batch, || ()).unwrap();
        let key = incident_key(acked.id);
        let bytes = store.view().unwrap().db.get(&key).unwrap().unwrap();
        assert_eq!(bytes[0], incident_value::VERSION);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.incident(acked.id).unwrap(), Some(acked));
    }

    /// An incident an older triaged de-escalated from L4 kept its vendor on the incident, and
    /// its handover entry named none: read (from JSON or binary), it is as a de-escalation now
    /// leaves it, the vendor on the handover's entry only.
    #[test]
    fn a_vendor_an_older_triaged_left_below_l4_moves_to_the_handover_entry() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mut now_de_escalated = incident(1, Tier::L3);
        now_de_escalated
            .hand_over("bob", "Acme".into(), Some("CASE-42".into()), "fault", now)
            .unwrap();
        now_de_escalated
            .deescalate("carol", Some(Tier::L1), "config", now)
            .unwrap();
        let mut left_behind = now_de_escalated.clone();
        left_behind.vendor = Some("Acme".into());
        left_behind.vendor_ref = Some("CASE-42".into());
        for e in &mut left_behind.timeline {
            (e.vendor, e.vendor_ref) = (None, None);
        }
        let binary = incident_value::encode(&left_behind);
        assert_eq!(
            binary[0],
            incident_value::VERSION,
            "the bytes before version 4"
        );
        let mut as_json = left_behind.clone();
        as_json.id = IncidentId(2);
        let mut expected_json = now_de_escalated.clone();
        expected_json.id = IncidentId(2);
        {
            let store = Store::open(dir.path()).unwrap();
            let db = &store.view().unwrap().db;
            db.insert(incident_key(IncidentId(1)), binary).unwrap();
            db.insert(incident_key(IncidentId(2)), encode(&as_json))
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.incident(IncidentId(1)).unwrap(),
            Some(now_de_escalated)
        );
        assert_eq!(store.incident(IncidentId(2)).unwrap(), Some(expected_json));
    }

    /// Opening says whether a store was there: a new one in a directory made for it or found
    /// empty, or the one that was there.
    #[test]
    fn opening_says_whether_the_store_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        let store = Store::open(&missing).unwrap();
        assert_eq!(store.opened(), Some(Opened::Created { dir_existed: false }));
        drop(store);
        let store = Store::open(&missing).unwrap();
        assert_eq!(store.opened(), Some(Opened::Existing));
        drop(store);
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let store = Store::open(&empty).unwrap();
        assert_eq!(store.opened(), Some(Opened::Created { dir_existed: true }));
        let down = Store::down(&empty, 1 << 20, 1 << 20, "full".into());
        assert_eq!(down.opened(), None);
    }

    /// A damaged incident is an error that names its key, not a panic or a wrong incident.
    #[test]
    fn a_damaged_incident_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = incident_key(IncidentId(3));
        let mut bytes = incident_value::encode(&incident(3, Tier::L1));
        bytes.truncate(20);
        store.view().unwrap().db.insert(&key, bytes).unwrap();
        match store.incident(IncidentId(3)) {
            Err(StoreError::Corrupt { key, why }) => {
                assert!(key.starts_with("incident/"), "{key}");
                assert!(
                    why.starts_with("truncated") || why.ends_with("bytes left"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusing_disk_is_told_in_the_operating_systems_words() {
        let full = std::io::Error::from_raw_os_error(28);
        let as_sled_keeps_it = std::io::Error::new(full.kind(), format!("{full:?}"));
        for e in [full, as_sled_keeps_it] {
            let err = StoreError::Sled(sled::Error::Io(e));
            assert_eq!(err.reason(), "No space left on device (os error 28)");
            assert!(err.is_disk_refusing_writes());
        }
        let other = StoreError::Corrupt {
            key: "k".into(),
            why: "w".into(),
        };
        assert!(!other.is_disk_refusing_writes());
        assert!(!other.is_io_failure());
        assert_eq!(other.reason(), "corrupt value under k: w");
        // An immutable file (EPERM) or an I/O error is no refusing disk, but an I/O failure all
        // the same, which sled then answers every call with: the writer closes the store on it.
        for code in [1, 5] {
            let e = std::io::Error::from_raw_os_error(code);
            let err = StoreError::Sled(sled::Error::Io(std::io::Error::new(
                e.kind(),
                format!("{e:?}"),
            )));
            assert!(!err.is_disk_refusing_writes(), "{err}");
            assert!(err.is_io_failure(), "{err}");
        }
    }

    #[test]
    fn timers_come_back_in_deadline_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let mut batch = Batch::default();
        let silence = SilenceId::from_u128(7);
        batch.set_timer(
            t0 + chrono::Duration::seconds(20),
            Timer::AckTimeout(IncidentId(1)),
            true,
        );
        batch.set_timer(
            t0 + chrono::Duration::seconds(10),
            Timer::AlertExpiry(Fingerprint(2)),
            true,
        );
        batch.set_timer(
            t0 + chrono::Duration::seconds(30),
            Timer::AlertExpiry(Fingerprint(3)),
            true,
        );
        batch.set_timer(
            t0 + chrono::Duration::seconds(20),
            Timer::SilenceEnd(silence),
            true,
        );
        store.commit(batch, || ()).unwrap();
        assert_eq!(
            store.next_deadline().unwrap(),
            Some(t0 + chrono::Duration::seconds(10))
        );
        let due = store
            .due_timers(t0 + chrono::Duration::seconds(20), 10)
            .unwrap();
        assert_eq!(
            due.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [
                Timer::AlertExpiry(Fingerprint(2)),
                Timer::AckTimeout(IncidentId(1)),
                Timer::SilenceEnd(silence)
            ]
        );
        let mut batch = Batch::default();
        batch.set_timer(
            t0 + chrono::Duration::seconds(10),
            Timer::AlertExpiry(Fingerprint(2)),
            false,
        );
        store.commit(batch, || ()).unwrap();
        assert_eq!(
            store.next_deadline().unwrap(),
            Some(t0 + chrono::Duration::seconds(20))
        );
    }

    #[test]
    fn members_added_together_share_a_key_per_thousand_and_older_keys_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = IncidentId(4);
        // What an older triaged wrote: one empty-valued key per member.
        let old = [MEMBER, &id.0.to_be_bytes(), &7u64.to_be_bytes()].concat();
        store.view().unwrap().db.insert(old, &[]).unwrap();
        let mut batch = Batch::default();
        for fp in (0..3000).rev() {
            batch.add_member(id, Fingerprint(fp * 2));
        }
        batch.add_member(IncidentId(5), Fingerprint(1));
        store.commit(batch, || ()).unwrap();
        let mut batch = Batch::default();
        batch.add_member(id, Fingerprint(6001));
        store.commit(batch, || ()).unwrap();
        let keys = store.view().unwrap().db.scan_prefix(MEMBER).count();
        assert_eq!(
            keys,
            1 + 3 + 1 + 1,
            "the old key, 3 values of incident 4, one of 5, one more of 4"
        );
        let members = store.members(id).unwrap();
        let mut want: Vec<Fingerprint> = (0..3000).map(|fp| Fingerprint(fp * 2)).collect();
        want.extend([Fingerprint(7), Fingerprint(6001)]);
        want.sort();
        assert_eq!(members, want);
        assert_eq!(store.members(IncidentId(5)).unwrap(), [Fingerprint(1)]);
        assert_eq!(store.members(IncidentId(6)).unwrap(), []);
    }

    #[test]
    fn members_added_one_commit_at_a_time_fill_a_value_before_a_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = IncidentId(4);
        let member_keys = |store: &Store| store.view().unwrap().db.scan_prefix(MEMBER).count();
        let total = hot::OPEN_MEMBERS as u64 + 6;
        for fp in 0..total {
            let mut batch = Batch::default();
            batch.add_member(id, Fingerprint(fp));
            store.commit(batch, || ()).unwrap();
        }
        assert_eq!(member_keys(&store), 2, "a full value, then the next one");
        let want: Vec<Fingerprint> = (0..total).map(Fingerprint).collect();
        assert_eq!(store.members(id).unwrap(), want);
        // Reopened, the store no longer knows which value is open: the next member starts a
        // new one, and none is lost.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.members(id).unwrap(), want);
        let mut batch = Batch::default();
        batch.add_member(id, Fingerprint(1000));
        store.commit(batch, || ()).unwrap();
        assert_eq!(member_keys(&store), 3);
        let mut want = want;
        want.push(Fingerprint(1000));
        assert_eq!(store.members(id).unwrap(), want);
    }

    #[test]
    fn an_incident_is_read_back_as_last_committed_without_decoding_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.put_incident(incident(1, Tier::L1));
        store.commit(batch, || ()).unwrap();
        let mut escalated = store.incident(IncidentId(1)).unwrap().unwrap();
        escalated
            .escalate("a", Some(Tier::L3), "manual", Utc::now())
            .unwrap();
        let mut batch = Batch::default();
        batch.put_incident(escalated.clone());
        store.commit(batch, || ()).unwrap();
        let kept = store.view().unwrap().hot.incident(IncidentId(1)).cloned();
        assert_eq!(
            kept.as_ref(),
            Some(&escalated),
            "kept decoded once committed"
        );
        let stored = store
            .view()
            .unwrap()
            .get_as(&incident_key(IncidentId(1)), decode_incident)
            .unwrap();
        assert_eq!(stored.as_ref(), Some(&escalated));
        assert_eq!(
            store.incident(IncidentId(1)).unwrap(),
            Some(escalated.clone())
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.view().unwrap().hot.incident(IncidentId(1)).is_none());
        assert_eq!(store.incident(IncidentId(1)).unwrap(), Some(escalated));
    }

    fn timer_keys(store: &Store) -> usize {
        store.view().unwrap().db.scan_prefix(TIMER).count()
    }

    #[test]
    fn timers_set_together_share_a_key_per_thousand_and_are_cleared_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let later = t0 + chrono::Duration::seconds(1);
        let mut batch = Batch::default();
        for fp in 0..3000 {
            batch.set_timer(t0, Timer::AlertExpiry(Fingerprint(fp)), true);
        }
        batch.set_timer(later, Timer::AckTimeout(IncidentId(1)), true);
        store.commit(batch, || ()).unwrap();
        assert_eq!(
            timer_keys(&store),
            3 + 1,
            "1024 timers a value, one deadline each"
        );
        let due = store.due_timers(t0, usize::MAX).unwrap();
        assert_eq!(due.len(), 3000);
        assert!(due
            .iter()
            .zip(0..)
            .all(|(d, fp)| *d == (t0, Timer::AlertExpiry(Fingerprint(fp)))));

        // Clearing one rewrites its value only; clearing the rest removes the values.
        let mut batch = Batch::default();
        batch.set_timer(t0, Timer::AlertExpiry(Fingerprint(5)), false);
        store.commit(batch, || ()).unwrap();
        assert_eq!(timer_keys(&store), 4);
        let due = store.due_timers(t0, usize::MAX).unwrap();
        assert_eq!(due.len(), 2999);
        assert!(!due.contains(&(t0, Timer::AlertExpiry(Fingerprint(5)))));
        let mut batch = Batch::default();
        for (at, timer) in due {
            batch.set_timer(at, timer, false);
        }
        store.commit(batch, || ()).unwrap();
        assert_eq!(timer_keys(&store), 1);
        assert_eq!(store.next_deadline().unwrap(), Some(later));
        assert_eq!(
            store.due_timers(later, 10).unwrap(),
            [(later, Timer::AckTimeout(IncidentId(1)))]
        );
    }

    #[test]
    fn timers_of_the_older_layout_are_due_once_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let old = Timer::AlertExpiry(Fingerprint(9));
        // What an older triaged wrote: one empty-valued key per timer.
        let key = [TIMER, &millis(t0).to_be_bytes(), &old.encode()].concat();
        store.view().unwrap().db.insert(key, &[]).unwrap();
        // The same timer set again, in the new layout, is still due once.
        let mut batch = Batch::default();
        batch.set_timer(t0, old, true);
        batch.set_timer(t0, Timer::SilenceEnd(SilenceId::from_u128(3)), true);
        store.commit(batch, || ()).unwrap();
        assert_eq!(timer_keys(&store), 2);
        assert_eq!(
            store.due_timers(t0, 10).unwrap(),
            [(t0, old), (t0, Timer::SilenceEnd(SilenceId::from_u128(3)))]
        );
        let mut batch = Batch::default();
        batch.set_timer(t0, old, false);
        store.commit(batch, || ()).unwrap();
        assert_eq!(
            store.due_timers(t0, 10).unwrap(),
            [(t0, Timer::SilenceEnd(SilenceId::from_u128(3)))]
        );
        assert_eq!(
            timer_keys(&store),
            1,
            "the old key is gone and the value rewritten"
        );
    }

    /// Commit incidents `ids` one commit each, as a crash leaves them: in the journal only.
    fn commit_each(store: &Store, ids: std::ops::RangeInclusive<u64>) {
        for n in ids {
            let mut batch = Batch::default();
            batch.put_incident(incident(n, Tier::L1));
            store.commit(batch, || ()).unwrap();
        }
    }

    /// Byte offsets of the journal's records from its start (the file as a crash leaves it).
    fn journal_records(dir: &Path) -> (PathBuf, Vec<usize>) {
        let path = dir.join(journal::FILE_NAME);
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        let mut starts = Vec::new();
        while bytes.get(at..at + 4).is_some_and(|b| b != [0; 4]) {
            starts.push(at);
            at += 16 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        }
        (path, starts)
    }

    /// The error opening the store in `dir` fails with; `what` names the store in the panic if
    /// it opens.
    fn open_refused(dir: &Path, what: &str) -> StoreError {
        match Store::open(dir) {
            Err(e) => e,
            Ok(_) => panic!("{what} opened"),
        }
    }

    fn flip(path: &Path, at: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }

    fn present(store: &Store, ids: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        ids.filter(|&n| store.incident(IncidentId(n)).unwrap().is_some())
            .collect()
    }

    #[test]
    fn a_damaged_journal_record_with_intact_ones_after_it_stops_the_open() {
        let dir = tempfile::tempdir().unwrap();
        commit_each(&Store::open(dir.path()).unwrap(), 1..=3);
        let (path, starts) = journal_records(dir.path());
        assert_eq!(starts.len(), 3);
        flip(&path, starts[1] + 20);
        let damaged = std::fs::read(&path).unwrap();
        let err = open_refused(
            dir.path(),
            "a store whose journal lost an acknowledged commit",
        );
        assert!(err.is_damaged(), "{err}");
        let text = err.to_string();
        let cut = format!("truncate -s {} {}", starts[1], path.display());
        assert!(text.contains(&cut), "{text}");
        assert!(
            text.contains("(commit 2)") && text.contains("commit 3 at byte"),
            "{text}"
        );
        // Refused, the journal is left as it was; cut as the message says, the store opens
        // (what sled kept of the commits after the cut is not the journal's to say: dropping a
        // store flushes sled, so this test cannot tell; tests/durability.rs kills a daemon).
        assert!(
            std::fs::read(&path).unwrap() == damaged,
            "the journal is untouched"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(starts[1] as u64)
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(present(&store, 1..=1), [1]);
    }

    #[test]
    fn a_torn_last_record_does_not_stop_the_open() {
        let dir = tempfile::tempdir().unwrap();
        commit_each(&Store::open(dir.path()).unwrap(), 1..=3);
        let (path, starts) = journal_records(dir.path());
        flip(&path, starts[2] + 20);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(present(&store, 1..=2), [1, 2]);
        drop(store);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "emptied once applied"
        );
    }

    #[test]
    fn a_damaged_first_record_of_a_generation_is_told_by_the_seq_kept_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        commit_each(&store, 1..=3);
        store.checkpoint().unwrap();
        commit_each(&store, 4..=5);
        drop(store);
        let (path, starts) = journal_records(dir.path());
        assert_eq!(
            starts.len(),
            2,
            "the journal starts again after a checkpoint"
        );
        flip(&path, starts[0] + 20);
        let err = open_refused(
            dir.path(),
            "a store whose journal lost an acknowledged commit",
        )
        .to_string();
        // Commits 1-3 went to sled at the checkpoint; the journal went on from 4.
        assert!(err.contains("at byte 0 (commit 4)"), "{err}");
    }

    #[test]
    fn a_store_whose_sled_files_are_gone_is_refused_not_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        commit_each(&Store::open(dir.path()).unwrap(), 1..=3);
        assert!(dir.path().join(STORE_MARKER).exists());
        // A store of a triaged before the marker gets it at its next open.
        std::fs::remove_file(dir.path().join(STORE_MARKER)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(present(&store, 1..=3), [1, 2, 3]);
        drop(store);
        assert!(dir.path().join(STORE_MARKER).exists());
        // sled opens a directory without its files as an empty store.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name != STORE_MARKER && name != journal::FILE_NAME {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
        let err = open_refused(dir.path(), "a store that lost its files (empty)");
        assert!(err.is_damaged(), "{err}");
        assert!(err.to_string().contains("lost data"), "{err}");
    }

    /// sled opens a file cut short as the part it can read (here 933 of 2,000 incidents, with
    /// no error), or panics on it: either way the open is refused as damage.
    #[test]
    fn a_sled_file_cut_short_after_a_checkpoint_is_refused_not_opened_on_what_is_left() {
        for eighths in [1, 3, 6] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            commit_each(&store, 1..=2000);
            store.checkpoint().unwrap(); // a clean stop: nothing left in the journal
            drop(store);
            let file = dir.path().join(SLED_FILE);
            let len = std::fs::metadata(&file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(len * eighths / 8)
                .unwrap();
            match Store::open(dir.path()) {
                Err(e) => assert!(e.is_damaged(), "{eighths}/8: {e}"),
                Ok(store) => panic!(
                    "{eighths}/8: opened with {} of 2,000 incidents",
                    present(&store, 1..=2000).len()
                ),
            }
        }
    }

    /// Regression (QA): a snapshot write that failed on a full disk left an empty
    /// `snap.<lsn>.generating`, which sled takes for the newest snapshot and refuses as corrupt:
    /// the store was reported damaged ("restore a backup") for good, though intact. A crash in
    /// the middle of the write leaves the same. The unfinished file is removed and the store
    /// opens with everything.
    #[test]
    fn a_snapshot_sled_left_unfinished_does_not_make_the_store_damaged() {
        for unfinished in [&b""[..], &[7u8; 100][..]] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            commit_each(&store, 1..=50);
            store.checkpoint().unwrap();
            commit_each(&store, 51..=60);
            drop(store);
            // Named as sled names them: its log position in 16 hex digits.
            let left = dir.path().join("snap.0000000000100000.generating");
            std::fs::write(&left, unfinished).unwrap();
            let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(present(&store, 1..=60).len(), 60);
            assert!(!left.exists());
        }
    }

    #[test]
    fn a_second_open_of_the_same_directory_says_why_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = open_refused(dir.path(), "a second open of a locked store").to_string();
        assert!(err.contains("another triaged"), "{err}");
    }

    /// Regression (QA of operations): a journal deleted after a crash went unseen, the store
    /// opening without the commits acknowledged since the last checkpoint. A marked store
    /// without its journal is refused as damaged, naming the way on (`touch`).
    #[test]
    fn a_store_without_its_journal_is_refused_until_one_is_made() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let journal = dir.path().join(journal::FILE_NAME);
        std::fs::remove_file(&journal).unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("opened without its journal");
        assert!(err.is_damaged(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("is missing") && text.contains("touch"),
            "{text}"
        );
        std::fs::File::create(&journal).unwrap();
        drop(Store::open(dir.path()).unwrap());
    }

    /// Regression (QA of operations): after the `truncate` a damaged journal's refusal
    /// suggests, the replayed older records set the incident counter back while sled kept the
    /// incidents later records had made, and new incidents overwrote them (INC-19 onwards of 60).
    /// The next number is past every stored incident as well as the counter.
    #[test]
    fn the_next_incident_number_is_past_every_stored_incident() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for n in 1..=60 {
            batch.put_incident(incident(n, Tier::L1));
        }
        batch.set_next_incident_number(61);
        store.commit(batch, || ()).unwrap();
        assert_eq!(store.next_incident_number().unwrap(), 61);
        let mut back = Batch::default();
        back.set_next_incident_number(19);
        store.commit(back, || ()).unwrap();
        assert_eq!(store.next_incident_number().unwrap(), 61);
        // A counter ahead of the incidents (the newest removed by retention) stands.
        let mut ahead = Batch::default();
        ahead.set_next_incident_number(70);
        store.commit(ahead, || ()).unwrap();
        assert_eq!(store.next_incident_number().unwrap(), 70);
    }

    /// Regression (a flaky test): sled may let go of the directory's lock a while after its `Db`
    /// is dropped, so a store reopened at once failed. Dropping or closing now waits for the lock.
    #[test]
    fn a_dropped_or_closed_store_reopens_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for n in 1..=20 {
            let mut batch = Batch::default();
            batch.put_incident(incident(n, Tier::L1));
            batch.set_next_incident_number(n + 1);
            store.commit(batch, || ()).unwrap();
            if n % 2 == 0 {
                store.close(format!("round {n}"));
                store.reopen().unwrap();
            } else {
                drop(store);
                store = Store::open(dir.path()).unwrap();
            }
            assert_eq!(store.next_incident_number().unwrap(), n + 1);
        }
    }

    /// What makes the test above pass when the machine is loaded: the wait itself. Another
    /// handle stands for sled's I/O pool, holding the lock for a while after the store let go.
    #[test]
    fn closing_waits_until_nothing_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join(SLED_FILE);
        let holder = File::create(&lock_path).unwrap();
        rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let waiter = std::thread::spawn({
            let released = released.clone();
            move || {
                await_unlocked(&lock_path);
                released.load(Ordering::SeqCst)
            }
        });
        // Not a timing assertion: the waiter must not return during this pause, however long.
        std::thread::sleep(std::time::Duration::from_millis(50));
        released.store(true, Ordering::SeqCst);
        drop(holder);
        assert!(waiter.join().unwrap(), "returned while the lock was held");
        let again = File::open(dir.path().join(SLED_FILE)).unwrap();
        rustix::fs::flock(&again, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .expect("the waiter let the lock go again");
    }

    /// Regression (a flaky end-to-end test): a reader saw an escalation before its metric moved,
    /// because sled shows a batch once applied, before the flush. A read made while a commit is
    /// under way waits for the whole commit, the `durable` step included.
    #[test]
    fn readers_see_a_commit_only_when_it_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let mut batch = Batch::default();
        batch.put_incident(incident(1, Tier::L1));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = store.clone();
        store
            .commit(batch, || {
                std::thread::spawn(move || {
                    let _ = tx.send(reader.incident(IncidentId(1)).unwrap().is_some());
                });
                // The reader is blocked for as long as the commit is not complete.
                assert!(rx
                    .recv_timeout(std::time::Duration::from_millis(100))
                    .is_err());
            })
            .unwrap();
        // Once complete, it sees the incident.
        assert!(store.incident(IncidentId(1)).unwrap().is_some());
    }
}

//! The journal: what makes a group commit durable and atomic, so that sled need not do either
//! per commit.
//!
//! sled 0.34 makes an `apply_batch` atomic by sealing its IO buffer before and after the batch,
//! and each seal hands a write plus a `sync_file_range` to its IO threads (waking all seven of
//! them), so a batch costs two disk writes even before the flush that makes it durable, which
//! costs a third. At a thousand commits a second that was a quarter of the daemon's CPU.
//! Instead, a commit's writes ([`Writes`]) are appended here as one record and made durable
//! with one `fdatasync`; only then are they applied to sled, key by key, with nothing flushed.
//! sled writes its buffers when they fill, and every [`CHECKPOINT_BYTES`]
//! (`storage.checkpoint_kb`) of journal the store flushes sled and fdatasyncs its file (a
//! checkpoint), after which the journal starts again from its beginning, overwriting itself. An
//! overwrite's fdatasync costs less than an append's (the file's size does not change), so the
//! file is also written out with zeros a chunk ahead of the records, and the first pass
//! overwrites too. A clean stop checkpoints too and empties the journal.
//!
//! Records are written with `O_DIRECT` where the file system takes it ([`Direct`]): whole 4 KiB
//! blocks from an aligned buffer that keeps the last, partly filled block, so the fdatasync
//! has no page cache to write back, only the device's cache to flush. That took 6–8 µs off
//! each commit on a virtio disk (82 µs against 88–92 for a 3 KB record and its fdatasync). A
//! file system that refuses `O_DIRECT` (tmpfs on older kernels, some FUSE ones) gets ordinary
//! writes, with the same records and the same guarantee. Rewriting the block that holds the
//! end of earlier records, byte for byte as it was, is what the page cache's writeback of
//! that page did too.
//!
//! At open, every record since the last checkpoint is applied again, in order, then sled is
//! flushed and the journal emptied. Applying a record twice is harmless: each write sets a key
//! to a value or removes it, and the records after it set every key they touch to its last
//! value. So whatever part of those records sled had kept, the result is the store as of the
//! last record, all of whose commits were acknowledged only once their record was on disk.
//!
//! A record: `len u32 LE`, `crc32 u32 LE` (of the seq and the payload), `seq u64 LE`, then `len`
//! bytes of payload. Records follow each other with consecutive seqs, which keep counting
//! across checkpoints and restarts (the store keeps the seq each generation starts with); reading
//! stops at the first that is torn, fails its checksum, or does not follow (a record of the
//! generation before the last checkpoint, further on in the file). The payload is a sequence of
//! writes: `1`, key length u32 LE, key, value length u32 LE, value (an insert); or `2`, key
//! length, key (a removal).
//!
//! Where reading stops says what happened ([`End`]). Zeros, the file's end or an older
//! generation's record: the journal simply ends there. The record the sequence expects, cut short
//! or failing its checksum, with nothing of its generation after it: a commit a crash interrupted
//! before its fdatasync returned, so never acknowledged, and dropped. But an intact record of a
//! later seq anywhere after the stop cannot come from a crash (each record is durable before
//! the next is written): the records in between were damaged after they were acknowledged, and
//! the store refuses to open rather than lose them silently.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The journal's file, in the store's directory.
pub const FILE_NAME: &str = "triaged.journal";
/// Past this many bytes of journal (by default), a commit ends with a checkpoint: sled is
/// flushed and the journal starts again. Bounds the journal's size and what the next start
/// applies again.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;

/// How far ahead of the records the file is written out at a time (see [`Journal::append`]).
const PREWRITE_CHUNK: u64 = 1024 * 1024;

/// The unit of direct writes: their offsets, lengths and buffer addresses are multiples of it
/// (a device's logical block is 512 bytes or 4 KiB).
const BLOCK: usize = 4096;
/// A direct-write buffer grown past this for a large record is let go of after it.
const KEEP_BUFFER: usize = 1024 * 1024;

const HEADER: usize = 16;
const INSERT: u8 = 1;
const REMOVE: u8 = 2;

/// The writes of one commit, already laid out as a journal record (its header is filled in when
/// it is appended).
pub struct Writes {
    buf: Vec<u8>,
}

/// Room a new record starts with: a batch-1 commit's record fits, so it is not grown (copied)
/// on the way, as it would be from empty.
const INITIAL_RECORD_BYTES: usize = 4096;

impl Default for Writes {
    fn default() -> Writes {
        let mut buf = Vec::with_capacity(INITIAL_RECORD_BYTES);
        buf.resize(HEADER, 0);
        Writes { buf }
    }
}

impl Writes {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.buf.push(INSERT);
        self.put(key.as_ref());
        self.put(value.as_ref());
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.buf.push(REMOVE);
        self.put(key.as_ref());
    }

    fn put(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("a key or value under 4 GiB");
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER
    }

    /// Apply the writes to sled, in order.
    pub fn apply(&self, db: &sled::Db) -> Result<(), ApplyError> {
        apply(&self.buf[HEADER..], db)
    }
}

/// Why a record's writes could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("a journal record is malformed at byte {0} of its payload")]
    Malformed(usize),
}

fn apply(mut payload: &[u8], db: &sled::Db) -> Result<(), ApplyError> {
    let total = payload.len();
    while let Some((&op, rest)) = payload.split_first() {
        let at = total - payload.len();
        let (key, rest) = take(rest).ok_or(ApplyError::Malformed(at))?;
        payload = match op {
            INSERT => {
                let (value, rest) = take(rest).ok_or(ApplyError::Malformed(at))?;
                db.insert(key, value)?;
                rest
            }
            REMOVE => {
                db.remove(key)?;
                rest
            }
            _ => return Err(ApplyError::Malformed(at)),
        };
    }
    Ok(())
}

/// A length-prefixed slice, and the bytes after it.
fn take(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    rest.split_at_checked(u32::from_le_bytes(*len) as usize)
}

/// The open journal.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    end: u64,
    /// The next record's seq.
    next_seq: u64,
    /// Past this `end`, a checkpoint is due.
    checkpoint_bytes: u64,
    /// How much of the file is written (records, or zeros ahead of them): an fdatasync after
    /// a record that ends within it has only the data to make durable, not a new file size, and
    /// took 200 µs instead of 270–340 µs at a thousand commits a second.
    written: u64,
    /// Direct writes, unless the file system refuses them.
    direct: Option<Direct>,
}

/// The journal's file opened with `O_DIRECT`, and an aligned buffer whose first bytes are
/// always those of the block that holds [`Journal::end`], up to it: a record is written as
/// that block's start plus the record, padded with zeros to whole blocks.
struct Direct {
    file: File,
    buf: Vec<u8>,
    /// Where in `buf` the aligned part starts.
    at: usize,
}

impl Direct {
    /// `None` when the file system does not take `O_DIRECT`.
    fn open(path: &Path) -> std::io::Result<Option<Direct>> {
        let flags = rustix::fs::OFlags::DIRECT.bits() as i32;
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let (buf, at) = aligned(BLOCK);
        Ok(Some(Direct { file, buf, at }))
    }

    /// Where in `buf` are `len` aligned bytes (a multiple of [`BLOCK`]), growing it if need be.
    fn region(&mut self, len: usize) -> std::ops::Range<usize> {
        if self.buf.len() - self.at < len {
            self.resize(len);
        }
        self.at..self.at + len
    }

    /// After a record that grew the buffer past [`KEEP_BUFFER`]: back to one block.
    fn shrink(&mut self) {
        if self.buf.len() > KEEP_BUFFER {
            self.resize(BLOCK);
        }
    }

    /// A new buffer of `len` aligned bytes, starting with the old one's first block.
    fn resize(&mut self, len: usize) {
        let (mut buf, at) = aligned(len);
        buf[at..at + BLOCK].copy_from_slice(&self.buf[self.at..self.at + BLOCK]);
        self.buf = buf;
        self.at = at;
    }
}

/// A zeroed buffer with `len` bytes from an offset aligned to [`BLOCK`], and that offset.
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let buf = vec![0; len + BLOCK];
    let at = buf.as_ptr().align_offset(BLOCK);
    (buf, at)
}

/// Rounded up to whole blocks.
fn blocks(n: u64) -> u64 {
    n.next_multiple_of(BLOCK as u64)
}

/// What opening the journal found: the records to apply again, in order, and how they end.
pub struct Replay {
    bytes: Vec<u8>,
    /// Offsets of each record's payload, and its length.
    records: Vec<(usize, usize)>,
    end: End,
}

/// How the journal's records end (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Zeros, the file's end, or a record of an older generation.
    Clean,
    /// The record the sequence expected (`seq`), at byte `at`, is cut short or fails its
    /// checksum, and nothing of a later seq follows: a commit a crash interrupted.
    Torn { at: usize, seq: u64 },
    /// The record at byte `at` (seq `expected`) cannot be read, yet an intact record of seq
    /// `found_seq` lies at byte `found_at` after it: damage to acknowledged commits.
    Damaged {
        at: usize,
        expected: u64,
        found_at: usize,
        found_seq: u64,
    },
}

impl Replay {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn end(&self) -> End {
        self.end
    }

    /// The journal's file held nothing at all (as after a clean stop).
    pub fn file_is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Apply every record's writes to sled, oldest first.
    pub fn apply(&self, db: &sled::Db) -> Result<(), ApplyError> {
        for &(at, len) in &self.records {
            apply(&self.bytes[at..at + len], db)?;
        }
        Ok(())
    }
}

impl Journal {
    /// Open (or create) the journal in `dir` and read the records a restart must apply again.
    /// `first_seq` is the seq the journal's current generation started with, when the store
    /// knows it: the next record's seq follows it (or the last record read), and a damaged
    /// first record is told from a torn one by it.
    pub fn open(
        dir: &Path,
        checkpoint_bytes: u64,
        first_seq: Option<u64>,
    ) -> std::io::Result<(Journal, Replay)> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let scan = scan(&bytes, first_seq);
        let direct = Direct::open(&path)?;
        if direct.is_none() {
            tracing::info!(path = %path.display(), "the journal's file system does not take O_DIRECT: ordinary writes");
        }
        let journal = Journal {
            file,
            path,
            end: 0,
            next_seq: scan.next_seq.max(first_seq.unwrap_or(1)),
            checkpoint_bytes,
            written: 0,
            direct,
        };
        let replay = Replay {
            bytes,
            records: scan.records,
            end: scan.end,
        };
        Ok((journal, replay))
    }

    /// Records are written with `O_DIRECT`. For tests.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Write records as ordinary writes from now on. For tests.
    #[cfg(test)]
    fn without_direct(mut self) -> Journal {
        self.direct = None;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seq the next record gets: after a checkpoint, the one its generation starts with.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Empty the journal, durably: everything in it is in sled and sled is flushed.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.end = 0;
        self.written = 0;
        Ok(())
    }

    /// Append `writes` as the next record and make it durable (one write, one fdatasync).
    pub fn append(&mut self, writes: &mut Writes) -> std::io::Result<()> {
        let payload = &writes.buf[HEADER..];
        let len = u32::try_from(payload.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a commit of 4 GiB or more",
            )
        })?;
        let seq = self.next_seq.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq);
        crc.update(payload);
        let header = &mut writes.buf[..HEADER];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        header[8..].copy_from_slice(&seq);
        let end = self.end + writes.buf.len() as u64;
        if !self.write_direct(&writes.buf, end)? {
            self.file.write_all_at(&writes.buf, self.end)?;
            if end > self.written {
                // Past what the file holds: write it out a chunk further (zeros, which no
                // reading takes for a record), so that the fdatasyncs until then have no new
                // size to commit.
                let to = self.written_out_to(end);
                write_zeros(&self.file, end, to)?;
                self.written = to;
            }
        }
        self.file.sync_data()?;
        self.end = end;
        self.next_seq += 1;
        Ok(())
    }

    /// How far to write the file out once a record ending at `end` passes what it holds: a chunk
    /// further (no further than the checkpoint size), and at least to `end`.
    fn written_out_to(&self, end: u64) -> u64 {
        end.max((self.written + PREWRITE_CHUNK).min(self.checkpoint_bytes))
    }

    /// Write `record` (ending at `end`) and the zeros ahead of it with direct writes; false,
    /// having written nothing, when there are none or the file system refuses them (then for
    /// good).
    fn write_direct(&mut self, record: &[u8], end: u64) -> std::io::Result<bool> {
        let ahead = self.written_out_to(end);
        let Some(direct) = self.direct.as_mut() else {
            return Ok(false);
        };
        let block = BLOCK as u64;
        let start = self.end - self.end % block;
        let head = (self.end - start) as usize;
        let len = head + record.len();
        let padded = blocks(len as u64);
        let range = direct.region(padded as usize);
        let region = &mut direct.buf[range];
        region[head..len].copy_from_slice(record);
        region[len..].fill(0);
        if let Err(e) = direct.file.write_all_at(region, start) {
            // Refused before any byte is written: the file system wants another alignment.
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                tracing::warn!(path = %self.path.display(), error = %e, "the journal's direct write was refused: ordinary writes from now on");
                self.direct = None;
                return Ok(false);
            }
            return Err(e);
        }
        // Keep the block that holds `end`, up to it, at the front.
        let keep = start + padded - block;
        if keep > start {
            let from = (keep - start) as usize;
            region.copy_within(from..from + BLOCK, 0);
        }
        let written = start + padded;
        if end > self.written {
            // As with ordinary writes: zeros a chunk ahead, so that the fdatasyncs until then
            // have no new size to commit.
            let to = blocks(ahead);
            if to > written {
                write_zeros(&direct.file, written, to)?;
            }
            self.written = to.max(written);
        }
        direct.shrink();
        Ok(true)
    }

    /// Past the checkpoint size: time to flush sled and [`restart`](Journal::restart).
    pub fn checkpoint_due(&self) -> bool {
        self.end >= self.checkpoint_bytes
    }

    /// sled is flushed and fdatasynced: the next record goes at the start again, over the old
    /// ones (which a restart would find only up to where the new ones end, and apply again
    /// harmlessly if no new one was written).
    pub fn restart(&mut self) {
        self.end = 0;
    }
}

/// Zeros to write the file out with, aligned for direct writes too.
#[repr(C, align(4096))]
struct Zeros([u8; 64 * 1024]);

/// Write zeros to `file` from `from` up to `to` (for a direct write, both multiples of
/// [`BLOCK`]).
fn write_zeros(file: &File, mut from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: Zeros = Zeros([0; 64 * 1024]);
    const _: () = assert!(std::mem::align_of::<Zeros>() == BLOCK);
    while from < to {
        let n = (to - from).min(ZEROS.0.len() as u64);
        file.write_all_at(&ZEROS.0[..n as usize], from)?;
        from += n;
    }
    Ok(())
}

/// What [`scan`] read.
struct Scan {
    /// Each record's payload offset and length, in order.
    records: Vec<(usize, usize)>,
    /// The seq after the last record read (1 when none was).
    next_seq: u64,
    end: End,
}

/// The records in `bytes` from the start, up to the first record that is torn, fails its
/// checksum, or does not follow the one before, and what ends them. `first_seq`: the seq the
/// generation started with, if known.
fn scan(bytes: &[u8], first_seq: Option<u64>) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    let mut expect: Option<u64> = None;
    while let Some((seq, payload)) = record_at(bytes, at) {
        if expect.is_some_and(|e| e != seq) {
            break;
        }
        records.push((at + HEADER, payload));
        expect = Some(seq + 1);
        at += HEADER + payload;
    }
    let next_seq = expect.unwrap_or(1);
    let Some(expected) = expect.or(first_seq) else {
        // Nothing read and no generation known: no seq to tell damage by.
        return Scan {
            records,
            next_seq,
            end: End::Clean,
        };
    };
    let end = if let Some((found_at, found_seq)) = later_record(bytes, at, expected) {
        End::Damaged {
            at,
            expected,
            found_at,
            found_seq,
        }
    } else if header_at(bytes, at).is_some_and(|(_, _, seq)| seq == expected) {
        End::Torn { at, seq: expected }
    } else {
        End::Clean
    };
    Scan {
        records,
        next_seq,
        end,
    }
}

/// The header at byte `at`: payload length, checksum, seq.
fn header_at(bytes: &[u8], at: usize) -> Option<(usize, u32, u64)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    Some((len, crc, seq))
}

/// The intact record at byte `at`, if there is one: its seq and payload length.
fn record_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let (len, crc, seq) = header_at(bytes, at)?;
    let start = at + HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[at + 8..start]);
    hasher.update(payload);
    (hasher.finalize() == crc).then_some((seq, len))
}

/// The first intact record at or after byte `from` whose seq is `expected` or later (but not
/// beyond what the file could hold): where it is, and its seq. Older generations' records and
/// zeros have lower seqs, so only damage leaves one where the records read stop or after.
fn later_record(bytes: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let most = (bytes.len() / HEADER) as u64;
    (from..bytes.len().saturating_sub(HEADER - 1)).find_map(|at| {
        let (_, _, seq) = header_at(bytes, at)?;
        if seq < expected || seq - expected > most {
            return None;
        }
        record_at(bytes, at).map(|(seq, _)| (at, seq))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(n: u8) -> Writes {
        let mut w = Writes::default();
        w.insert([b'k', n], [n; 3]);
        w.remove([b'r', n]);
        w
    }

    fn open(dir: &Path) -> (Journal, Vec<Vec<u8>>) {
        let (journal, payloads, _) = open_from(dir, None);
        (journal, payloads)
    }

    /// Open knowing (or not) the seq the generation started with: the journal, the payloads
    /// read and how they ended.
    fn open_from(dir: &Path, first_seq: Option<u64>) -> (Journal, Vec<Vec<u8>>, End) {
        let (journal, replay) = Journal::open(dir, CHECKPOINT_BYTES, first_seq).unwrap();
        let payloads = replay
            .records
            .iter()
            .map(|&(at, len)| replay.bytes[at..at + len].to_vec())
            .collect();
        (journal, payloads, replay.end())
    }

    /// A directory on the file system the repository is on, which takes `O_DIRECT` (unlike
    /// tmpfs on older kernels, which `/tmp` may be).
    fn disk_dir() -> tempfile::TempDir {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).unwrap();
        tempfile::tempdir_in(target).unwrap()
    }

    /// A journal in a fresh directory, written with direct writes or ordinary ones.
    fn fresh(direct: bool, checkpoint_bytes: u64) -> (tempfile::TempDir, Journal) {
        let dir = disk_dir();
        let (j, _) = Journal::open(dir.path(), checkpoint_bytes, None).unwrap();
        assert!(j.is_direct(), "the repository's file system takes O_DIRECT");
        let j = if direct { j } else { j.without_direct() };
        (dir, j)
    }

    fn sized(n: usize, fill: u8) -> Writes {
        let mut w = Writes::default();
        w.insert([fill], vec![fill; n]);
        w
    }

    #[test]
    fn direct_and_ordinary_writes_leave_the_same_file_and_records() {
        // Records that end on a block's end (the first: its header and one insert of a 1-byte
        // key take 26 bytes), inside a block, span blocks, and one larger than the buffer a
        // direct journal keeps (so it grows it, then lets go of it).
        let sizes = [
            BLOCK - 26,
            10,
            3000,
            1,
            BLOCK * 3 + 17,
            KEEP_BUFFER + 5000,
            7,
            2 * BLOCK,
        ];
        let mut files = Vec::new();
        for direct in [true, false] {
            let (dir, mut j) = fresh(direct, CHECKPOINT_BYTES);
            for (i, &n) in sizes.iter().enumerate() {
                j.append(&mut sized(n, i as u8)).unwrap();
            }
            assert_eq!(j.is_direct(), direct);
            assert_eq!(sized(sizes[0], 0).buf.len(), BLOCK);
            let end = j.end as usize;
            let (_, found) = open(dir.path());
            let expected: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| sized(n, i as u8).buf[HEADER..].to_vec())
                .collect();
            assert_eq!(found, expected, "direct: {direct}");
            let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
            assert!(
                bytes[end..].iter().all(|&b| b == 0),
                "zeros after the records"
            );
            files.push(bytes[..end].to_vec());
        }
        assert!(files[0] == files[1], "the same bytes either way");
    }

    #[test]
    fn records_are_read_back_in_order_until_the_first_that_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, found) = open(dir.path());
        assert!(found.is_empty());
        for n in 0..3 {
            j.append(&mut writes(n)).unwrap();
        }
        let (_, found, end) = open_from(dir.path(), None);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1], writes(1).buf[HEADER..]);
        assert_eq!(end, End::Clean, "zeros after the last record");

        // Torn: the last record's last byte never reached the disk (the zero written ahead).
        let path = dir.path().join(FILE_NAME);
        let end = j.end;
        let third = end as usize - writes(2).buf.len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0], end - 1).unwrap();
        let (_, found, how) = open_from(dir.path(), None);
        assert_eq!(found.len(), 2);
        assert_eq!(how, End::Torn { at: third, seq: 3 });
        // Or the file ends inside it.
        file.set_len(end - 1).unwrap();
        let (_, found, how) = open_from(dir.path(), None);
        assert_eq!(found.len(), 2);
        assert_eq!(how, End::Torn { at: third, seq: 3 });
        // The second record damaged too: still the end of what was written, nothing intact
        // after it.
        let second = writes(0).buf.len();
        file.write_all_at(&[0xff], (second + HEADER + 2) as u64)
            .unwrap();
        let (_, found, how) = open_from(dir.path(), None);
        assert_eq!(found.len(), 1);
        assert_eq!(how, End::Torn { at: second, seq: 2 });
    }

    #[test]
    fn an_intact_record_after_a_damaged_one_is_damage_not_a_torn_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path());
        for n in 0..4 {
            j.append(&mut writes(n)).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let pristine = std::fs::read(&path).unwrap();
        let len = writes(0).buf.len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let damage = |at: usize, byte: u8| {
            file.write_all_at(&pristine, 0).unwrap();
            file.write_all_at(&[byte], at as u64).unwrap();
            open_from(dir.path(), None)
        };
        // A byte of the second record's payload flipped: the third and fourth are intact.
        let (_, found, how) = damage(len + HEADER + 2, pristine[len + HEADER + 2] ^ 0xff);
        assert_eq!(found.len(), 1, "what is before the damage is read");
        let expected = End::Damaged {
            at: len,
            expected: 2,
            found_at: 2 * len,
            found_seq: 3,
        };
        assert_eq!(how, expected);
        // Its length: the next record is not where the header says, but it is found.
        let (_, _, how) = damage(len, pristine[len] ^ 0x40);
        assert_eq!(how, expected);
        // Its seq (a record that does not follow): the same.
        let (_, _, how) = damage(len + 8, pristine[len + 8] ^ 0x01);
        assert_eq!(how, expected);
        // The last record damaged: nothing intact after it, so it reads as torn.
        let (_, found, how) = damage(3 * len + HEADER, pristine[3 * len + HEADER] ^ 0xff);
        assert_eq!(found.len(), 3);
        assert_eq!(
            how,
            End::Torn {
                at: 3 * len,
                seq: 4
            }
        );
    }

    #[test]
    fn the_first_record_damaged_is_told_by_the_seq_its_generation_started_with() {
        let dir = tempfile::tempdir().unwrap();
        // A store whose journal has counted to 100 (the seq kept at its last checkpoint).
        let (mut j, _, _) = open_from(dir.path(), Some(100));
        assert_eq!(j.next_seq(), 100);
        for n in 0..3 {
            j.append(&mut writes(n)).unwrap();
        }
        assert_eq!(j.next_seq(), 103);
        let (j2, found, how) = open_from(dir.path(), Some(100));
        assert_eq!((found.len(), how), (3, End::Clean));
        assert_eq!(j2.next_seq(), 103, "the seqs go on from the records read");
        drop(j2);
        let path = dir.path().join(FILE_NAME);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff], HEADER as u64 + 2).unwrap();
        let len = writes(0).buf.len();
        let (_, found, how) = open_from(dir.path(), Some(100));
        assert!(found.is_empty());
        assert_eq!(
            how,
            End::Damaged {
                at: 0,
                expected: 100,
                found_at: len,
                found_seq: 101
            }
        );
        // Without the generation's seq, a first record that cannot be read ends the journal.
        assert_eq!(open_from(dir.path(), None).2, End::Clean);
        // And a later generation's seq makes these an older generation's records: no damage.
        assert_eq!(open_from(dir.path(), Some(103)).2, End::Clean);
    }

    #[test]
    fn the_file_is_written_out_ahead_of_the_records_and_its_zeros_read_as_no_record() {
        for direct in [true, false] {
            written_out_ahead(direct);
        }
    }

    fn written_out_ahead(direct: bool) {
        let (dir, mut j) = fresh(direct, 3 * PREWRITE_CHUNK);
        let path = dir.path().join(FILE_NAME);
        let size = || std::fs::metadata(&path).unwrap().len();
        j.append(&mut writes(0)).unwrap();
        assert_eq!(size(), PREWRITE_CHUNK, "a chunk ahead, not just the record");
        j.append(&mut writes(1)).unwrap();
        assert_eq!(size(), PREWRITE_CHUNK, "the next record went into it");
        let (_, found) = open(dir.path());
        assert_eq!(found.len(), 2, "the zeros after the records are no record");

        // Past the chunk, the next; never past the checkpoint size, beyond which records are
        // simply appended (a checkpoint follows).
        let big = || {
            let mut w = Writes::default();
            w.insert(b"big", vec![7; PREWRITE_CHUNK as usize]);
            w
        };
        j.append(&mut big()).unwrap();
        assert_eq!(size(), 2 * PREWRITE_CHUNK);
        j.append(&mut big()).unwrap();
        assert_eq!(size(), 3 * PREWRITE_CHUNK);
        j.append(&mut big()).unwrap();
        assert!(j.checkpoint_due());
        // Direct writes are whole blocks.
        let end = if direct { blocks(j.end) } else { j.end };
        assert_eq!(size(), end, "past the checkpoint size: appended");
        assert_eq!(open(dir.path()).1.len(), 5);
    }

    #[test]
    fn after_a_restart_the_older_generation_further_on_is_not_read() {
        for direct in [true, false] {
            older_generation(direct);
        }
    }

    fn older_generation(direct: bool) {
        let (dir, mut j) = fresh(direct, CHECKPOINT_BYTES);
        for n in 0..4 {
            j.append(&mut writes(n)).unwrap();
        }
        // A checkpoint: the next records overwrite the start. The old generation's third and
        // fourth records are still in the file, after the new ones, with older seqs.
        let generation = j.next_seq();
        j.restart();
        j.append(&mut writes(9)).unwrap();
        j.append(&mut writes(8)).unwrap();
        let (_, found, end) = open_from(dir.path(), Some(generation));
        assert_eq!(
            found,
            vec![
                writes(9).buf[HEADER..].to_vec(),
                writes(8).buf[HEADER..].to_vec()
            ]
        );
        assert_eq!(
            end,
            End::Clean,
            "older records after the new ones are no damage"
        );
        // Before any new record, the whole old generation is read (and applied again harmlessly).
        let (dir, mut j) = fresh(direct, CHECKPOINT_BYTES);
        for n in 0..4 {
            j.append(&mut writes(n)).unwrap();
        }
        j.restart();
        assert_eq!(open(dir.path()).1.len(), 4);
    }

    #[test]
    fn clear_empties_the_file_and_writes_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path());
        let mut w = Writes::default();
        w.insert(b"a", b"1");
        w.insert(b"b", b"2");
        w.remove(b"a");
        w.insert(b"c", b"3");
        j.append(&mut w).unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.insert(b"b", b"old").unwrap();
        let (mut j2, replay) = Journal::open(dir.path(), CHECKPOINT_BYTES, None).unwrap();
        assert_eq!(replay.len(), 1);
        replay.apply(&db).unwrap();
        replay.apply(&db).unwrap();
        assert_eq!(db.get(b"a").unwrap(), None);
        assert_eq!(db.get(b"b").unwrap().unwrap(), b"2"[..]);
        assert_eq!(db.get(b"c").unwrap().unwrap(), b"3"[..]);
        j2.clear().unwrap();
        assert_eq!(std::fs::metadata(j2.path()).unwrap().len(), 0);
        assert_eq!(open(dir.path()).1.len(), 0);
        drop(j);

        // A malformed payload is an error, not a panic.
        assert!(matches!(
            apply(&[INSERT, 9, 0, 0, 0, b'x'], &db),
            Err(ApplyError::Malformed(0))
        ));
        assert!(matches!(
            apply(&[7, 0, 0, 0, 0], &db),
            Err(ApplyError::Malformed(0))
        ));
    }
}

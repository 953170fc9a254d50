//! The pieces the store's binary values are written with ([`super::record`] for alert records,
//! [`super::incident_value`] for incidents) and the reader that takes them apart again.
//!
//! Integers are little-endian; a `varint` is LEB128. A string is a varint length and UTF-8
//! bytes; a time is i64 seconds and u32 nanoseconds since the Unix epoch (exact for every time
//! chrono holds); an optional value is a byte, 0 for none or 1 followed by the value; a list is a
//! varint count and the items; an enum is one byte, its index in a table of every variant. A
//! reader never panics on damaged bytes and never allocates more than the bytes it was given
//! could hold.

use chrono::{DateTime, TimeZone, Utc};

use crate::alert::Labels;

pub(super) fn index_of<T: PartialEq>(all: &[T], value: T) -> u8 {
    let i = all.iter().position(|v| *v == value);
    // Every variant is in its type's ALL (`every_variant_of_the_coded_enums_is_in_its_table`
    // names each one in an exhaustive match), and each has fewer than 256.
    i.expect("a variant missing from its ALL") as u8
}

pub(super) fn put_varint(w: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        w.push(n as u8 | 0x80);
        n >>= 7;
    }
    w.push(n as u8);
}

pub(super) fn put_str(w: &mut Vec<u8>, s: &str) {
    put_varint(w, s.len() as u64);
    w.extend_from_slice(s.as_bytes());
}

pub(super) fn put_time(w: &mut Vec<u8>, t: DateTime<Utc>) {
    w.extend_from_slice(&t.timestamp().to_le_bytes());
    w.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
}

pub(super) fn put_opt<T>(w: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => w.push(0),
        Some(v) => {
            w.push(1);
            put(w, v);
        }
    }
}

pub(super) fn put_list<T>(w: &mut Vec<u8>, items: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
    put_varint(w, items.len() as u64);
    for item in items {
        put(w, item);
    }
}

pub(super) fn put_labels(w: &mut Vec<u8>, labels: &Labels) {
    put_varint(w, labels.len() as u64);
    for (name, value) in labels {
        put_str(w, name);
        put_str(w, value);
    }
}

pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Every byte was read: anything left after the `what` is an error.
    pub(super) fn end(&self, what: &str) -> Result<(), String> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the {what}")),
        }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.rest.len()
            ));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub(super) fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    pub(super) fn varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    /// A count of items that each take at least one byte: never more than what is left, so a
    /// corrupt count cannot make the reader allocate without bound.
    pub(super) fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        if n > self.rest.len() as u64 {
            return Err(format!(
                "a count of {n} with {} bytes left",
                self.rest.len()
            ));
        }
        Ok(n as usize)
    }

    pub(super) fn string(&mut self) -> Result<String, String> {
        let n = self.count()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("a string that is not UTF-8: {e}"))
    }

    pub(super) fn time(&mut self) -> Result<DateTime<Utc>, String> {
        let secs = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        Utc.timestamp_opt(secs, nanos)
            .single()
            .ok_or_else(|| format!("no such time: {secs} s {nanos} ns"))
    }

    pub(super) fn one_of<T: Copy>(&mut self, all: &[T], what: &str) -> Result<T, String> {
        let i = self.byte()?;
        all.get(usize::from(i))
            .copied()
            .ok_or_else(|| format!("unknown {what} {i}"))
    }

    pub(super) fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.byte()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            b => Err(format!("an option tag of {b}")),
        }
    }

    pub(super) fn list<T>(
        &mut self,
        read: impl Fn(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let n = self.count()?;
        (0..n).map(|_| read(self)).collect()
    }

    pub(super) fn labels(&mut self) -> Result<Labels, String> {
        let n = self.count()?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string()?)))
            .collect()
    }
}

/// For the tests of a binary form: `body` (a value after its version byte) cut at `cut` is an
/// error unless nothing was cut, and with its byte at `at` set to `byte` it decodes or fails but
/// never panics or allocates without bound. Returns whether the cut was an error (or nothing).
#[cfg(test)]
pub(super) fn cut_and_changed_are_errors<T>(
    body: &[u8],
    cut: usize,
    at: usize,
    byte: u8,
    decode: impl Fn(&[u8]) -> Result<T, String>,
) -> bool {
    let cut = cut.min(body.len());
    let cut_is_an_error = decode(&body[..cut]).is_err() || cut == body.len();
    let mut changed = body.to_vec();
    let at = at % changed.len();
    changed[at] = byte;
    let _ = decode(&changed);
    cut_is_an_error
}

/// For the tests of a binary form: `value` encodes to `version` and fields that decode to it
/// again, in less than half the bytes of its JSON.
#[cfg(test)]
pub(super) fn round_trips_in_half_of_json<T: serde::Serialize + PartialEq + std::fmt::Debug>(
    value: &T,
    version: u8,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, String>,
) {
    let bytes = encode(value);
    assert_eq!(bytes[0], version);
    assert_eq!(&decode(&bytes[1..]).unwrap(), value);
    let json = serde_json::to_vec(value).unwrap();
    assert!(
        bytes.len() * 2 < json.len(),
        "{} bytes against {} of JSON",
        bytes.len(),
        json.len()
    );
}

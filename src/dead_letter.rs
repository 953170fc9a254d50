//! Dead letters: messages a source could not read (unparseable, wrong format, too large), kept
//! with where they came from, why they failed and their bytes (bounded), so that a poison message
//! never blocks its partition and is never dropped silently. Stored by `store`, listed by `api`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How much of a dead message's bytes is kept.
pub const MAX_KEPT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Assigned by the writer, in arrival order.
    pub id: u64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub error: String,
    /// The message as text (lossy UTF-8), cut at [`MAX_KEPT_BYTES`].
    pub raw: String,
    /// The message's whole size.
    pub size: usize,
    pub truncated: bool,
    pub at: DateTime<Utc>,
}

impl DeadLetter {
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        error: String,
        at: DateTime<Utc>,
    ) -> DeadLetter {
        let kept = &payload[..payload.len().min(MAX_KEPT_BYTES)];
        DeadLetter {
            id: 0,
            topic: topic.to_string(),
            partition,
            offset,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            error,
            raw: String::from_utf8_lossy(kept).into_owned(),
            size: payload.len(),
            truncated: kept.len() < payload.len(),
            at,
        }
    }
}

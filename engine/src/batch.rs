//! A batch: the encoded rows of a run of messages from the partitions one
//! shard holds, and the offsets they cover.
//!
//! Buffers are plain vectors reused from batch to batch (a sealed batch comes
//! back with its outcome), so a warm shard allocates nothing per message.

use std::sync::Arc;
use std::time::Instant;

use crate::codec::RejectReason;
use crate::gpfdist::ServedBatch;

/// One message of the batch, in read order.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in ms since the epoch, -1 if none.
    pub timestamp_ms: i64,
    /// End of this message's payload in [`Batch::payloads`]; it starts where
    /// the previous message's ends.
    pub payload_end: u32,
    /// False for a tombstone (a message without value).
    pub has_payload: bool,
}

/// Encoded rows of one kind: binary COPY tuples without header or trailer.
#[derive(Debug, Default)]
pub struct RowSet {
    pub data: Vec<u8>,
    /// End of each tuple in `data`.
    pub ends: Vec<u32>,
    /// Index in [`Batch::messages`] of each tuple's message.
    pub messages: Vec<u32>,
}

impl RowSet {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Byte range of tuples `rows` in `data`.
    pub fn byte_range(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = if rows.start == 0 { 0 } else { self.ends[rows.start - 1] as usize };
        let end = if rows.end == 0 { 0 } else { self.ends[rows.end - 1] as usize };
        start..end
    }
    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.messages.clear();
    }
}

/// Offsets one partition's messages in the batch cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    /// Offset stored in the database before this batch (-1: no row yet).
    pub stored_before: i64,
    /// Next offset to read after this batch: the stored value once committed.
    pub next: i64,
    pub messages: u32,
}

#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    /// Values computed on the shard (see [`crate::codec`]).
    pub fast: RowSet,
    /// Source columns as text, for the database to evaluate.
    pub slow: RowSet,
    pub messages: Vec<MessageMeta>,
    pub payloads: Vec<u8>,
    pub rejected: Vec<(u32, RejectReason)>,
    pub partitions: Vec<PartitionRange>,
    /// The fast rows the shard's gpfdist listener serves: fs_formatter rows
    /// moved out of `fast.data` / `fast.ends`, or CSV lines made from them
    /// (then `fast` keeps its tuples). `fast.messages` maps each row to its
    /// message either way.
    pub served: Option<Arc<ServedBatch>>,
    /// When the first message arrived.
    pub opened_at: Instant,
    pub sealed_at: Instant,
}

impl Batch {
    pub fn new() -> Batch {
        let now = Instant::now();
        Batch {
            seq: 0,
            fast: RowSet::default(),
            slow: RowSet::default(),
            messages: Vec::new(),
            payloads: Vec::new(),
            rejected: Vec::new(),
            partitions: Vec::new(),
            served: None,
            opened_at: now,
            sealed_at: now,
        }
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.fast.clear();
        self.slow.clear();
        self.messages.clear();
        self.payloads.clear();
        self.rejected.clear();
        self.partitions.clear();
        self.served = None;
    }

    /// Number of fast rows, whether held or served.
    pub fn fast_rows(&self) -> usize {
        self.fast.messages.len()
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Bytes the batch holds: what `BatchMaxBytes` counts. (Vectors grow by
    /// doubling, so a batch's allocation is at most about twice this.)
    pub fn byte_size(&self) -> usize {
        let served = self.served.as_ref().map_or(0, |s| s.data.len());
        self.fast.data.len()
            + self.slow.data.len()
            + served
            + self.payloads.len()
            + self.messages.len() * std::mem::size_of::<MessageMeta>()
    }

    /// Payload of message `index`, None for a tombstone.
    pub fn payload(&self, index: usize) -> Option<&[u8]> {
        let meta = &self.messages[index];
        if !meta.has_payload {
            return None;
        }
        let start = if index == 0 { 0 } else { self.messages[index - 1].payload_end as usize };
        Some(&self.payloads[start..meta.payload_end as usize])
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

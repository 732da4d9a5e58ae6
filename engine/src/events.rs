//! Messages between a shard's job task and the control plane.
//!
//! Each (job, shard) pair has one link: a bounded channel of [`ShardEvent`]s
//! to the control plane and a bounded channel of [`ControlReply`]s back.
//! Ordering on a link is the protocol:
//! - after [`ShardEvent::Assigned`] the shard reads nothing from its
//!   `starting` partitions until the [`ControlReply::StartOffsets`] of the
//!   same generation (the other partitions it holds it goes on reading);
//! - after [`ShardEvent::Sealed`] the shard seals no other batch until the
//!   [`ControlReply::BatchOutcome`] of that batch (it keeps decoding the next
//!   one meanwhile);
//! - [`ShardEvent::Stopped`] is the last event of a link.

use crate::batch::Batch;

#[derive(Debug)]
pub enum ShardEvent {
    /// The shard holds `partitions` now: the consumer group's assignment, or
    /// before the group answered, the partitions it reads ahead (generation
    /// counts assignments and rewinds on this link). It needs start offsets
    /// for `starting`, a subset: a partition read ahead and then assigned by
    /// the group goes on from where it is.
    Assigned {
        generation: u64,
        partitions: Vec<i32>,
        starting: Vec<i32>,
    },
    /// The consumer group took every partition away; the open batch was dropped.
    Revoked {
        generation: u64,
    },
    Sealed(Box<Batch>),
    /// Every partition the shard holds is at its end and all its batches are
    /// committed (sent only with `stop_at_eof`).
    Drained {
        partitions: Vec<i32>,
    },
    /// The job task ended; `error` says why when it was not asked to stop.
    Stopped {
        error: Option<String>,
    },
}

#[derive(Debug)]
pub enum ControlReply {
    StartOffsets {
        generation: u64,
        offsets: Result<Vec<PartitionStart>, String>,
    },
    BatchOutcome {
        seq: u64,
        outcome: BatchOutcome,
    },
    /// Seal and load what is open, then stop.
    Stop,
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStart {
    pub partition: i32,
    pub position: StartPosition,
    /// The offset stored in the database for this partition, -1 if none; the
    /// first batch's commit checks that it is still the stored value.
    pub stored: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Offset(i64),
    /// The consumer group's committed offset, else `auto.offset.reset`.
    GroupCommitted,
}

#[derive(Debug)]
pub enum BatchOutcome {
    /// Rows and offsets are committed; the batch's buffers come back for reuse.
    Committed { buffers: Option<Box<Batch>> },
    /// Another consumer committed these partitions first (a rebalance raced
    /// this batch): nothing was written; re-read from the stored offsets.
    Conflict,
    /// The job cannot go on; the reason is already recorded by the control plane.
    Failed,
}

//! Counters a shard publishes for one job, read by the control plane for
//! `monitor`, `status` and metrics without any message exchange.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

/// Written by one shard, read by anyone.
#[derive(Debug, Default)]
pub struct ShardJobStats {
    pub messages: CachePadded<AtomicU64>,
    pub bytes: CachePadded<AtomicU64>,
    /// Per partition held: read position and log end, refreshed about twice a second.
    pub partitions: Mutex<Vec<PartitionProgress>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Next offset the shard will read, -1 before the first message.
    pub position: i64,
    /// Log end offset last reported by the broker, -1 if unknown.
    pub end: i64,
}

impl ShardJobStats {
    pub fn add_read(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot_partitions(&self) -> Vec<PartitionProgress> {
        self.partitions.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn set_partitions(&self, progress: &[PartitionProgress]) {
        if let Ok(mut partitions) = self.partitions.lock() {
            partitions.clear();
            partitions.extend_from_slice(progress);
        }
    }
}

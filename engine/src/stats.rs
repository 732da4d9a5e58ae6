//! What a shard publishes for one job, read by the control plane for
//! `monitor`, `status`, metrics and logs without any message exchange.
//!
//! # Contract
//! - One shard writes a [`ShardJobStats`]; anyone reads it. The counters are
//!   monotonic; the partitions, the phase and the outage are the shard's
//!   latest view, refreshed about twice a second and on every change.
//! - [`KafkaHealth`] is written by the shard's Kafka clients (the shard
//!   thread and librdkafka's threads) and read by the shard, which decides
//!   what it means (see `job_task`). Its warnings are not logged where they
//!   happen: the control plane drains them and logs them rate-limited per job,
//!   so a broker that is down cannot flood the log.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam::utils::CachePadded;

/// Written by one shard, read by anyone.
#[derive(Debug, Default)]
pub struct ShardJobStats {
    pub messages: CachePadded<AtomicU64>,
    pub bytes: CachePadded<AtomicU64>,
    /// Per partition held: read position and log end, refreshed about twice a second.
    pub partitions: Mutex<Vec<PartitionProgress>>,
    phase: AtomicU8,
    /// Set while the shard cannot reach the brokers it reads from.
    outage: Mutex<Option<Outage>>,
    /// The shard's Kafka clients report here.
    pub kafka: Arc<KafkaHealth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Next offset the shard will read, -1 before the first message.
    pub position: i64,
    /// Log end offset last reported by the broker, -1 if unknown.
    pub end: i64,
}

/// Where a shard is in getting partitions to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardPhase {
    /// Subscribed; the consumer group has assigned nothing yet and nothing is read.
    #[default]
    Joining,
    /// Reading this server's share of the partitions while the group join
    /// runs (exactly-once: the offsets' compare-and-set settles any overlap).
    ReadingAhead,
    /// Holding partitions whose start offsets are being read.
    Starting,
    /// Reading the partitions the consumer group assigned.
    Reading,
    /// The consumer group assigned this shard no partition.
    Idle,
}

impl ShardPhase {
    fn code(self) -> u8 {
        match self {
            ShardPhase::Joining => 0,
            ShardPhase::ReadingAhead => 1,
            ShardPhase::Starting => 2,
            ShardPhase::Reading => 3,
            ShardPhase::Idle => 4,
        }
    }

    fn from_code(code: u8) -> ShardPhase {
        match code {
            1 => ShardPhase::ReadingAhead,
            2 => ShardPhase::Starting,
            3 => ShardPhase::Reading,
            4 => ShardPhase::Idle,
            _ => ShardPhase::Joining,
        }
    }
}

/// The brokers have been unreachable since `since_ms` (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub since_ms: i64,
    pub reason: String,
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

    pub fn phase(&self) -> ShardPhase {
        ShardPhase::from_code(self.phase.load(Ordering::Relaxed))
    }

    pub fn set_phase(&self, phase: ShardPhase) {
        self.phase.store(phase.code(), Ordering::Relaxed);
    }

    pub fn outage(&self) -> Option<Outage> {
        self.outage.lock().ok().and_then(|o| o.clone())
    }

    pub fn set_outage(&self, outage: Option<Outage>) {
        if let Ok(mut slot) = self.outage.lock() {
            *slot = outage;
        }
    }
}

/// What one source of Kafka traffic (the native fetcher, or librdkafka's
/// client) last said about the brokers: unreachable since when and why, or
/// reachable.
#[derive(Debug, Default)]
pub struct Reachability {
    /// Milliseconds since the epoch of the first failure in a row; 0 while reachable.
    down_since_ms: AtomicI64,
    /// When a broker last answered (milliseconds since the epoch; 0: never).
    answered_at_ms: AtomicI64,
    reason: Mutex<String>,
}

impl Reachability {
    /// A request failed because no broker could be reached; keeps the first failure's time.
    pub fn failed(&self, reason: &str) {
        if let Ok(mut slot) = self.reason.lock() {
            reason.clone_into(&mut slot);
        }
        let _ = self.down_since_ms.compare_exchange(0, now_ms().max(1), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// A broker answered.
    pub fn answered(&self) {
        self.answered_at_ms.store(now_ms(), Ordering::Release);
        self.down_since_ms.store(0, Ordering::Release);
    }

    /// Forgets the failures, without an answer (they concerned requests no longer made).
    pub fn forget(&self) {
        self.down_since_ms.store(0, Ordering::Release);
    }

    /// Whether a broker answered at or after `since_ms`.
    pub fn answered_since(&self, since_ms: i64) -> bool {
        self.answered_at_ms.load(Ordering::Acquire) >= since_ms
    }

    pub fn outage(&self) -> Option<Outage> {
        let since_ms = self.down_since_ms.load(Ordering::Acquire);
        if since_ms == 0 {
            return None;
        }
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        Some(Outage { since_ms, reason })
    }
}

/// A shard's Kafka clients' view of the brokers, and their warnings.
#[derive(Debug, Default)]
pub struct KafkaHealth {
    /// The native fetcher's requests to partition leaders.
    pub fetch: Reachability,
    /// librdkafka's connections (group coordinator, fetches when it fetches).
    pub client: Reachability,
    warnings: Mutex<WarningTally>,
}

/// Warnings not logged yet: how many, and the latest one's text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarningTally {
    pub count: u64,
    pub latest: String,
}

impl WarningTally {
    pub fn merge(&mut self, other: WarningTally) {
        if other.count > 0 {
            self.count += other.count;
            self.latest = other.latest;
        }
    }
}

impl KafkaHealth {
    /// Records a warning for the control plane to log (rate-limited per job).
    pub fn warn(&self, text: String) {
        tracing::debug!("{text}");
        if let Ok(mut tally) = self.warnings.lock() {
            tally.count += 1;
            tally.latest = text;
        }
    }

    pub fn take_warnings(&self) -> WarningTally {
        self.warnings.lock().map(|mut tally| std::mem::take(&mut *tally)).unwrap_or_default()
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_millis()).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_keeps_its_first_failure_time_and_the_latest_reason() {
        let source = Reachability::default();
        assert_eq!(source.outage(), None);
        source.failed("connection refused");
        let first = source.outage().map(|o| o.since_ms);
        std::thread::sleep(std::time::Duration::from_millis(5));
        source.failed("timed out");
        let outage = source.outage();
        assert_eq!(outage.as_ref().map(|o| o.since_ms), first);
        assert_eq!(outage.map(|o| o.reason), Some("timed out".to_string()));
        assert!(!source.answered_since(first.unwrap_or(0)));
        source.answered();
        assert_eq!(source.outage(), None);
        assert!(source.answered_since(first.unwrap_or(0)));
    }

    #[test]
    fn warnings_are_counted_until_taken() {
        let health = KafkaHealth::default();
        health.warn("a".into());
        health.warn("b".into());
        assert_eq!(health.take_warnings(), WarningTally { count: 2, latest: "b".into() });
        assert_eq!(health.take_warnings(), WarningTally::default());
    }
}

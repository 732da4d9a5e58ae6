//! What a shard needs to run its part of a job: the plan is built and
//! validated by the control plane, then shared read-only by every shard.

use std::time::Duration;

use crate::codec::DecodePlan;
use crate::kafka::fetcher::NativeFetchPlan;

/// One job, as every shard runs it.
#[derive(Debug)]
pub struct ShardJobPlan {
    /// The job's name, for logs and the consumer's client id.
    pub job: String,
    pub topic: String,
    /// librdkafka settings for the shard's consumer: brokers, group, the
    /// job's `properties` and the settings the consistency mode needs.
    pub consumer_config: Vec<(String, String)>,
    /// Fetch the partitions natively instead of through librdkafka (which
    /// then only keeps the group membership and commits offsets).
    pub native_fetch: Option<NativeFetchPlan>,
    /// By shard index: the partitions the shard reads at once, before the
    /// consumer group assigns any (this server's share; exactly-once jobs
    /// only, whose offsets' compare-and-set makes an overlap with another
    /// server harmless). Empty or missing: the shard waits for the group.
    pub read_ahead: Vec<Vec<i32>>,
    pub decode: DecodePlan,
    /// A batch is sealed this long after its first message arrived...
    pub batch_interval: Duration,
    /// ...or when it holds this many messages...
    pub batch_max_messages: Option<u64>,
    /// ...or when its buffers hold this many bytes (memory cap per batch).
    pub batch_max_bytes: usize,
    pub kafka_commit: KafkaCommit,
    /// Report [`crate::events::ShardEvent::Drained`] once every partition the
    /// shard holds is read to its end and committed.
    pub stop_at_eof: bool,
    /// Serve fast rows to WarehousePG / Greenplum segments through the shard's
    /// gpfdist listener instead of handing them to the control plane to copy.
    pub serve: Option<ServePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServePlan {
    /// The path in the external table's LOCATION (`/<job>`).
    pub path: String,
    pub rows: ServedRows,
}

/// The form of the rows served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedRows {
    /// fs_formatter rows (extension/FORMAT.md).
    FsFormatter,
    /// CSV lines of the fast columns (text only), when the database has no fs_formatter.
    Csv,
}

/// When the shard commits offsets to the Kafka consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCommit {
    /// After the database commit, as a courtesy for lag tools: the offsets
    /// that count live in the database (exactly-once).
    AfterLoadSecondary,
    /// After the database commit (at-least-once).
    AfterLoad,
    /// When the batch is sealed, before it is loaded (at-most-once).
    BeforeLoad,
    /// librdkafka's auto-commit of the offsets the shard stores as it seals
    /// batches (none; the consumer runs with `enable.auto.offset.store=false`).
    Auto,
}

//! Questions the control plane asks Kafka outside the shards: partitions of a
//! topic, where a partition's log starts and ends, which offset a timestamp
//! falls on. All calls block; run them with `spawn_blocking`.
//!
//! Brokers are not trusted blindly. tansu 0.6, the broker of our tests,
//! answers ListOffsets(latest) with an offset a few hundred below the log end
//! and OffsetsForTimes with 0 for every timestamp. So:
//! - the end offset is confirmed by reading from the reported end until the
//!   fetch says end-of-partition (fetch responses carry the true end);
//! - a timestamp lookup is checked against the messages' own timestamps, and
//!   replaced by a binary search over them when the broker's answer is wrong.
//!
//! With a broker that answers correctly both checks cost one short fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowserver_engine::stats::KafkaHealth;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KafkaAdminError {
    #[error("cannot create a kafka client: {0}")]
    Client(String),
    #[error("cannot read the metadata of topic {topic:?} from {brokers}: {reason}")]
    Metadata { topic: String, brokers: String, reason: String },
    #[error("topic {topic:?} does not exist on {brokers}")]
    NoTopic { topic: String, brokers: String },
    #[error("cannot read the offsets of partition {partition} of topic {topic:?}: {reason}")]
    Offsets { topic: String, partition: i32, reason: String },
}

/// Hands client errors and librdkafka's warnings to the job's
/// [`KafkaHealth`], which the job logs rate-limited; end-of-partition is how
/// the probe learns where a log ends, not an error.
pub struct ProbeContext {
    health: Arc<KafkaHealth>,
}

impl rdkafka::ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_eof(&error) {
            self.health.warn(format!("kafka client error: {error}: {reason}"));
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self.health.warn(format!("librdkafka: {facility}: {message}")),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!("librdkafka: {facility}: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {facility}: {message}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ProbeContext {}

pub struct KafkaProbe {
    consumer: BaseConsumer<ProbeContext>,
    brokers: String,
}

impl KafkaProbe {
    /// `properties` are the job's librdkafka settings (security and the like);
    /// the client's warnings go to `health`.
    pub fn new(
        brokers: &str,
        properties: &[(String, String)],
        health: Arc<KafkaHealth>,
    ) -> Result<KafkaProbe, KafkaAdminError> {
        let mut config = ClientConfig::new();
        for (key, value) in properties {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", "flowserver-probe")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<ProbeContext> =
            config.create_with_context(ProbeContext { health }).map_err(|e| KafkaAdminError::Client(e.to_string()))?;
        Ok(KafkaProbe { consumer, brokers: brokers.to_owned() })
    }

    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaAdminError> {
        let metadata = self.consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|source| {
            KafkaAdminError::Metadata { topic: topic.into(), brokers: self.brokers.clone(), reason: source.to_string() }
        })?;
        let no_topic = || KafkaAdminError::NoTopic { topic: topic.into(), brokers: self.brokers.clone() };
        let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else { return Err(no_topic()) };
        if entry.error().is_some() || entry.partitions().is_empty() {
            return Err(no_topic());
        }
        let mut partitions: Vec<i32> = entry.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Log start and end as the broker reports them (the end may be low; see the module doc).
    pub fn reported_bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaAdminError> {
        self.consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| self.offsets_error(topic, partition, e.to_string()))
    }

    /// `[start, end)` of the partition's log, with the end confirmed by a fetch.
    pub fn bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaAdminError> {
        let (low, reported_high) = self
            .consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| self.offsets_error(topic, partition, e.to_string()))?;
        if low < 0 {
            return Err(self.offsets_error(topic, partition, format!("the broker reported a log start of {low}")));
        }
        let high = self.read_to_end(topic, partition, reported_high.max(low))?;
        Ok((low, high.max(low)))
    }

    /// Reads from `from` until end-of-partition; returns the end offset.
    fn read_to_end(&self, topic: &str, partition: i32, from: i64) -> Result<i64, KafkaAdminError> {
        self.assign_one(topic, partition, from)?;
        let deadline = Instant::now() + TIMEOUT;
        let mut next = from;
        let result = loop {
            if Instant::now() > deadline {
                break Err(self.offsets_error(topic, partition, "no end-of-partition from the broker in time".into()));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Ok(message)) if message.partition() == partition => next = message.offset().saturating_add(1),
                Some(Ok(_)) => continue,
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(next),
                Some(Err(error)) => break Err(self.offsets_error(topic, partition, error.to_string())),
            }
        };
        let _ = self.consumer.unassign();
        result
    }

    /// The first offset whose message timestamp is at or after `timestamp_ms`
    /// (the end offset when there is none).
    pub fn offset_for_time(&self, topic: &str, partition: i32, timestamp_ms: i64) -> Result<i64, KafkaAdminError> {
        let (low, high) = self.bounds(topic, partition)?;
        if low >= high {
            return Ok(high);
        }
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))
            .map_err(|e| self.offsets_error(topic, partition, e.to_string()))?;
        let broker_answer = self.consumer.offsets_for_times(query, TIMEOUT).ok().and_then(|tpl| {
            tpl.find_partition(topic, partition).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                Offset::End => Some(high),
                _ => None,
            })
        });
        if let Some(candidate) = broker_answer
            && self.is_first_at_or_after(topic, partition, candidate, timestamp_ms, low, high)?
        {
            return Ok(candidate);
        }
        // Binary search for the first message at or after the timestamp,
        // assuming timestamps grow with offsets as Kafka's time index does.
        // `bounds` gives 0 <= low <= high, so `hi - lo` cannot overflow; the
        // broker's offsets are clamped into the range, so the search ends.
        let (mut lo, mut hi) = (low, high);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.timestamp_at(topic, partition, mid)? {
                Some((offset, ts)) if ts < timestamp_ms => lo = offset.clamp(mid, hi).saturating_add(1),
                _ => hi = mid,
            }
        }
        let lo = lo.min(high);
        Ok(lo)
    }

    fn is_first_at_or_after(
        &self,
        topic: &str,
        partition: i32,
        candidate: i64,
        timestamp_ms: i64,
        low: i64,
        high: i64,
    ) -> Result<bool, KafkaAdminError> {
        if candidate < low || candidate > high {
            return Ok(false);
        }
        let at = if candidate == high { None } else { self.timestamp_at(topic, partition, candidate)? };
        let at_ok = at.is_none_or(|(_, ts)| ts >= timestamp_ms);
        let before_ok = candidate == low
            || self.timestamp_at(topic, partition, candidate - 1)?.is_none_or(|(_, ts)| ts < timestamp_ms);
        Ok(at_ok && before_ok)
    }

    /// Offset and timestamp of the first message at or after `offset`.
    fn timestamp_at(&self, topic: &str, partition: i32, offset: i64) -> Result<Option<(i64, i64)>, KafkaAdminError> {
        self.assign_one(topic, partition, offset)?;
        let deadline = Instant::now() + TIMEOUT;
        let result = loop {
            if Instant::now() > deadline {
                break Err(self.offsets_error(topic, partition, format!("no message at offset {offset} in time")));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Ok(message)) if message.partition() == partition && message.offset() >= offset => {
                    break Ok(Some((message.offset(), message.timestamp().to_millis().unwrap_or(i64::MIN))));
                }
                Some(Ok(_)) => continue,
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(None),
                Some(Err(error)) => break Err(self.offsets_error(topic, partition, error.to_string())),
            }
        };
        let _ = self.consumer.unassign();
        result
    }

    fn assign_one(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaAdminError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| self.offsets_error(topic, partition, e.to_string()))?;
        self.consumer.assign(&tpl).map_err(|e| self.offsets_error(topic, partition, e.to_string()))
    }

    fn offsets_error(&self, topic: &str, partition: i32, reason: String) -> KafkaAdminError {
        KafkaAdminError::Offsets { topic: topic.into(), partition, reason }
    }
}

/// Deletes a consumer group (after `remove`). The admin future completes on
/// librdkafka's threads, so it can be awaited on any runtime.
pub async fn delete_group(brokers: &str, properties: &[(String, String)], group: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", brokers);
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin.delete_groups(&[group], &options).await.map_err(|e| e.to_string())?;
    for result in results {
        if let Err((name, code)) = result {
            return Err(format!("{name}: {code}"));
        }
    }
    Ok(())
}

/// End-of-partition reaches the client error callback as a partition event
/// or as a "global" error, depending on the path inside librdkafka.
fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF))
}

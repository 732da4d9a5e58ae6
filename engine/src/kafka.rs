//! A Kafka consumer a glommio task can wait on without polling in a loop and
//! without tokio.
//!
//! librdkafka fetches on its own threads into the consumer's main queue. The
//! queue's non-empty callback (run on a librdkafka thread, under the queue's
//! lock) only sets a flag and wakes the shard task; the task then drains the
//! queue with non-blocking polls. The callback fires on the empty → non-empty
//! edge only, so the task must drain until `poll` returns nothing, and every
//! event that `poll` swallows without returning (a rebalance, a commit result)
//! raises the flag again so the task comes back for what follows it.
//!
//! Group assignments are not applied in the rebalance callback: the callback
//! records them and the shard assigns later, with the start offsets the
//! control plane read from the database (librdkafka waits for that `assign`).

use std::collections::VecDeque;
use std::ffi::CString;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::events::{PartitionStart, StartPosition};

/// A change of the consumer group's assignment, noticed in the rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceNotice {
    Assigned(Vec<i32>),
    Revoked,
}

#[derive(Default)]
struct Readiness {
    flag: AtomicBool,
    waker: AtomicWaker,
}

impl Readiness {
    fn notify(&self) {
        self.flag.store(true, Ordering::Release);
        self.waker.wake();
    }
}

pub struct ShardContext {
    topic: String,
    notices: Mutex<VecDeque<RebalanceNotice>>,
    readiness: Arc<Readiness>,
}

impl ClientContext for ShardContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition arrives with each partition's EOF event as well; it is not a failure.
        if !is_partition_eof(&error) {
            tracing::warn!(topic = %self.topic, %error, %reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ShardContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let notice = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut partitions: Vec<i32> =
                    tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect();
                partitions.sort_unstable();
                RebalanceNotice::Assigned(partitions)
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(topic = %self.topic, error = ?err, "consumer group rebalance failed");
                }
                // The eager protocol requires the revocation to happen inside the callback.
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(topic = %self.topic, %error, "unassign failed");
                }
                RebalanceNotice::Revoked
            }
        };
        if let Ok(mut notices) = self.notices.lock() {
            notices.push_back(notice);
        }
        self.readiness.notify();
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::debug!(topic = %self.topic, %error, "kafka offset commit failed");
        }
        self.readiness.notify();
    }
}

/// One shard's consumer for one job.
pub struct ShardConsumer {
    consumer: BaseConsumer<ShardContext>,
    readiness: Arc<Readiness>,
    topic: String,
    topic_c: CString,
}

impl ShardConsumer {
    /// Creates the consumer and subscribes to `topic` in the group named by `config`.
    pub fn subscribe(config: &[(String, String)], topic: &str) -> KafkaResult<ShardConsumer> {
        let mut client_config = ClientConfig::new();
        for (key, value) in config {
            client_config.set(key, value);
        }
        let readiness = Arc::new(Readiness::default());
        let context = ShardContext {
            topic: topic.to_owned(),
            notices: Mutex::new(VecDeque::new()),
            readiness: readiness.clone(),
        };
        let mut consumer: BaseConsumer<ShardContext> = client_config.create_with_context(context)?;
        let callback_readiness = readiness.clone();
        consumer.set_nonempty_callback(move || callback_readiness.notify());
        consumer.subscribe(&[topic])?;
        let topic_c = CString::new(topic).map_err(|_| KafkaError::Subscription(topic.to_owned()))?;
        Ok(ShardConsumer { consumer, readiness, topic: topic.to_owned(), topic_c })
    }

    /// Resolves when the consumer has something to poll (or a notice to read).
    pub async fn readable(&self) {
        poll_fn(|cx| {
            if self.readiness.flag.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.readiness.waker.register(cx.waker());
            // The flag may have been raised between the swap and the registration.
            if self.readiness.flag.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }

    /// Next message or error, without waiting. `None` also after an event
    /// that poll handled itself (the readiness flag is raised then).
    pub fn poll(&self) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        self.consumer.poll(Duration::ZERO)
    }

    pub fn take_notices(&self) -> Vec<RebalanceNotice> {
        match self.consumer.context().notices.lock() {
            Ok(mut notices) => notices.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Applies a group assignment with the given start positions.
    pub fn assign(&self, starts: &[PartitionStart]) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for start in starts {
            tpl.add_partition_offset(&self.topic, start.partition, offset_of(start.position))?;
        }
        self.consumer.assign(&tpl)
    }

    /// Moves the read position of held partitions (messages fetched before are discarded).
    pub fn seek(&self, starts: &[PartitionStart]) -> KafkaResult<()> {
        for start in starts {
            self.consumer.seek(&self.topic, start.partition, offset_of(start.position), Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Commits `(partition, next offset)` pairs to the consumer group.
    pub fn commit(&self, offsets: impl Iterator<Item = (i32, i64)>, mode: CommitMode) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, mode)
    }

    /// The log end offset of `partition` as last reported by a fetch
    /// response, -1 if unknown. Fetch responses carry the true end, unlike
    /// some brokers' ListOffsets answers.
    pub fn cached_end_offset(&self, partition: i32) -> i64 {
        let mut low: i64 = -1;
        let mut high: i64 = -1;
        #[allow(unsafe_code)]
        // SAFETY: the client pointer is valid while `self.consumer` lives, the
        // topic is a NUL-terminated string that outlives the call, and the two
        // out-pointers are valid i64s; librdkafka only reads its cache here.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                self.topic_c.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR { high } else { -1 }
    }

    /// Hands the consumer to a plain thread to close: closing leaves the group
    /// and can block for a while, which a shard must never do.
    pub fn close_in_background(self) {
        let topic = self.topic.clone();
        let spawned = std::thread::Builder::new().name("consumer-close".into()).spawn(move || {
            self.consumer.unsubscribe();
            drop(self);
        });
        if let Err(error) = spawned {
            tracing::warn!(%topic, %error, "could not spawn a thread to close the consumer");
        }
    }
}

fn offset_of(position: StartPosition) -> Offset {
    match position {
        StartPosition::Offset(offset) => Offset::Offset(offset),
        StartPosition::GroupCommitted => Offset::Stored,
    }
}

/// End-of-partition reaches the client error callback as a partition event
/// or as a "global" error, depending on the path inside librdkafka.
fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF))
}

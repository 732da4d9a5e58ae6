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
//! Before the group's first assignment an exactly-once shard may `assign`
//! the partitions it reads ahead (librdkafka accepts an assignment of the
//! application's own while the join runs); the group's assignment replaces it.
//!
//! Errors and librdkafka's own warnings are not logged here: they go to the
//! shard's [`KafkaHealth`] (a connection failure also marks the client's
//! brokers unreachable there), which the control plane logs rate-limited per
//! job. An assignment or a successful commit is an answer from the brokers (a
//! revocation is not: librdkafka revokes by itself when its session times out).
//!
//! Messages are taken from per-partition queues in batches
//! (`rd_kafka_consume_batch_queue`) rather than one `poll` per message: after
//! each `assign` the shard detaches every assigned partition's fetch queue
//! from the consumer queue, which then carries only events (rebalances,
//! errors, commit results). One call returns up to a thousand messages under
//! one lock; a poll per message costs a lock, an event object and two clock
//! reads. A message is read in place and destroyed before the next `.await`.

use std::collections::VecDeque;
use std::ffi::CString;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::events::{PartitionStart, StartPosition};
use crate::stats::KafkaHealth;

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
    health: Arc<KafkaHealth>,
    /// `bootstrap.servers`, for reasons that name no broker.
    bootstrap: String,
}

impl ClientContext for ShardContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition arrives with each partition's EOF event as well; it is not a failure.
        if is_partition_eof(&error) {
            return;
        }
        if is_unreachable(&error) {
            if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
                self.health.client.failed(&format!("no broker of {} answers ({reason})", self.bootstrap));
            } else {
                self.health.client.failed(reason);
            }
        }
        self.health.warn(format!("kafka client error on topic {:?}: {error}: {reason}", self.topic));
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self.health.warn(format!("librdkafka: {facility}: {message}")),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(topic = %self.topic, "librdkafka: {facility}: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(topic = %self.topic, "librdkafka: {facility}: {message}"),
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
                // Only the group coordinator assigns.
                self.health.client.answered();
                RebalanceNotice::Assigned(partitions)
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    self.health.warn(format!("consumer group rebalance failed on topic {:?}: {err:?}", self.topic));
                }
                // The eager protocol requires the revocation to happen inside the callback.
                if let Err(error) = consumer.unassign() {
                    self.health.warn(format!("unassign failed on topic {:?}: {error}", self.topic));
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
        match result {
            Ok(()) => self.health.client.answered(),
            Err(error) => tracing::debug!(topic = %self.topic, %error, "kafka offset commit failed"),
        }
        self.readiness.notify();
    }
}

/// Fields of one message of a partition queue, borrowed until the next drain.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub partition: i32,
    pub offset: i64,
    /// -1 when the message has none.
    pub timestamp_ms: i64,
    pub payload: Option<&'a [u8]>,
}

/// What a partition queue delivered besides messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEvent {
    EndOfPartition(i32),
    /// The stored offset is outside the log (`auto.offset.reset=error`).
    OffsetOutOfRange(i32),
    Error(i32, RDKafkaRespErr),
    /// A record batch the native fetch path cannot decode (logged where found).
    Undecodable(i32),
}

/// Detached fetch queues of the assigned partitions.
struct PartitionQueues {
    queues: Vec<(i32, std::ptr::NonNull<rdkafka::bindings::rd_kafka_queue_t>)>,
    batch: Vec<*mut rdkafka::bindings::rd_kafka_message_t>,
    /// The queue a drain starts with, rotating so that a deep queue cannot
    /// starve the others when each drain fills the batch.
    first: usize,
}

/// Messages taken from one queue per call.
const QUEUE_BATCH: usize = 1024;

#[allow(unsafe_code)]
unsafe extern "C" fn partition_queue_nonempty(_: *mut rdkafka::bindings::rd_kafka_t, opaque: *mut std::ffi::c_void) {
    // SAFETY: `opaque` is the `Readiness` the owning `ShardConsumer` keeps alive
    // (in an `Arc`) until after the callback is disabled and the queue destroyed.
    let readiness = unsafe { &*(opaque as *const Readiness) };
    readiness.notify();
}

#[allow(unsafe_code)]
// SAFETY: librdkafka queue handles may be used and destroyed from any thread;
// `batch` only holds pointers during a drain, on the owning thread.
unsafe impl Send for PartitionQueues {}

impl PartitionQueues {
    fn close(&mut self) {
        for (_, queue) in self.queues.drain(..) {
            #[allow(unsafe_code)]
            // SAFETY: each queue was returned by `rd_kafka_queue_get_partition` and is destroyed once.
            unsafe {
                rdkafka::bindings::rd_kafka_queue_cb_event_enable(queue.as_ptr(), None, std::ptr::null_mut());
                rdkafka::bindings::rd_kafka_queue_destroy(queue.as_ptr());
            }
        }
    }
}

impl Drop for PartitionQueues {
    fn drop(&mut self) {
        self.close();
    }
}

/// One shard's consumer for one job.
pub struct ShardConsumer {
    // Declared first: dropped before the consumer whose queues they are.
    partitions: PartitionQueues,
    consumer: BaseConsumer<ShardContext>,
    readiness: Arc<Readiness>,
    topic: String,
    topic_c: CString,
}

impl ShardConsumer {
    /// Creates the consumer and subscribes to `topic` in the group named by
    /// `config`; its errors and warnings go to `health`.
    pub fn subscribe(config: &[(String, String)], topic: &str, health: Arc<KafkaHealth>) -> KafkaResult<ShardConsumer> {
        let mut client_config = ClientConfig::new();
        for (key, value) in config {
            client_config.set(key, value);
        }
        let readiness = Arc::new(Readiness::default());
        let context = ShardContext {
            topic: topic.to_owned(),
            notices: Mutex::new(VecDeque::new()),
            readiness: readiness.clone(),
            health,
            bootstrap: config
                .iter()
                .find(|(key, _)| key == "bootstrap.servers")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        };
        let mut consumer: BaseConsumer<ShardContext> = client_config.create_with_context(context)?;
        let callback_readiness = readiness.clone();
        consumer.set_nonempty_callback(move || callback_readiness.notify());
        consumer.subscribe(&[topic])?;
        let topic_c = CString::new(topic).map_err(|_| KafkaError::Subscription(topic.to_owned()))?;
        Ok(ShardConsumer {
            partitions: PartitionQueues { queues: Vec::new(), batch: Vec::with_capacity(QUEUE_BATCH), first: 0 },
            consumer,
            readiness,
            topic: topic.to_owned(),
            topic_c,
        })
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

    /// Applies an assignment (the group's, or before the group's first one,
    /// the partitions read ahead) with the given start positions, and takes
    /// each partition's fetch queue apart from the consumer queue.
    pub fn assign(&mut self, starts: &[PartitionStart]) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for start in starts {
            tpl.add_partition_offset(&self.topic, start.partition, offset_of(start.position))?;
        }
        // An assignment deactivates queues split before it.
        self.partitions.close();
        self.consumer.assign(&tpl)?;
        for start in starts {
            #[allow(unsafe_code)]
            // SAFETY: the client and the topic string outlive the call; the
            // returned queue is owned by `self.partitions` and destroyed before
            // the consumer (field order); the callback's opaque pointer is the
            // `Readiness` kept alive by `self.readiness` at least as long.
            let queue = unsafe {
                let queue = rdkafka::bindings::rd_kafka_queue_get_partition(
                    self.consumer.client().native_ptr(),
                    self.topic_c.as_ptr(),
                    start.partition,
                );
                if !queue.is_null() {
                    rdkafka::bindings::rd_kafka_queue_forward(queue, std::ptr::null_mut());
                    rdkafka::bindings::rd_kafka_queue_cb_event_enable(
                        queue,
                        Some(partition_queue_nonempty),
                        Arc::as_ptr(&self.readiness) as *mut std::ffi::c_void,
                    );
                }
                queue
            };
            match std::ptr::NonNull::new(queue) {
                Some(queue) => self.partitions.queues.push((start.partition, queue)),
                None => return Err(KafkaError::Subscription(format!("{} [{}]", self.topic, start.partition))),
            }
        }
        // Messages may have arrived before the queues were split.
        self.readiness.notify();
        Ok(())
    }

    /// Completes a group assignment without fetching anything through
    /// librdkafka: the native fetcher reads the partitions, librdkafka keeps
    /// the membership and commits offsets.
    pub fn assign_membership_only(&mut self) -> KafkaResult<()> {
        self.partitions.close();
        self.consumer.assign(&TopicPartitionList::new())
    }

    /// Forgets the partition queues (after a revocation).
    pub fn release_partitions(&mut self) {
        self.partitions.close();
    }

    /// Takes up to `limit` messages from the partition queues, calling
    /// `on_message` for each and `on_event` for end-of-partition and errors.
    /// Returns the number of messages and whether a queue may still hold more.
    pub fn drain_partitions(
        &mut self,
        limit: usize,
        mut on_message: impl FnMut(RawMessage<'_>),
        mut on_event: impl FnMut(QueueEvent),
    ) -> (usize, bool) {
        let PartitionQueues { queues, batch, first } = &mut self.partitions;
        let mut taken = 0usize;
        let mut more = false;
        let count = queues.len();
        *first = if count == 0 { 0 } else { (*first + 1) % count };
        for (partition, queue) in queues.iter().cycle().skip(*first).take(count) {
            if taken >= limit {
                more = true;
                break;
            }
            let want = QUEUE_BATCH.min(limit - taken);
            batch.clear();
            #[allow(unsafe_code)]
            // SAFETY: `batch` has room for `want` pointers; librdkafka writes `n`
            // valid message pointers, each destroyed exactly once below.
            let n = unsafe {
                let n = rdkafka::bindings::rd_kafka_consume_batch_queue(queue.as_ptr(), 0, batch.as_mut_ptr(), want);
                if n > 0 {
                    batch.set_len(n as usize);
                }
                n
            };
            if n <= 0 {
                continue;
            }
            if n as usize == want {
                more = true;
            }
            for &message in batch.iter() {
                #[allow(unsafe_code)]
                // SAFETY: `message` is a valid `rd_kafka_message_t` until destroyed;
                // the payload slice does not outlive `on_message`.
                unsafe {
                    let m = &*message;
                    match m.err {
                        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
                            taken += 1;
                            let payload = if m.payload.is_null() {
                                None
                            } else {
                                Some(std::slice::from_raw_parts(m.payload as *const u8, m.len))
                            };
                            let mut kind =
                                rdkafka::bindings::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                            let timestamp_ms = rdkafka::bindings::rd_kafka_message_timestamp(message, &mut kind);
                            on_message(RawMessage { partition: m.partition, offset: m.offset, timestamp_ms, payload });
                        }
                        RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                            on_event(QueueEvent::EndOfPartition(*partition))
                        }
                        RDKafkaRespErr::RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET
                        | RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE => {
                            on_event(QueueEvent::OffsetOutOfRange(*partition))
                        }
                        error => on_event(QueueEvent::Error(*partition, error)),
                    }
                    rdkafka::bindings::rd_kafka_message_destroy(message);
                }
            }
            batch.clear();
        }
        (taken, more)
    }

    /// Moves the read position of held partitions (messages fetched before are discarded).
    pub fn seek(&self, starts: &[PartitionStart]) -> KafkaResult<()> {
        for start in starts {
            self.consumer.seek(&self.topic, start.partition, offset_of(start.position), Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Stores `(partition, next offset)` pairs for the next automatic commit
    /// (needs `enable.auto.offset.store=false`: batches read from partition
    /// queues are not stored by librdkafka).
    pub fn store(&self, offsets: impl Iterator<Item = (i32, i64)>) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.store_offsets(&tpl)
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
    pub fn close_in_background(mut self) {
        self.partitions.close();
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

/// Whether a librdkafka error says the brokers could not be reached (rather
/// than a broker refusing a request).
pub fn is_unreachable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::BrokerNotAvailable
        )
    )
}

/// End-of-partition reaches the client error callback as a partition event
/// or as a "global" error, depending on the path inside librdkafka.
fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF))
}

//! One job's work on one shard: read the partitions the consumer group gives
//! the shard, encode messages into a batch, hand sealed batches to the control
//! plane, and move on only as their outcomes say.
//!
//! # Invariants
//! - At most one sealed batch per (job, shard) is in flight; the next batch is
//!   decoded meanwhile, and reading pauses when it is full (backpressure: the
//!   consumer's queue fills and librdkafka stops fetching).
//! - A partition is read only after the control plane answered its
//!   assignment with start offsets (read from the database for exactly-once).
//! - `PartitionState::stored` is the value the database will hold once every
//!   sealed batch commits; each batch carries it as `stored_before`, which the
//!   commit checks, so a batch that raced a rebalance can never commit twice.
//! - On revocation, conflict or an out-of-range offset the open batch is
//!   dropped, never partly loaded, and reading resumes from stored offsets.
//!
//! # Reading ahead of the group join (exactly-once)
//! A join can take seconds (tansu answers JoinGroup late; Kafka waits
//! `group.initial.rebalance.delay.ms`). An exactly-once shard does not wait:
//! it reads its share of the topic on this server (`plan.read_ahead`) from
//! the database's offsets at once, while librdkafka joins. Another server
//! reading the same partitions meanwhile is harmless: whichever batch commits
//! first wins the offsets' compare-and-set, the other gets `Conflict` and
//! re-reads. When the group's assignment arrives, partitions it keeps go on
//! without a rewind, partitions it drops stop (the open batch is dropped if it
//! holds any of them), and new ones start from stored offsets. Kafka commits
//! wait for the join; then the group gets the offsets the database holds.
//!
//! # Broker outages
//! The shard's Kafka clients record failures in [`KafkaHealth`]; the shard
//! confirms them (a failure must persist, and librdkafka's reports must be
//! backed by a failed TCP connection to every bootstrap broker) before it
//! publishes an [`Outage`], and clears it when a broker answers again. It
//! then re-reads its start offsets from the database and checks them
//! against the log, exactly as at start: a broker that lost its data (a
//! re-created topic) yields the same offset-gap error, or `fallback_offset`.
//! On librdkafka's fetch path the consumer fetches nothing during the outage
//! and is replaced by a new one after it (librdkafka 2.12 crashes on a
//! returning broker's answer for a topic it lost).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::CommitMode;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::batch::{Batch, MessageMeta, PartitionRange};
use crate::codec::{Encoded, RowEncoder, fsrow};
use crate::events::{BatchOutcome, ControlReply, PartitionStart, ShardEvent, StartPosition};
use crate::gpfdist::{GpfdistServer, ServedBatch};
use crate::kafka::fetcher::{FetchSink, NativeFetcher, any_accepts};
use crate::kafka::{QueueEvent, RawMessage, RebalanceNotice, ShardConsumer, is_unreachable};
use crate::plan::{KafkaCommit, ServedRows, ShardJobPlan};
use crate::stats::{Outage, PartitionProgress, ShardJobStats, ShardPhase, now_ms};

/// Messages read between two checks of the control channel and the clock.
const DRAIN_CHUNK: usize = 4096;
const STATS_EVERY: Duration = Duration::from_millis(500);
/// How long failures must go on (several retries) before they are an outage.
const OUTAGE_CONFIRM_MS: i64 = 1000;
/// How often, and how patiently, the bootstrap brokers' ports are tried
/// while librdkafka reports them down.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// The shard's end of a job link.
pub struct ShardSide {
    pub events: Sender<ShardEvent>,
    pub replies: Receiver<ControlReply>,
    pub stats: Arc<ShardJobStats>,
}

/// Runs the job on this shard until it is stopped or fails, then reports `Stopped`.
pub async fn run(plan: Arc<ShardJobPlan>, side: ShardSide, shard: usize, gpfdist: Option<Rc<GpfdistServer>>) {
    let events = side.events.clone();
    let error = match JobTask::start(plan, side, shard, gpfdist) {
        Ok(mut task) => {
            let result = task.run().await;
            task.stop_serving();
            task.consumer.close_in_background();
            result.err()
        }
        Err(error) => Some(error),
    };
    // The control plane may be gone already; nothing else to tell.
    let _ = events.send(ShardEvent::Stopped { error }).await;
}

#[derive(Debug, Clone, Copy, Default)]
struct PartitionState {
    /// Assigned and started: messages of this partition are loaded.
    active: bool,
    /// Database offset once every sealed batch commits (-1: none).
    stored: i64,
    /// Database offset as of the last commit the shard knows of (-1: none).
    loaded: i64,
    /// Next offset to read, -1 until known.
    next: i64,
    at_eof: bool,
    /// Index of this partition's range in the open batch.
    range: Option<usize>,
}

enum Pending {
    /// This server's share, read before the group assigns anything.
    ReadAhead,
    /// A group assignment waiting for start offsets (librdkafka waits for it).
    Group,
    /// Partitions the group added to those read ahead.
    Added,
    /// Held partitions to re-read from stored offsets.
    Rewind,
}

/// The TCP check behind librdkafka's "brokers down" reports.
#[derive(Default)]
struct BrokerProbe {
    in_flight: Cell<bool>,
    /// When the last check failed (milliseconds since the epoch; 0: never).
    failed_at_ms: Cell<i64>,
    next_at: Cell<Option<Instant>>,
}

enum Wake {
    Reply(Option<ControlReply>),
    Readable,
    Timer,
}

struct JobTask {
    plan: Arc<ShardJobPlan>,
    shard: usize,
    consumer: ShardConsumer,
    /// Reads the partitions when the plan says so; the consumer then only keeps the group.
    native: Option<NativeFetcher>,
    events: Sender<ShardEvent>,
    replies: Receiver<ControlReply>,
    stats: Arc<ShardJobStats>,
    /// The shard's listener, when the job serves its rows to segments.
    gpfdist: Option<Rc<GpfdistServer>>,
    /// Scratch for the partition queues' non-message events.
    queue_events: Vec<QueueEvent>,
    read: ReadState,
    generation: u64,
    pending: Option<(u64, Pending)>,
    held: Vec<i32>,
    /// The consumer group has assigned partitions at least once.
    joined: bool,
    /// `held` is this server's read-ahead share, not (yet) the group's assignment.
    reading_ahead: bool,
    /// What librdkafka is assigned, when it fetches.
    librdkafka_assigned: Vec<i32>,
    /// The outage this shard reports (confirmed), if any.
    outage: Option<Outage>,
    probe: Rc<BrokerProbe>,
    /// `host:port` of the bootstrap brokers, for the probe.
    bootstrap: Vec<String>,
    spare: Option<Box<Batch>>,
    in_flight: Option<u64>,
    next_seq: u64,
    stopping: bool,
    next_stats: Instant,
    progress: Vec<PartitionProgress>,
}

/// What reading a message changes; kept apart from the consumer so a message
/// borrowed from the consumer can be encoded into it.
struct ReadState {
    encoder: RowEncoder,
    /// Fast rows are fs_formatter rows: a length word before each tuple.
    length_prefixed: bool,
    /// Dense by partition id.
    partitions: Vec<PartitionState>,
    open: Box<Batch>,
    drained_reported: bool,
}

impl JobTask {
    fn start(
        plan: Arc<ShardJobPlan>,
        side: ShardSide,
        shard: usize,
        gpfdist: Option<Rc<GpfdistServer>>,
    ) -> Result<JobTask, String> {
        let gpfdist = match (&plan.serve, gpfdist) {
            (None, _) => None,
            (Some(_), Some(server)) => Some(server),
            (Some(_), None) => {
                return Err("this flowserver runs no gpfdist listener (Gpfdist in flow_server.json)".into());
            }
        };
        let length_prefixed = plan.serve.as_ref().is_some_and(|s| s.rows == ServedRows::FsFormatter);
        let health = side.stats.kafka.clone();
        let consumer = ShardConsumer::subscribe(&plan.consumer_config, &plan.topic, health.clone())
            .map_err(|error| format!("cannot create the kafka consumer: {error}"))?;
        let encoder = RowEncoder::new(&plan.decode);
        let native = plan.native_fetch.clone().map(|fetch| NativeFetcher::start(fetch, &plan.topic, health));
        let bootstrap = plan
            .consumer_config
            .iter()
            .filter(|(key, _)| key == "bootstrap.servers")
            .flat_map(|(_, value)| value.split(','))
            .map(|broker| broker.trim().rsplit("://").next().unwrap_or_default().to_owned())
            .filter(|broker| !broker.is_empty())
            .collect();
        Ok(JobTask {
            plan,
            shard,
            consumer,
            native,
            events: side.events,
            replies: side.replies,
            stats: side.stats,
            gpfdist,
            queue_events: Vec::new(),
            read: ReadState {
                encoder,
                length_prefixed,
                partitions: Vec::new(),
                open: Box::new(Batch::new()),
                drained_reported: false,
            },
            generation: 0,
            pending: None,
            held: Vec::new(),
            joined: false,
            reading_ahead: false,
            librdkafka_assigned: Vec::new(),
            outage: None,
            probe: Rc::new(BrokerProbe::default()),
            bootstrap,
            spare: None,
            in_flight: None,
            next_seq: 1,
            stopping: false,
            next_stats: Instant::now(),
            progress: Vec::new(),
        })
    }

    async fn run(&mut self) -> Result<(), String> {
        self.read_ahead().await?;
        loop {
            while let Ok(reply) = self.replies.try_recv() {
                self.on_reply(reply).await?;
            }
            for notice in self.consumer.take_notices() {
                self.on_rebalance(notice).await?;
            }
            // The queue's callback only signals the empty → non-empty edge: a
            // drain that stopped before emptying the queue must come back
            // without waiting for a signal.
            let mut queue_left_nonempty = false;
            if self.may_read() {
                queue_left_nonempty = self.drain().await?;
            }
            if self.in_flight.is_none() && self.should_seal() {
                self.seal().await?;
            }
            if self.stopping && self.in_flight.is_none() && self.read.open.message_count() == 0 {
                return Ok(());
            }
            self.report_drained().await?;
            if Instant::now() >= self.next_stats {
                self.watch_brokers().await?;
                self.publish_stats();
            }

            if queue_left_nonempty && self.may_read() {
                continue;
            }
            let wait = self.next_deadline().saturating_duration_since(Instant::now());
            let reply = async { Wake::Reply(self.replies.recv().await.ok()) };
            let readable = async {
                if self.may_read() {
                    match &self.native {
                        Some(native) => self.consumer.readable().or(native.readable()).await,
                        None => self.consumer.readable().await,
                    }
                    Wake::Readable
                } else {
                    std::future::pending::<Wake>().await
                }
            };
            let timer = async {
                glommio::timer::sleep(wait).await;
                Wake::Timer
            };
            match reply.or(readable).or(timer).await {
                Wake::Reply(Some(reply)) => self.on_reply(reply).await?,
                Wake::Reply(None) => return Err("the control plane went away".into()),
                Wake::Readable | Wake::Timer => {}
            }
        }
    }

    /// Reading stops while the open batch is full and another is in flight,
    /// and once the job is stopping.
    fn may_read(&self) -> bool {
        !(self.stopping || self.in_flight.is_some() && self.open_is_full())
    }

    fn open_is_full(&self) -> bool {
        let count = self.read.open.message_count() as u64;
        self.plan.batch_max_messages.is_some_and(|max| count >= max)
            || self.read.open.byte_size() >= self.plan.batch_max_bytes
    }

    fn should_seal(&self) -> bool {
        if self.read.open.message_count() == 0 {
            return false;
        }
        self.stopping
            || self.open_is_full()
            || self.read.open.opened_at.elapsed() >= self.plan.batch_interval
            || (self.plan.stop_at_eof && self.all_held_at_eof())
    }

    fn all_held_at_eof(&self) -> bool {
        self.pending.is_none()
            && !self.held.is_empty()
            && self.held.iter().all(|&p| self.read.partition(p).is_some_and(|s| s.active && s.at_eof))
    }

    /// When the loop must look again without being woken: the open batch's
    /// interval (the only time-based seal, as `should_seal` says) and the
    /// next stats. A deadline `should_seal` does not act on would spin the
    /// loop until the batch interval, starving the shard's other tasks.
    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_stats;
        if self.read.open.message_count() > 0 && self.in_flight.is_none() {
            deadline = deadline.min(self.read.open.opened_at + self.plan.batch_interval);
        }
        deadline
    }

    /// Reads what the consumer has, up to a chunk or a full batch; true when
    /// it stopped with messages possibly left in a queue.
    async fn drain(&mut self) -> Result<bool, String> {
        let mut read = 0usize;
        let mut bytes = 0u64;
        let mut reset_seen = false;
        // The consumer queue: events, and messages fetched before an assignment's queues were split.
        let mut events_left = false;
        loop {
            if read >= DRAIN_CHUNK || self.open_is_full() {
                events_left = true;
                break;
            }
            let Some(polled) = self.consumer.poll() else { break };
            match polled {
                Ok(message) => {
                    read += 1;
                    bytes += message.payload_len() as u64;
                    let partition = message.partition();
                    let offset = message.offset();
                    let timestamp_ms = message.timestamp().to_millis().unwrap_or(-1);
                    let payload = message.payload();
                    self.read.on_message(partition, offset, timestamp_ms, payload);
                }
                Err(KafkaError::PartitionEOF(partition)) => self.read.mark_eof(partition),
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => reset_seen = true,
                // The client's error callback has recorded it already.
                Err(error) if is_unreachable(&error) => {}
                Err(error) => self.stats.kafka.warn(format!("kafka consumer error: {error}")),
            }
        }
        // The partition queues, in batches.
        let room = self.room_in_batch().min(DRAIN_CHUNK.saturating_sub(read));
        let partitions_left = if room > 0 {
            self.queue_events.clear();
            let (taken, more) = match &mut self.native {
                Some(native) => {
                    let mut sink = TaskSink { read: &mut self.read, bytes: &mut bytes, events: &mut self.queue_events };
                    native.drain(room, &mut sink)
                }
                None => {
                    let read_state = &mut self.read;
                    let events = &mut self.queue_events;
                    self.consumer.drain_partitions(
                        room,
                        |message| {
                            bytes += message.payload.map_or(0, <[u8]>::len) as u64;
                            read_state.on_message(
                                message.partition,
                                message.offset,
                                message.timestamp_ms,
                                message.payload,
                            );
                        },
                        |event| events.push(event),
                    )
                }
            };
            read += taken;
            for event in std::mem::take(&mut self.queue_events) {
                match event {
                    QueueEvent::EndOfPartition(partition) => self.read.mark_eof(partition),
                    QueueEvent::OffsetOutOfRange(_) => reset_seen = true,
                    QueueEvent::Error(partition, error) => {
                        self.stats.kafka.warn(format!("kafka fetch error on partition {partition}: {error:?}"));
                    }
                    QueueEvent::Undecodable(partition) => {
                        return Err(format!(
                            "partition {partition} of topic {:?} holds a record batch that cannot be decoded \
                             (the log names it); nothing of it was loaded",
                            self.plan.topic
                        ));
                    }
                }
            }
            more
        } else {
            true
        };
        self.stats.add_read(read as u64, bytes);
        if reset_seen {
            // A stored offset fell outside the log (retention ran ahead of the
            // job): let the control plane decide where to go, with the
            // job's fallback_offset.
            self.rewind().await?;
        }
        if read > 0 {
            glommio::yield_if_needed().await;
        }
        Ok(events_left || partitions_left)
    }

    /// Messages the open batch can still take before it is full by count.
    fn room_in_batch(&self) -> usize {
        if self.open_is_full() {
            return 0;
        }
        match self.plan.batch_max_messages {
            Some(max) => {
                usize::try_from(max.saturating_sub(self.read.open.message_count() as u64)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        }
    }

    async fn seal(&mut self) -> Result<(), String> {
        let fresh = self.spare.take().unwrap_or_else(|| Box::new(Batch::new()));
        let mut batch = std::mem::replace(&mut self.read.open, fresh);
        batch.seq = self.next_seq;
        batch.sealed_at = Instant::now();
        self.next_seq += 1;
        for range in &batch.partitions {
            if let Some(state) = self.read.partition_mut(range.partition) {
                state.stored = range.next;
                state.range = None;
            }
        }
        if self.plan.kafka_commit == KafkaCommit::Auto {
            let offsets = batch.partitions.iter().map(|r| (r.partition, r.next));
            if let Err(error) = self.consumer.store(offsets) {
                tracing::warn!(job = %self.plan.job, shard = self.shard, %error, "cannot store offsets for auto-commit");
            }
        }
        if self.plan.kafka_commit == KafkaCommit::BeforeLoad {
            let offsets = batch.partitions.iter().map(|r| (r.partition, r.next));
            self.consumer
                .commit(offsets, CommitMode::Sync)
                .map_err(|error| format!("cannot commit offsets to kafka before loading: {error}"))?;
        }
        self.serve(&mut batch);
        self.in_flight = Some(batch.seq);
        self.send(ShardEvent::Sealed(batch)).await
    }

    /// Publishes the batch's fast rows on the job's gpfdist path: the next
    /// scan that arrives there reads them.
    fn serve(&self, batch: &mut Batch) {
        let (Some(server), Some(serve)) = (&self.gpfdist, &self.plan.serve) else { return };
        let data = std::mem::take(&mut batch.fast.data);
        let row_ends = std::mem::take(&mut batch.fast.ends);
        let served = match serve.rows {
            ServedRows::FsFormatter => ServedBatch { data, row_ends },
            ServedRows::Csv => {
                // The tuples stay in the batch: the control plane falls back to them.
                let served = tuples_to_csv(&data, &row_ends);
                batch.fast.data = data;
                batch.fast.ends = row_ends;
                served
            }
        };
        let served = Arc::new(served);
        server.publish(&serve.path, served.clone());
        batch.served = Some(served);
    }

    /// The batch's outcome is known: no new scan may read it.
    fn unserve(&self, batch: &mut Batch) {
        if let (Some(server), Some(serve)) = (&self.gpfdist, &self.plan.serve) {
            server.retract(&serve.path);
        }
        if let Some(served) = batch.served.take() {
            // Take the buffers back for the next batch, unless a late scan still holds them.
            if let Ok(ServedBatch { data, row_ends }) = Arc::try_unwrap(served)
                && self.read.length_prefixed
            {
                batch.fast.data = data;
                batch.fast.ends = row_ends;
            }
        }
    }

    fn stop_serving(&self) {
        if let (Some(server), Some(serve)) = (&self.gpfdist, &self.plan.serve) {
            server.retract(&serve.path);
        }
    }

    async fn on_reply(&mut self, reply: ControlReply) -> Result<(), String> {
        match reply {
            ControlReply::Stop => {
                self.stopping = true;
                Ok(())
            }
            ControlReply::StartOffsets { generation, offsets } => {
                let Some((pending_generation, _)) = &self.pending else { return Ok(()) };
                if *pending_generation != generation {
                    return Ok(()); // answer to an assignment that no longer holds
                }
                let Some((_, kind)) = self.pending.take() else { return Ok(()) };
                let starts = offsets?;
                self.begin_reading(&starts, kind)
            }
            ControlReply::BatchOutcome { seq, outcome } => {
                if self.in_flight != Some(seq) {
                    return Err(format!("outcome for batch {seq}, which is not in flight"));
                }
                self.in_flight = None;
                match outcome {
                    BatchOutcome::Committed { buffers } => {
                        match buffers {
                            Some(mut batch) => {
                                for range in &batch.partitions {
                                    if let Some(state) = self.read.partition_mut(range.partition) {
                                        state.loaded = range.next;
                                    }
                                }
                                self.commit_to_kafka(&batch);
                                self.unserve(&mut batch);
                                batch.clear();
                                self.spare = Some(batch);
                            }
                            None => self.stop_serving(),
                        }
                        Ok(())
                    }
                    BatchOutcome::Conflict => {
                        self.stop_serving();
                        tracing::info!(job = %self.plan.job, shard = self.shard, "batch lost an offset race; re-reading from stored offsets");
                        self.rewind().await
                    }
                    BatchOutcome::Failed => {
                        self.stop_serving();
                        Err("the batch could not be loaded".into())
                    }
                }
            }
        }
    }

    fn commit_to_kafka(&self, batch: &Batch) {
        let mode = match self.plan.kafka_commit {
            KafkaCommit::AfterLoad | KafkaCommit::AfterLoadSecondary => CommitMode::Async,
            KafkaCommit::BeforeLoad | KafkaCommit::Auto => return,
        };
        // Before the join the group has no member to commit for; the join commits what the database holds.
        if !self.joined {
            return;
        }
        let offsets = batch.partitions.iter().map(|r| (r.partition, r.next));
        if let Err(error) = self.consumer.commit(offsets, mode) {
            self.stats.kafka.warn(format!("cannot commit offsets to kafka: {error}"));
        }
    }

    /// Commits to the consumer group what the database holds for the held
    /// partitions (exactly-once), so lag tools see the loaded offsets as soon
    /// as the shard is a member, even when nothing is loaded after the join.
    fn commit_loaded(&self) {
        if self.plan.kafka_commit != KafkaCommit::AfterLoadSecondary || !self.joined {
            return;
        }
        let offsets: Vec<(i32, i64)> = self
            .held
            .iter()
            .filter_map(|&p| self.read.partition(p).filter(|s| s.active && s.loaded >= 0).map(|s| (p, s.loaded)))
            .collect();
        if let Err(error) = self.consumer.commit(offsets.into_iter(), CommitMode::Async) {
            self.stats.kafka.warn(format!("cannot commit offsets to kafka: {error}"));
        }
    }

    fn begin_reading(&mut self, starts: &[PartitionStart], kind: Pending) -> Result<(), String> {
        for start in starts {
            let next = match start.position {
                StartPosition::Offset(offset) => offset,
                StartPosition::GroupCommitted => -1,
            };
            if let Some(state) = self.read.partition_mut(start.partition) {
                *state = PartitionState {
                    active: true,
                    stored: start.stored,
                    loaded: start.stored,
                    next,
                    at_eof: false,
                    range: None,
                };
            }
        }
        self.apply_positions(starts, matches!(kind, Pending::Group))?;
        // The database may hold more than the group (another server loaded, a rewind).
        self.commit_loaded();
        let fetch = self.fetch_path();
        match kind {
            Pending::ReadAhead => tracing::info!(
                job = %self.plan.job,
                shard = self.shard,
                partitions = ?self.held,
                fetch,
                "reading partitions ahead of the consumer group join (this server's share)"
            ),
            Pending::Group | Pending::Added | Pending::Rewind => {
                tracing::info!(job = %self.plan.job, shard = self.shard, partitions = ?self.held, fetch, "reading partitions")
            }
        }
        Ok(())
    }

    fn fetch_path(&self) -> &'static str {
        if self.native.is_some() { "native" } else { "librdkafka" }
    }

    /// Points the fetch path at every active held partition: `starts` where
    /// given, else where reading is. `completes_rebalance`: this answers the
    /// group's assignment, which librdkafka waits for.
    fn apply_positions(&mut self, starts: &[PartitionStart], completes_rebalance: bool) -> Result<(), String> {
        let mut positions = Vec::with_capacity(self.held.len());
        for &partition in &self.held {
            let Some(state) = self.read.partition(partition).filter(|s| s.active) else { continue };
            let position = match starts.iter().find(|s| s.partition == partition) {
                Some(start) => start.position,
                None if state.next >= 0 => StartPosition::Offset(state.next),
                None => StartPosition::GroupCommitted,
            };
            positions.push(PartitionStart { partition, position, stored: state.stored });
        }
        let result = match &mut self.native {
            Some(native) => {
                let mut offsets = Vec::with_capacity(positions.len());
                for start in &positions {
                    match start.position {
                        StartPosition::Offset(offset) => offsets.push((start.partition, offset)),
                        StartPosition::GroupCommitted => {
                            return Err(format!(
                                "partition {}: the native fetch path needs a start offset, not the group's",
                                start.partition
                            ));
                        }
                    }
                }
                native.reposition(&offsets);
                if completes_rebalance { self.consumer.assign_membership_only() } else { Ok(()) }
            }
            None => {
                let assigned: Vec<i32> = positions.iter().map(|p| p.partition).collect();
                if completes_rebalance || assigned != self.librdkafka_assigned {
                    self.librdkafka_assigned = assigned;
                    self.consumer.assign(&positions)
                } else {
                    self.consumer.seek(starts)
                }
            }
        };
        result.map_err(|error| format!("cannot position the kafka consumer: {error}"))
    }

    /// Starts reading this server's share before the group answers (exactly-once).
    async fn read_ahead(&mut self) -> Result<(), String> {
        let share = self.plan.read_ahead.get(self.shard).cloned().unwrap_or_default();
        if share.is_empty() {
            return Ok(());
        }
        self.reading_ahead = true;
        self.generation += 1;
        self.hold(share.clone());
        self.pending = Some((self.generation, Pending::ReadAhead));
        self.send(ShardEvent::Assigned { generation: self.generation, partitions: share.clone(), starting: share })
            .await
    }

    async fn on_rebalance(&mut self, notice: RebalanceNotice) -> Result<(), String> {
        match notice {
            RebalanceNotice::Assigned(partitions) if self.reading_ahead => self.adopt_assignment(partitions).await,
            RebalanceNotice::Assigned(partitions) => self.take_assignment(partitions).await,
            RebalanceNotice::Revoked if self.reading_ahead => {
                // The group takes back what it never gave: the read-ahead goes
                // on. The callback dropped librdkafka's own assignment, though.
                if self.native.is_none() {
                    self.librdkafka_assigned.clear();
                    self.apply_positions(&[], false)?;
                }
                Ok(())
            }
            RebalanceNotice::Revoked => {
                self.stop_reading();
                self.consumer.release_partitions();
                self.librdkafka_assigned.clear();
                self.held.clear();
                self.pending = None;
                self.send(ShardEvent::Revoked { generation: self.generation }).await
            }
        }
    }

    /// A group assignment: drop what is open and start every partition from stored offsets.
    async fn take_assignment(&mut self, partitions: Vec<i32>) -> Result<(), String> {
        self.stop_reading();
        self.joined = true;
        self.reading_ahead = false;
        self.hold(partitions.clone());
        self.pending = Some((self.generation, Pending::Group));
        self.send(ShardEvent::Assigned {
            generation: self.generation,
            partitions: partitions.clone(),
            starting: partitions,
        })
        .await
    }

    /// The group's first assignment after reading ahead: partitions kept go
    /// on from where they are, lost ones stop, new ones start from stored
    /// offsets. If the read-ahead has not started yet, or the open batch
    /// holds a lost partition, it is an assignment like any other.
    async fn adopt_assignment(&mut self, partitions: Vec<i32>) -> Result<(), String> {
        let lost: Vec<i32> = self.held.iter().copied().filter(|p| !partitions.contains(p)).collect();
        let lost_in_open_batch = self.read.open.partitions.iter().any(|r| lost.contains(&r.partition));
        if self.pending.is_some() || lost_in_open_batch {
            return self.take_assignment(partitions).await;
        }
        self.joined = true;
        self.reading_ahead = false;
        for &partition in &lost {
            if let Some(state) = self.read.partition_mut(partition) {
                state.active = false;
            }
        }
        let starting: Vec<i32> = partitions.iter().copied().filter(|p| !self.held.contains(p)).collect();
        let kept: Vec<i32> = self.held.iter().copied().filter(|p| partitions.contains(p)).collect();
        self.hold(partitions.clone());
        tracing::info!(
            job = %self.plan.job,
            shard = self.shard,
            ?kept,
            ?lost,
            ?starting,
            "joined the consumer group; partitions read ahead and kept go on where they are"
        );
        self.apply_positions(&[], true)?;
        self.commit_loaded();
        self.generation += 1;
        if !starting.is_empty() {
            self.pending = Some((self.generation, Pending::Added));
        }
        self.send(ShardEvent::Assigned { generation: self.generation, partitions, starting }).await
    }

    /// The partitions the shard now holds. The control plane forgets what it
    /// heard drained for the shard's earlier set, so the new set's end must be
    /// reported again (`--stop-at-eof`), even where nothing new is read.
    fn hold(&mut self, partitions: Vec<i32>) {
        self.held = partitions;
        self.read.drained_reported = false;
    }

    /// Drops the open batch, stops the native fetcher and deactivates every
    /// partition under a new generation, so no answer or message of the
    /// previous positions is taken for the next ones. The positions that
    /// follow are announced to the control plane (`Assigned`), which then
    /// forgets the shard's drained report: its end is reported again.
    fn stop_reading(&mut self) {
        self.read.drained_reported = false;
        self.drop_open_batch();
        if let Some(native) = &mut self.native {
            native.release();
        }
        self.generation += 1;
        for state in &mut self.read.partitions {
            state.active = false;
        }
    }

    /// Drops the open batch and asks for the stored offsets of every held partition.
    async fn rewind(&mut self) -> Result<(), String> {
        self.stop_reading();
        if self.held.is_empty() || self.stopping {
            self.pending = None;
            return Ok(());
        }
        self.pending = Some((self.generation, Pending::Rewind));
        let partitions = self.held.clone();
        self.send(ShardEvent::Assigned {
            generation: self.generation,
            partitions: partitions.clone(),
            starting: partitions,
        })
        .await
    }

    fn drop_open_batch(&mut self) {
        self.read.drop_open_batch();
    }

    /// Whether the native fetcher is reading (its requests then say whether
    /// the brokers answer; otherwise librdkafka's reports do).
    fn native_reading(&self) -> bool {
        self.native.is_some() && self.held.iter().any(|&p| self.read.partition(p).is_some_and(|s| s.active))
    }

    /// Publishes a confirmed outage, clears it when the brokers answer again,
    /// and then re-checks the held partitions' offsets against the log.
    async fn watch_brokers(&mut self) -> Result<(), String> {
        let health = self.stats.kafka.clone();
        let native_reading = self.native_reading();
        let reported = if native_reading {
            health.fetch.outage()
        } else {
            let outage = health.client.outage();
            if outage.is_some() || self.outage.is_some() {
                self.start_probe();
            }
            outage
        };
        match (&self.outage, reported) {
            (None, Some(outage)) => {
                // Failures count once they last (several retries); a
                // client's report once a TCP check after it failed too.
                let lasted = now_ms().saturating_sub(outage.since_ms) >= OUTAGE_CONFIRM_MS;
                let checked = native_reading || self.probe.failed_at_ms.get() >= outage.since_ms;
                if lasted && checked {
                    self.stats.set_outage(Some(outage.clone()));
                    self.outage = Some(outage);
                    self.stop_librdkafka_fetching()?;
                }
            }
            (Some(current), Some(outage)) => {
                // Moving from one client's view to the other's keeps the outage's start.
                let outage = Outage { since_ms: current.since_ms.min(outage.since_ms), reason: outage.reason };
                if *current != outage {
                    self.stats.set_outage(Some(outage.clone()));
                    self.outage = Some(outage);
                }
            }
            // Over only when a broker answered since it began.
            (Some(current), None)
                if health.fetch.answered_since(current.since_ms) || health.client.answered_since(current.since_ms) =>
            {
                self.outage = None;
                self.stats.set_outage(None);
                // The broker may have lost its data meanwhile (tansu keeps
                // topics in memory; a topic may have been re-created): check
                // the stored offsets against the log again, as at start.
                if !self.stopping && self.native.is_none() {
                    self.renew_consumer().await?;
                } else if !self.stopping && !self.held.is_empty() && self.pending.is_none() {
                    tracing::info!(job = %self.plan.job, shard = self.shard, "kafka brokers answer again; re-reading from stored offsets");
                    self.rewind().await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// librdkafka 2.12 crashes (SIGSEGV in `rd_kafka_metadata_update_op`)
    /// when a broker that came back without a topic answers its fetch with
    /// the topic id it had before (tansu after a restart, the topic created
    /// again): while the brokers are unreachable, librdkafka fetches nothing.
    /// The outage's end re-reads the start offsets and assigns again.
    fn stop_librdkafka_fetching(&mut self) -> Result<(), String> {
        if self.native.is_some() || self.librdkafka_assigned.is_empty() {
            return Ok(());
        }
        self.stop_reading();
        self.pending = None;
        self.librdkafka_assigned.clear();
        self.consumer.assign_membership_only().map_err(|error| format!("cannot stop the kafka consumer: {error}"))
    }

    /// After an outage librdkafka's fetch path gets a new client: the old one
    /// may hold the id of a topic the broker lost, which librdkafka 2.12
    /// crashes on (see [`JobTask::stop_librdkafka_fetching`]). The new client
    /// joins the group afresh; an exactly-once shard reads ahead meanwhile,
    /// from the stored offsets, checked against the log as at start.
    async fn renew_consumer(&mut self) -> Result<(), String> {
        let fresh = ShardConsumer::subscribe(&self.plan.consumer_config, &self.plan.topic, self.stats.kafka.clone())
            .map_err(|error| format!("cannot create the kafka consumer: {error}"))?;
        std::mem::replace(&mut self.consumer, fresh).close_in_background();
        self.stop_reading();
        self.pending = None;
        self.held.clear();
        self.librdkafka_assigned.clear();
        self.joined = false;
        self.reading_ahead = false;
        tracing::info!(
            job = %self.plan.job,
            shard = self.shard,
            "kafka brokers answer again; a new client joins the consumer group, reading from stored offsets"
        );
        self.send(ShardEvent::Revoked { generation: self.generation }).await?;
        self.read_ahead().await
    }

    /// Tries the bootstrap brokers' ports in the background, at most once a
    /// [`PROBE_EVERY`]: a success clears librdkafka's report.
    fn start_probe(&self) {
        let now = Instant::now();
        if self.probe.in_flight.get() || self.probe.next_at.get().is_some_and(|at| now < at) {
            return;
        }
        self.probe.in_flight.set(true);
        self.probe.next_at.set(Some(now + PROBE_EVERY));
        let probe = self.probe.clone();
        let health = self.stats.kafka.clone();
        let addresses = self.bootstrap.clone();
        glommio::spawn_local(async move {
            if any_accepts(&addresses, PROBE_LIMIT).await {
                health.client.answered();
            } else {
                probe.failed_at_ms.set(now_ms());
            }
            probe.in_flight.set(false);
        })
        .detach();
    }

    async fn report_drained(&mut self) -> Result<(), String> {
        if !self.plan.stop_at_eof
            || self.read.drained_reported
            || self.in_flight.is_some()
            || self.read.open.message_count() > 0
            || !self.all_held_at_eof()
        {
            return Ok(());
        }
        self.read.drained_reported = true;
        let partitions = self.held.clone();
        self.send(ShardEvent::Drained { partitions }).await
    }

    fn phase(&self) -> ShardPhase {
        if self.held.is_empty() {
            return if self.joined { ShardPhase::Idle } else { ShardPhase::Joining };
        }
        if !self.held.iter().any(|&p| self.read.partition(p).is_some_and(|s| s.active)) {
            ShardPhase::Starting
        } else if self.reading_ahead {
            ShardPhase::ReadingAhead
        } else {
            ShardPhase::Reading
        }
    }

    fn publish_stats(&mut self) {
        self.progress.clear();
        for &partition in &self.held {
            let position = self.read.partition(partition).map_or(-1, |s| if s.active { s.next } else { -1 });
            let end = match &self.native {
                Some(native) => native.high_watermark(partition),
                None => self.consumer.cached_end_offset(partition),
            };
            self.progress.push(PartitionProgress { partition, position, end });
        }
        self.stats.set_partitions(&self.progress);
        self.stats.set_phase(self.phase());
        self.next_stats = Instant::now() + STATS_EVERY;
    }

    async fn send(&self, event: ShardEvent) -> Result<(), String> {
        self.events.send(event).await.map_err(|_| "the control plane went away".to_string())
    }
}

/// The read state as the native fetcher delivers into it.
struct TaskSink<'a> {
    read: &'a mut ReadState,
    bytes: &'a mut u64,
    events: &'a mut Vec<QueueEvent>,
}

impl FetchSink for TaskSink<'_> {
    fn position(&self, partition: i32) -> Option<i64> {
        self.read.partition(partition).filter(|state| state.active).map(|state| state.next)
    }

    fn message(&mut self, message: RawMessage<'_>) {
        *self.bytes += message.payload.map_or(0, <[u8]>::len) as u64;
        self.read.on_message(message.partition, message.offset, message.timestamp_ms, message.payload);
    }

    fn event(&mut self, event: QueueEvent) {
        self.events.push(event);
    }
}

impl ReadState {
    fn mark_eof(&mut self, partition: i32) {
        if let Some(state) = self.partition_mut(partition) {
            state.at_eof = true;
        }
    }

    fn partition(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition).ok().and_then(|i| self.partitions.get(i))
    }

    fn partition_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        let index = usize::try_from(partition).ok()?;
        if index >= self.partitions.len() {
            self.partitions.resize(index + 1, PartitionState::default());
        }
        self.partitions.get_mut(index)
    }

    fn on_message(&mut self, partition: i32, offset: i64, timestamp_ms: i64, payload: Option<&[u8]>) {
        let Some(state) = self.partition_mut(partition) else { return };
        if !state.active || (state.next >= 0 && offset < state.next) {
            return;
        }
        let range = state.range;
        let stored = state.stored;
        state.next = offset + 1;
        state.at_eof = false;
        self.drained_reported = false;

        let open = &mut self.open;
        let index = open.messages.len() as u32;
        if index == 0 {
            open.opened_at = Instant::now();
        }
        let row_start = if self.length_prefixed { Some(fsrow::begin_row(&mut open.fast.data)) } else { None };
        let encoded = self.encoder.encode(payload, &mut open.fast.data, &mut open.slow.data);
        if let Some(start) = row_start {
            if encoded == Encoded::Fast {
                fsrow::end_row(&mut open.fast.data, start);
            } else {
                open.fast.data.truncate(start);
            }
        }
        match encoded {
            Encoded::Fast => {
                open.fast.ends.push(open.fast.data.len() as u32);
                open.fast.messages.push(index);
            }
            Encoded::Slow => {
                open.slow.ends.push(open.slow.data.len() as u32);
                open.slow.messages.push(index);
            }
            Encoded::Rejected(reason) => open.rejected.push((index, reason)),
        }
        if let Some(payload) = payload {
            open.payloads.extend_from_slice(payload);
        }
        open.messages.push(MessageMeta {
            partition,
            offset,
            timestamp_ms,
            payload_end: open.payloads.len() as u32,
            has_payload: payload.is_some(),
        });
        match range {
            Some(i) => {
                let range = &mut open.partitions[i];
                range.next = offset + 1;
                range.messages += 1;
            }
            None => {
                open.partitions.push(PartitionRange {
                    partition,
                    stored_before: stored,
                    next: offset + 1,
                    messages: 1,
                });
                let i = open.partitions.len() - 1;
                if let Some(state) = self.partition_mut(partition) {
                    state.range = Some(i);
                }
            }
        }
    }

    fn drop_open_batch(&mut self) {
        for range in &self.open.partitions {
            if let Some(state) = usize::try_from(range.partition).ok().and_then(|i| self.partitions.get_mut(i)) {
                state.range = None;
            }
        }
        self.open.clear();
    }
}

/// Binary COPY tuples of text fields as CSV lines (NULL unquoted and empty,
/// every value quoted), for a database without fs_formatter.
fn tuples_to_csv(data: &[u8], ends: &[u32]) -> ServedBatch {
    let mut out = Vec::with_capacity(data.len() + ends.len() * 8);
    let mut row_ends = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for &end in ends {
        let tuple = &data[start..end as usize];
        start = end as usize;
        let fields = u16::from_be_bytes([tuple[0], tuple[1]]);
        let mut at = 2usize;
        for field in 0..fields {
            if field > 0 {
                out.push(b',');
            }
            let len = i32::from_be_bytes([tuple[at], tuple[at + 1], tuple[at + 2], tuple[at + 3]]);
            at += 4;
            if len < 0 {
                continue;
            }
            let value = &tuple[at..at + len as usize];
            at += len as usize;
            out.push(b'"');
            for &byte in value {
                if byte == b'"' {
                    out.push(b'"');
                }
                out.push(byte);
            }
            out.push(b'"');
        }
        out.push(b'\n');
        row_ends.push(out.len() as u32);
    }
    ServedBatch { data: out, row_ends }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::pgcopy::{begin_row, put_field, put_null};

    #[test]
    fn csv_lines_quote_values_and_leave_nulls_empty() {
        let mut data = Vec::new();
        let mut ends = Vec::new();
        begin_row(&mut data, 3);
        put_field(&mut data, b"a\"b");
        put_null(&mut data);
        put_field(&mut data, b"");
        ends.push(data.len() as u32);
        begin_row(&mut data, 1);
        put_field(&mut data, b"line\nbreak");
        ends.push(data.len() as u32);
        let served = tuples_to_csv(&data, &ends);
        assert_eq!(served.data, b"\"a\"\"b\",,\"\"\n\"line\nbreak\"\n");
        assert_eq!(served.row_ends, vec![11, 24]);
    }
}

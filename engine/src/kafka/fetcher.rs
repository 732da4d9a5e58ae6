//! The native fetch path: a shard fetches its partitions from their leaders
//! itself, over its own connections, with no librdkafka thread between the
//! socket and the decoder.
//!
//! # Ownership
//! - The job task owns the [`NativeFetcher`]; the fetcher's glommio tasks
//!   (one per partition leader, one refreshing metadata) run on the same
//!   shard and end when it is dropped.
//! - librdkafka keeps what it is good at: consumer group membership and
//!   offset commits. The group's partitions are assigned to librdkafka
//!   empty-handed (it fetches nothing); the job task repositions this fetcher
//!   instead.
//!
//! # Ordering and exactly-once
//! - Positions belong to a generation; [`NativeFetcher::reposition`] starts a
//!   new one. A response fetched for an older generation is dropped, never
//!   delivered, so a rewind cannot skip or repeat a record.
//! - A partition is in at most one request at a time, and the request's
//!   response is queued before the partition may be fetched again, so each
//!   partition's records arrive in offset order through one bounded channel.
//! - Memory: at most one response per leader connection, one queued and one
//!   being delivered, each under the request byte limit.
//! - Delivery skips records below the job task's position (a batch fetched
//!   from its middle, or a response resumed after the open batch filled).
//!
//! # Broker health
//! Every request's outcome goes to the shard's [`KafkaHealth`]: a failed
//! connection or exchange marks the fetch path's brokers unreachable (since
//! the first failure in a row), any answer marks them reachable; warnings are
//! tallied there for the control plane to log, rate-limited. A new position
//! set starts with a clean record. A leader must start answering within the
//! fetch's wait plus [`HEADER_GRACE`], so a silent broker is noticed in
//! seconds.
//!
//! # Scheduling
//! The leader tasks run only when the job task yields: a job task that loops
//! without awaiting anything pending holds every response (it once did, on a
//! wake-up deadline it did not act on, for up to `interval_ms`).

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::consumer::{QueueEvent, RawMessage};
use super::wire::{
    self, AbortedFilter, ERROR_NONE, ERROR_OFFSET_OUT_OF_RANGE, FetchPartition, FetchRequest, FetchedPartition,
    Isolation, RecordBatches,
};
use crate::stats::KafkaHealth;

/// How a shard fetches natively; built and validated by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFetchPlan {
    /// `host:port` of the bootstrap brokers.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub isolation: Isolation,
    /// How long a leader may hold a fetch waiting for data.
    pub max_wait: Duration,
    /// Bytes per fetch response (a soft limit: a first batch larger than it still comes whole).
    pub request_max_bytes: i32,
    pub partition_max_bytes: i32,
}

/// What a delivery reads from and writes to: the job task's read state.
pub trait FetchSink {
    /// The next offset to deliver of `partition`; `None` when it is not read.
    fn position(&self, partition: i32) -> Option<i64>;
    fn message(&mut self, message: RawMessage<'_>);
    fn event(&mut self, event: QueueEvent);
}

/// A fetch response on its way to the job task.
struct Fetched {
    generation: u64,
    correlation_id: i32,
    frame: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    partition: i32,
    /// Next offset to fetch; -1 while halted (out of range, or a batch that does not decode).
    next: i64,
    in_flight: bool,
}

struct Shared {
    plan: NativeFetchPlan,
    topic: String,
    health: Arc<KafkaHealth>,
    generation: Cell<u64>,
    positions: RefCell<Vec<Position>>,
    /// Leader node by partition, from the last metadata.
    leaders: RefCell<Vec<(i32, i32)>>,
    brokers: RefCell<Vec<(i32, String)>>,
    metadata_stale: Cell<bool>,
    changed: event_listener::Event,
    closed: Cell<bool>,
    spare_frames: RefCell<Vec<Vec<u8>>>,
    next_correlation: Cell<i32>,
    /// One fetch task per leader node.
    leader_tasks: RefCell<Vec<(i32, JoinHandle<()>)>>,
}

impl Shared {
    fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    fn leader_of(&self, partition: i32) -> Option<i32> {
        self.leaders.borrow().iter().find(|(p, _)| *p == partition).map(|&(_, l)| l).filter(|&l| l >= 0)
    }

    fn correlation_id(&self) -> i32 {
        let id = self.next_correlation.get();
        self.next_correlation.set(id.wrapping_add(1));
        id
    }

    /// Resolves when `ready` holds, waking on every change.
    async fn until(&self, ready: impl Fn(&Shared) -> bool) {
        loop {
            if self.closed.get() || ready(self) {
                return;
            }
            let listener = self.changed.listen();
            if self.closed.get() || ready(self) {
                return;
            }
            listener.await;
        }
    }

    fn stale(&self) {
        self.metadata_stale.set(true);
        self.notify();
    }
}

pub struct NativeFetcher {
    shared: Rc<Shared>,
    responses: Receiver<Fetched>,
    /// The response being delivered, kept until every record in it is.
    current: RefCell<Option<Fetched>>,
    /// High watermark by partition, from the last response that carried it.
    high_watermarks: Vec<(i32, i64)>,
    aborted: AbortedFilter,
    decompressed: Vec<u8>,
    supervisor: JoinHandle<()>,
}

const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// On top of the fetch's own wait, before a leader that has not started its
/// answer is taken for unreachable (its connection is given up).
const HEADER_GRACE: Duration = Duration::from_secs(8);
/// How long a response's body may take once it has started: a large
/// response on a slow network takes a while.
const BODY_LIMIT: Duration = Duration::from_secs(30);

impl NativeFetcher {
    /// Starts the fetcher's tasks on the current shard; it fetches nothing
    /// until [`NativeFetcher::reposition`]. Request outcomes go to `health`.
    pub fn start(plan: NativeFetchPlan, topic: &str, health: Arc<KafkaHealth>) -> NativeFetcher {
        let shared = Rc::new(Shared {
            plan,
            topic: topic.to_owned(),
            health,
            generation: Cell::new(0),
            positions: RefCell::new(Vec::new()),
            leaders: RefCell::new(Vec::new()),
            brokers: RefCell::new(Vec::new()),
            metadata_stale: Cell::new(true),
            changed: event_listener::Event::new(),
            closed: Cell::new(false),
            spare_frames: RefCell::new(Vec::new()),
            next_correlation: Cell::new(1),
            leader_tasks: RefCell::new(Vec::new()),
        });
        let (sender, responses) = async_channel::bounded(1);
        let supervisor = glommio::spawn_local(supervise(shared.clone(), sender)).detach();
        NativeFetcher {
            shared,
            responses,
            current: RefCell::new(None),
            high_watermarks: Vec::new(),
            aborted: AbortedFilter::default(),
            decompressed: Vec::new(),
            supervisor,
        }
    }

    /// Fetches `starts` (partition, offset) from now on, and nothing else;
    /// what was fetched before is dropped.
    pub fn reposition(&mut self, starts: &[(i32, i64)]) {
        self.recycle_current();
        let shared = &self.shared;
        shared.generation.set(shared.generation.get() + 1);
        *shared.positions.borrow_mut() =
            starts.iter().map(|&(partition, next)| Position { partition, next, in_flight: false }).collect();
        if starts.iter().any(|&(p, _)| shared.leader_of(p).is_none()) {
            shared.metadata_stale.set(true);
        }
        // Failures of the previous positions say nothing about the new ones.
        shared.health.fetch.forget();
        shared.notify();
    }

    /// Stops fetching (the partitions were revoked).
    pub fn release(&mut self) {
        self.reposition(&[]);
    }

    /// The high watermark last reported for `partition`, -1 if none yet.
    pub fn high_watermark(&self, partition: i32) -> i64 {
        self.high_watermarks.iter().find(|(p, _)| *p == partition).map_or(-1, |&(_, hw)| hw)
    }

    /// Resolves when a response of the current generation is ready to deliver.
    pub async fn readable(&self) {
        loop {
            if self.current.borrow().is_some() {
                return;
            }
            let Ok(fetched) = self.responses.recv().await else {
                return std::future::pending().await;
            };
            if fetched.generation == self.shared.generation.get() {
                *self.current.borrow_mut() = Some(fetched);
                return;
            }
            self.shared.spare_frames.borrow_mut().push(fetched.frame);
        }
    }

    fn recycle_current(&mut self) {
        if let Some(current) = self.current.get_mut().take() {
            self.shared.spare_frames.borrow_mut().push(current.frame);
        }
    }

    /// Delivers up to `limit` records of the ready response (and of any
    /// queued one) to `sink`. Returns how many, and whether records are left.
    pub fn drain(&mut self, limit: usize, sink: &mut impl FetchSink) -> (usize, bool) {
        let mut taken = 0usize;
        loop {
            if self.current.get_mut().is_none() {
                match self.responses.try_recv() {
                    Ok(fetched) if fetched.generation == self.shared.generation.get() => {
                        *self.current.get_mut() = Some(fetched);
                    }
                    Ok(fetched) => {
                        self.shared.spare_frames.borrow_mut().push(fetched.frame);
                        continue;
                    }
                    Err(_) => return (taken, false),
                }
            }
            let finished = self.deliver(limit.saturating_sub(taken), &mut taken, sink);
            if !finished {
                return (taken, true);
            }
            self.recycle_current();
            if taken >= limit {
                return (taken, !self.responses.is_empty());
            }
        }
    }

    /// Delivers from the current response; true when all of it is delivered.
    fn deliver(&mut self, room: usize, taken: &mut usize, sink: &mut impl FetchSink) -> bool {
        let Some(current) = self.current.get_mut().as_ref() else { return true };
        let topic = &self.shared.topic;
        let read_committed = self.shared.plan.isolation == Isolation::ReadCommitted;
        let mut partitions: Vec<FetchedPartition<'_>> = Vec::new();
        let parsed = wire::response_body(&current.frame, current.correlation_id)
            .and_then(|body| wire::parse_fetch_response(body, topic, &mut partitions));
        if let Err(error) = parsed {
            // The fetch task checked this frame already; nothing to deliver.
            self.shared.health.warn(format!("kafka fetch response for topic {topic:?} dropped: {error}"));
            return true;
        }
        let mut delivered = 0usize;
        for data in &partitions {
            let partition = data.partition;
            set_watermark(&mut self.high_watermarks, partition, data.high_watermark);
            if sink.position(partition).is_none() {
                continue;
            }
            match data.error_code {
                ERROR_NONE => {}
                ERROR_OFFSET_OUT_OF_RANGE => {
                    sink.event(QueueEvent::OffsetOutOfRange(partition));
                    continue;
                }
                _ => continue, // the fetch task refreshes metadata and retries
            }
            let end = if read_committed { data.last_stable_offset } else { data.high_watermark };
            let walked = walk_partition(
                data,
                read_committed,
                &mut self.aborted,
                &mut self.decompressed,
                room,
                &mut delivered,
                sink,
            );
            match walked {
                Walked::Whole { reached } => {
                    if reached >= end {
                        sink.event(QueueEvent::EndOfPartition(partition));
                    }
                }
                Walked::Full => {
                    *taken += delivered;
                    return false;
                }
                Walked::Undecodable(error) => {
                    tracing::error!(%topic, partition, %error, "kafka record batch does not decode");
                    sink.event(QueueEvent::Undecodable(partition));
                }
            }
        }
        *taken += delivered;
        true
    }
}

/// How the walk of one partition's records ended.
#[derive(Debug, PartialEq, Eq)]
enum Walked {
    /// Everything from the position on is delivered; the log is read up to
    /// `reached` (past control batches and aborted transactions too).
    Whole {
        reached: i64,
    },
    /// The room ran out before the records did.
    Full,
    Undecodable(wire::WireError),
}

/// Delivers one partition's records from the sink's position on, at most
/// `room - delivered` of them. Every batch goes through the read_committed
/// filter in log order, those below the position included: an ABORT marker
/// the position has passed still ends its producer's aborted transaction.
fn walk_partition(
    data: &FetchedPartition<'_>,
    read_committed: bool,
    aborted: &mut AbortedFilter,
    scratch: &mut Vec<u8>,
    room: usize,
    delivered: &mut usize,
    sink: &mut impl FetchSink,
) -> Walked {
    let partition = data.partition;
    let Some(position) = sink.position(partition) else { return Walked::Whole { reached: -1 } };
    let mut reached = position;
    aborted.reset(&data.aborted);
    for batch in RecordBatches::new(data.records) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => return Walked::Undecodable(error),
        };
        let admitted = !read_committed || aborted.admits(&batch);
        if batch.last_offset() < position {
            continue;
        }
        if admitted && !batch.is_control() {
            let records = match batch.records(scratch) {
                Ok(records) => records,
                Err(error) => return Walked::Undecodable(error),
            };
            for record in records {
                let record = match record {
                    Ok(record) => record,
                    Err(error) => return Walked::Undecodable(error),
                };
                if sink.position(partition).is_none_or(|next| record.offset < next) {
                    continue;
                }
                if *delivered >= room {
                    return Walked::Full;
                }
                sink.message(RawMessage {
                    partition,
                    offset: record.offset,
                    timestamp_ms: record.timestamp_ms,
                    payload: record.value,
                });
                *delivered += 1;
            }
        }
        reached = batch.next_offset();
    }
    Walked::Whole { reached }
}

impl Drop for NativeFetcher {
    fn drop(&mut self) {
        self.shared.closed.set(true);
        self.shared.notify();
        self.supervisor.cancel();
        for (_, task) in self.shared.leader_tasks.borrow_mut().drain(..) {
            task.cancel();
        }
    }
}

fn set_watermark(marks: &mut Vec<(i32, i64)>, partition: i32, high_watermark: i64) {
    match marks.iter_mut().find(|(p, _)| *p == partition) {
        Some(mark) => mark.1 = high_watermark,
        None => marks.push((partition, high_watermark)),
    }
}

/// Keeps leader metadata fresh and one fetch task per leader.
async fn supervise(shared: Rc<Shared>, responses: Sender<Fetched>) {
    let mut failures = 0u32;
    while !shared.closed.get() {
        shared.until(|s| s.metadata_stale.get() && !s.positions.borrow().is_empty()).await;
        if shared.closed.get() {
            break;
        }
        match refresh_metadata(&shared).await {
            Ok(()) => {
                shared.health.fetch.answered();
                failures = 0;
                shared.metadata_stale.set(false);
                let leaders: Vec<i32> = shared.leaders.borrow().iter().map(|&(_, l)| l).filter(|&l| l >= 0).collect();
                for leader in leaders {
                    if !shared.leader_tasks.borrow().iter().any(|(node, _)| *node == leader) {
                        let task = glommio::spawn_local(fetch_from(shared.clone(), leader, responses.clone())).detach();
                        shared.leader_tasks.borrow_mut().push((leader, task));
                    }
                }
                shared.notify();
                if shared.positions.borrow().iter().any(|p| shared.leader_of(p.partition).is_none()) {
                    // Some partition has no leader yet: ask again shortly.
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                    shared.metadata_stale.set(true);
                }
            }
            Err(failure) => {
                failures += 1;
                match &failure {
                    MetadataFailure::Unreachable(reason) => shared.health.fetch.failed(reason),
                    MetadataFailure::Refused(_) => shared.health.fetch.answered(),
                }
                let reason = match failure {
                    MetadataFailure::Unreachable(reason) | MetadataFailure::Refused(reason) => reason,
                };
                shared.health.warn(format!(
                    "kafka metadata request for topic {:?} failed ({failures} in a row): {reason}",
                    shared.topic
                ));
                glommio::timer::sleep(RETRY_BACKOFF).await;
            }
        }
    }
    for (_, task) in shared.leader_tasks.borrow_mut().drain(..) {
        task.cancel();
    }
}

/// Why a metadata refresh failed.
enum MetadataFailure {
    /// No broker answered.
    Unreachable(String),
    /// A broker answered, with an error for the topic.
    Refused(String),
}

async fn refresh_metadata(shared: &Shared) -> Result<(), MetadataFailure> {
    // A known broker first, then the bootstrap list.
    let mut addresses: Vec<String> = shared.brokers.borrow().iter().map(|(_, a)| a.clone()).collect();
    addresses.extend(shared.plan.bootstrap.iter().cloned());
    let mut last_error = String::from("no bootstrap brokers");
    let mut refused = false;
    for address in addresses {
        let result = async {
            let mut stream = connect(&address).await?;
            let correlation_id = shared.correlation_id();
            let mut request = Vec::new();
            wire::encode_metadata_request(&mut request, correlation_id, &shared.plan.client_id, &shared.topic);
            let mut frame = Vec::new();
            exchange(&mut stream, &request, &mut frame, HEADER_GRACE, MAX_METADATA_FRAME)
                .await
                .map_err(|e| format!("{address}: {e}"))?;
            let body = wire::response_body(&frame, correlation_id).map_err(|e| format!("{address}: {e}"))?;
            wire::parse_metadata_response(body, &shared.topic).map_err(|e| format!("{address}: {e}"))
        }
        .await;
        match result {
            Ok(metadata) if metadata.topic_error == ERROR_NONE => {
                *shared.brokers.borrow_mut() =
                    metadata.brokers.iter().map(|b| (b.node_id, format!("{}:{}", b.host, b.port))).collect();
                *shared.leaders.borrow_mut() = metadata
                    .partitions
                    .iter()
                    .map(|p| (p.partition, if p.error_code == ERROR_NONE { p.leader } else { -1 }))
                    .collect();
                return Ok(());
            }
            Ok(metadata) => {
                refused = true;
                last_error = format!("{address}: topic error code {}", metadata.topic_error);
            }
            Err(error) => last_error = error,
        }
    }
    Err(if refused { MetadataFailure::Refused(last_error) } else { MetadataFailure::Unreachable(last_error) })
}

/// Fetches the partitions `leader` leads, one request at a time, until closed.
async fn fetch_from(shared: Rc<Shared>, leader: i32, responses: Sender<Fetched>) {
    let mut stream: Option<TcpStream> = None;
    let mut request = Vec::new();
    let mut wanted: Vec<FetchPartition> = Vec::new();
    let mut rotation = 0usize;
    let mut failures = 0u32;
    loop {
        shared
            .until(|s| {
                s.positions
                    .borrow()
                    .iter()
                    .any(|p| p.next >= 0 && !p.in_flight && s.leader_of(p.partition) == Some(leader))
            })
            .await;
        if shared.closed.get() {
            return;
        }
        let generation = shared.generation.get();
        wanted.clear();
        {
            let mut positions = shared.positions.borrow_mut();
            let count = positions.len();
            // Rotate the order so a large first partition cannot starve the others.
            rotation = rotation.wrapping_add(1);
            for i in 0..count {
                // `count` is not 0 inside the loop.
                let Some(position) = positions.get_mut((i + rotation) % count) else { continue };
                if position.next >= 0 && !position.in_flight && shared.leader_of(position.partition) == Some(leader) {
                    position.in_flight = true;
                    wanted.push(FetchPartition {
                        partition: position.partition,
                        offset: position.next,
                        max_bytes: shared.plan.partition_max_bytes,
                    });
                }
            }
        }
        let result = fetch_once(&shared, leader, &mut stream, &mut request, &wanted).await;
        match result {
            Ok(fetched) => {
                shared.health.fetch.answered();
                failures = 0;
                let outcome = advance(&shared, generation, &fetched, &wanted);
                if generation == shared.generation.get() {
                    let fetched = Fetched { generation, ..fetched };
                    if responses.send(fetched).await.is_err() {
                        return;
                    }
                } else {
                    shared.spare_frames.borrow_mut().push(fetched.frame);
                }
                release(&shared, generation, &wanted);
                if outcome.partition_errors {
                    // The broker answers an error at once: retry after new metadata, not in a loop.
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                } else if !outcome.advanced {
                    glommio::yield_if_needed().await;
                }
            }
            Err(error) => {
                stream = None;
                release(&shared, generation, &wanted);
                failures += 1;
                shared.health.fetch.failed(&error);
                shared.health.warn(format!(
                    "kafka fetch from broker {leader} for topic {:?} failed ({failures} in a row): {error}; \
                     refreshing metadata",
                    shared.topic
                ));
                shared.stale();
                glommio::timer::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

async fn fetch_once(
    shared: &Shared,
    leader: i32,
    stream: &mut Option<TcpStream>,
    request: &mut Vec<u8>,
    wanted: &[FetchPartition],
) -> Result<Fetched, String> {
    let address = shared
        .brokers
        .borrow()
        .iter()
        .find(|(node, _)| *node == leader)
        .map(|(_, a)| a.clone())
        .ok_or_else(|| format!("broker {leader} is not in the metadata"))?;
    if stream.is_none() {
        *stream = Some(connect(&address).await?);
    }
    let Some(connection) = stream.as_mut() else { return Err("no connection".into()) };
    let correlation_id = shared.correlation_id();
    request.clear();
    let plan = &shared.plan;
    wire::encode_fetch_request(
        request,
        correlation_id,
        &plan.client_id,
        &FetchRequest {
            topic: &shared.topic,
            max_wait_ms: i32::try_from(plan.max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: 1,
            max_bytes: plan.request_max_bytes,
            isolation: plan.isolation,
            partitions: wanted,
        },
    );
    let mut frame = shared.spare_frames.borrow_mut().pop().unwrap_or_default();
    exchange(connection, request, &mut frame, plan.max_wait + HEADER_GRACE, MAX_FETCH_FRAME)
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    // Check the frame here, where a bad one can be retried, not where it is delivered.
    let body = wire::response_body(&frame, correlation_id).map_err(|e| e.to_string())?;
    let mut partitions = Vec::new();
    wire::parse_fetch_response(body, &shared.topic, &mut partitions).map_err(|e| e.to_string())?;
    Ok(Fetched { generation: 0, correlation_id, frame })
}

#[derive(Debug, Default, Clone, Copy)]
struct Advanced {
    /// Some partition's position moved.
    advanced: bool,
    /// Some partition answered an error other than out-of-range.
    partition_errors: bool,
}

/// Moves each fetched partition's position past its complete batches;
/// halts partitions whose offset is out of range; marks metadata stale on
/// other errors (a leader change, most often).
fn advance(shared: &Shared, generation: u64, fetched: &Fetched, wanted: &[FetchPartition]) -> Advanced {
    let mut outcome = Advanced::default();
    if generation != shared.generation.get() {
        return outcome;
    }
    let mut partitions = Vec::new();
    let parsed = wire::response_body(&fetched.frame, fetched.correlation_id)
        .and_then(|body| wire::parse_fetch_response(body, &shared.topic, &mut partitions));
    if parsed.is_err() {
        return outcome;
    }
    let mut positions = shared.positions.borrow_mut();
    for data in &partitions {
        if !wanted.iter().any(|w| w.partition == data.partition) {
            continue;
        }
        let Some(position) = positions.iter_mut().find(|p| p.partition == data.partition) else { continue };
        match data.error_code {
            ERROR_NONE => {
                let mut next = position.next;
                for batch in RecordBatches::new(data.records) {
                    match batch {
                        Ok(batch) => next = next.max(batch.next_offset()),
                        Err(_) => {
                            next = -1; // delivery reports it
                            break;
                        }
                    }
                }
                outcome.advanced |= next != position.next;
                position.next = next;
            }
            ERROR_OFFSET_OUT_OF_RANGE => position.next = -1, // until the job task repositions
            code => {
                tracing::debug!(topic = %shared.topic, partition = data.partition, code, "kafka fetch error");
                shared.metadata_stale.set(true);
                outcome.partition_errors = true;
            }
        }
    }
    outcome
}

fn release(shared: &Shared, generation: u64, wanted: &[FetchPartition]) {
    if generation == shared.generation.get() {
        for position in shared.positions.borrow_mut().iter_mut() {
            if wanted.iter().any(|w| w.partition == position.partition) {
                position.in_flight = false;
            }
        }
    }
    shared.notify();
}

async fn connect(address: &str) -> Result<TcpStream, String> {
    let socket = resolve(address).await?;
    let stream = TcpStream::connect(socket).await.map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Resolves on a helper thread when the address is a name: a shard never blocks.
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Ok(socket);
    }
    let (sender, receiver) = async_channel::bounded(1);
    let owned = address.to_owned();
    std::thread::Builder::new()
        .name("kafka-resolve".into())
        .spawn(move || {
            let resolved = owned
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()));
            let _ = sender.send_blocking(resolved);
        })
        .map_err(|e| e.to_string())?;
    receiver.recv().await.map_err(|e| e.to_string())?.map_err(|e| format!("cannot resolve {address}: {e}"))
}

/// The largest metadata response read (one topic's: kilobytes).
const MAX_METADATA_FRAME: usize = 16 << 20;
/// The largest fetch response read: far above the request's byte limit (50
/// MiB at most) plus one oversized first batch, far below what a stray
/// non-Kafka peer's first bytes claim (`HTTP` reads as 1.2 GB).
const MAX_FETCH_FRAME: usize = 512 << 20;

/// Sends a request frame and reads the response frame into `frame`: its
/// size must arrive within `header_limit`, the rest within [`BODY_LIMIT`]; a
/// response claiming more than `max_frame` bytes is refused before it is allocated.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    frame: &mut Vec<u8>,
    header_limit: Duration,
    max_frame: usize,
) -> Result<(), String> {
    let head = async {
        stream.write_all(request).await?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        Ok::<[u8; 4], std::io::Error>(prefix)
    };
    let prefix = within(head, header_limit, "no response").await?;
    let size = wire::frame_size(prefix).map_err(|e| e.to_string())?;
    if size > max_frame {
        return Err(format!(
            "kafka response of {size} bytes exceeds the {max_frame} bytes a response may have (not a kafka broker?)"
        ));
    }
    frame.clear();
    frame.resize(size, 0);
    within(stream.read_exact(frame), BODY_LIMIT, "the response stalled").await
}

async fn within<T>(
    io: impl std::future::Future<Output = std::io::Result<T>>,
    limit: Duration,
    what: &str,
) -> Result<T, String> {
    let timeout = async {
        glommio::timer::sleep(limit).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned()))
    };
    io.or(timeout).await.map_err(|e| e.to_string())
}

/// Whether any of `addresses` (`host:port`) accepts a TCP connection within
/// `limit`: the check of a client's "all brokers down" before it counts.
pub async fn any_accepts(addresses: &[String], limit: Duration) -> bool {
    for address in addresses {
        let attempt = async { connect(address).await.is_ok() };
        let timeout = async {
            glommio::timer::sleep(limit).await;
            false
        };
        if attempt.or(timeout).await {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::wire::encode_record_batch;

    /// Records what it is given; positions advance as a job task's do.
    #[derive(Default)]
    struct Collected {
        next: i64,
        offsets: Vec<i64>,
    }

    impl FetchSink for Collected {
        fn position(&self, _: i32) -> Option<i64> {
            Some(self.next)
        }
        fn message(&mut self, message: RawMessage<'_>) {
            self.offsets.push(message.offset);
            self.next = message.offset + 1;
        }
        fn event(&mut self, _: QueueEvent) {}
    }

    fn partition(records: &[u8], aborted: Vec<(i64, i64)>) -> FetchedPartition<'_> {
        FetchedPartition { partition: 0, error_code: 0, high_watermark: 0, last_stable_offset: 0, aborted, records }
    }

    const TXN: i16 = 0x10;
    const MARKER: i16 = 0x30;
    const ABORT: [u8; 4] = [0, 0, 0, 0];
    const COMMIT: [u8; 4] = [0, 0, 0, 1];

    #[test]
    fn an_abort_marker_below_the_position_still_ends_the_aborted_transaction() {
        let producer = 7;
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, 0, 0, TXN, producer, &[(0, None, Some(b"aborted"))]);
        encode_record_batch(&mut bytes, 1, 0, MARKER, producer, &[(0, Some(&ABORT), Some(b""))]);
        encode_record_batch(&mut bytes, 2, 0, TXN, producer, &[(0, None, Some(b"committed"))]);
        encode_record_batch(&mut bytes, 3, 0, MARKER, producer, &[(0, Some(&COMMIT), Some(b""))]);
        let data = partition(&bytes, vec![(producer, 0)]);
        for start in [0, 2] {
            let mut sink = Collected { next: start, ..Collected::default() };
            let mut delivered = 0;
            let walked = walk_partition(
                &data,
                true,
                &mut AbortedFilter::default(),
                &mut Vec::new(),
                usize::MAX,
                &mut delivered,
                &mut sink,
            );
            assert_eq!(walked, Walked::Whole { reached: 4 }, "from {start}");
            assert_eq!(sink.offsets, vec![2], "from {start}");
        }
        // read_uncommitted sees both transactions' records, never a marker.
        let mut sink = Collected::default();
        let mut delivered = 0;
        let walked =
            walk_partition(&data, false, &mut AbortedFilter::default(), &mut Vec::new(), 9, &mut delivered, &mut sink);
        assert_eq!((walked, sink.offsets), (Walked::Whole { reached: 4 }, vec![0, 2]));
    }

    /// A peer that is not a broker (an HTTP server) answers bytes whose
    /// first four read as a 1.2 GB frame: refused before it is allocated.
    #[test]
    fn a_response_claiming_a_huge_frame_is_refused() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let _ = socket.read(&mut request).unwrap();
            socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut stream = connect(&address.to_string()).await.unwrap();
                let mut frame = Vec::new();
                exchange(&mut stream, b"\0\0\0\0", &mut frame, Duration::from_secs(10), MAX_FETCH_FRAME).await
            })
            .unwrap()
            .join()
            .unwrap();
        peer.join().unwrap();
        assert_eq!(
            result.unwrap_err(),
            "kafka response of 1213486160 bytes exceeds the 536870912 bytes a response may have (not a kafka broker?)"
        );
    }

    #[test]
    fn a_full_room_stops_the_walk_and_a_second_walk_resumes_it() {
        let mut bytes = Vec::new();
        let records = [(0, None, Some(&b"a"[..])), (1, None, Some(&b"b"[..])), (2, None, Some(&b"c"[..]))];
        encode_record_batch(&mut bytes, 10, 0, 0, -1, &records);
        let data = partition(&bytes, Vec::new());
        let mut sink = Collected { next: 11, ..Collected::default() };
        let (mut filter, mut scratch) = (AbortedFilter::default(), Vec::new());
        let mut delivered = 0;
        let walked = walk_partition(&data, true, &mut filter, &mut scratch, 1, &mut delivered, &mut sink);
        assert_eq!((walked, delivered), (Walked::Full, 1));
        let mut delivered = 0;
        let walked = walk_partition(&data, true, &mut filter, &mut scratch, 5, &mut delivered, &mut sink);
        assert_eq!((walked, delivered), (Walked::Whole { reached: 13 }, 1));
        assert_eq!(sink.offsets, vec![11, 12]);
    }
}

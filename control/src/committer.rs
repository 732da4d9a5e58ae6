//! The control plane's end of one (job, shard) link: answers assignments with
//! start offsets and loads sealed batches, one at a time, each in one database
//! transaction.
//!
//! # Exactly-once
//! A batch's rows, its error rows and the new offset of every partition it
//! covers commit in one transaction. The offsets statement runs first and only
//! advances a partition whose stored offset is still the one the batch was read
//! from; if any partition moved (another consumer loaded it after a
//! rebalance), nothing of the batch is written and the shard re-reads from the
//! stored offsets. A crash at any point leaves either the whole batch or none
//! of it, and reading resumes from what the database holds.
//!
//! # Bad rows
//! Any failure one message can cause is a row error ([`is_row_error`]): a row
//! the database rejects is isolated by loading halves of the failing set under
//! savepoints until single rows remain; those become error rows with
//! PostgreSQL's message and the raw message, and the rest of the batch loads.
//! Only what no single row can cause (the session, permissions, the target's
//! shape) fails the batch.
//!
//! # error_limit
//! The limit is judged over the job's span — every message read since its
//! offsets were last reset — counted per partition in flow_offsets in each
//! batch's transaction ([`ErrorBudget`]). It is crossed at one message: the
//! first rejected one, in read order, after which the rejections are more
//! than the limit allows. The batch holding it is loaded up to and including
//! it (the rows before it, its error row, offsets just past it) and the job
//! stops in state Error, so what is loaded depends on the messages and the
//! limit, not on where batches happen to end or on restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowserver_engine::batch::{Batch, PartitionRange, RowSet};
use flowserver_engine::codec::pgcopy::{COPY_HEADER, COPY_TRAILER};
use flowserver_engine::events::{BatchOutcome, ControlReply, PartitionStart, ShardEvent, StartPosition};
use flowserver_engine::runtime::JobLink;
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db;
use crate::greenplum::{self, ServedFormat};
use crate::job::GreenplumLoad;
use crate::job::{JobRuntime, StartsError, SupervisorEvent};
use crate::jobspec::ErrorLimit;
use crate::load_plan::FastRelation;

/// One row the database (or the shard) refused.
#[derive(Debug, Clone)]
struct ErrorRow {
    message: u32,
    reason: String,
}

enum Failure {
    /// Worth retrying on a new session: the connection or the server hiccupped.
    Transient(String),
    /// The job cannot go on.
    Fatal(String),
}

enum Loaded {
    Committed { rows: u64, errors: usize },
    Conflict,
}

pub struct Committer {
    job: Arc<JobRuntime>,
    shard: usize,
    link: JobLink,
    supervisor: mpsc::Sender<(usize, SupervisorEvent)>,
    session: Option<Client>,
}

impl Committer {
    pub fn new(job: Arc<JobRuntime>, link: JobLink, supervisor: mpsc::Sender<(usize, SupervisorEvent)>) -> Committer {
        Committer { job, shard: link.shard, link, supervisor, session: None }
    }

    pub async fn run(mut self) {
        while let Ok(event) = self.link.events.recv().await {
            match event {
                ShardEvent::Assigned { generation, partitions, starting } => {
                    self.notify(SupervisorEvent::Held(partitions)).await;
                    let offsets = self.start_offsets_waiting(&starting).await;
                    if let Err(reason) = &offsets {
                        self.notify(SupervisorEvent::Fatal(reason.clone())).await;
                    }
                    self.reply(ControlReply::StartOffsets { generation, offsets }).await;
                }
                ShardEvent::Revoked { .. } => self.notify(SupervisorEvent::Held(Vec::new())).await,
                ShardEvent::Sealed(batch) => {
                    let seq = batch.seq;
                    let outcome = self.load(batch).await;
                    self.reply(ControlReply::BatchOutcome { seq, outcome }).await;
                }
                ShardEvent::Drained { partitions } => self.notify(SupervisorEvent::Drained(partitions)).await,
                ShardEvent::Stopped { error } => {
                    self.notify(SupervisorEvent::Stopped(error)).await;
                    break;
                }
            }
        }
    }

    async fn notify(&self, event: SupervisorEvent) {
        // The supervisor outlives every committer.
        let _ = self.supervisor.send((self.shard, event)).await;
    }

    async fn reply(&self, reply: ControlReply) {
        // A shard that is gone has nothing left to hear.
        let _ = self.link.replies.send(reply).await;
    }

    /// [`Committer::start_offsets`], waiting while Kafka or the database does
    /// not answer (the job's status says so); the shard reads nothing of
    /// these partitions meanwhile.
    async fn start_offsets_waiting(&mut self, partitions: &[i32]) -> Result<Vec<PartitionStart>, String> {
        let mut attempt = 0u32;
        loop {
            match self.start_offsets(partitions).await {
                Err(StartsError::Unavailable(reason)) => {
                    attempt += 1;
                    self.job.liveness.probe_health.warn(format!(
                        "cannot read the start offsets of partitions {partitions:?} (attempt {attempt}): {reason}"
                    ));
                    self.job.liveness.set_start_wait(
                        self.shard,
                        Some(format!("waiting: cannot read the start offsets of partitions {partitions:?}: {reason}")),
                    );
                    let retry_at = Instant::now() + backoff(attempt).min(Duration::from_secs(5));
                    while Instant::now() < retry_at {
                        // A job stopped meanwhile (or a shard gone) reads nothing more: no start is needed.
                        if self.job.is_stopping() || self.link.events.is_closed() {
                            self.job.liveness.set_start_wait(self.shard, None);
                            return Ok(Vec::new());
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                result => {
                    self.job.liveness.set_start_wait(self.shard, None);
                    return result.map_err(|e| e.to_string());
                }
            }
        }
    }

    /// Where each partition starts: the database's offset for exactly-once
    /// (checked against the log, a gap `fallback_offset` resolves stored),
    /// else the group's committed offset.
    async fn start_offsets(&mut self, partitions: &[i32]) -> Result<Vec<PartitionStart>, StartsError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        if !self.job.exactly_once {
            let overrides = self.job.take_start_overrides(partitions);
            return Ok(partitions
                .iter()
                .map(|&partition| PartitionStart {
                    partition,
                    position: overrides
                        .get(&partition)
                        .map_or(StartPosition::GroupCommitted, |&o| StartPosition::Offset(o)),
                    stored: -1,
                })
                .collect());
        }
        let stored = self.read_stored_offsets(partitions).await?;
        let job = self.job.clone();
        let owned = partitions.to_vec();
        let mut starts = tokio::task::spawn_blocking(move || job.resolve_starts(&owned, &stored))
            .await
            .map_err(|e| StartsError::Final(format!("offset lookup failed: {e}")))??;
        let job = self.job.clone();
        let client = self.session().await.map_err(|failure| match failure {
            Failure::Transient(reason) | Failure::Fatal(reason) => StartsError::Unavailable(reason),
        })?;
        job.store_moved_starts(client, &mut starts).await?;
        Ok(starts)
    }

    async fn read_stored_offsets(&mut self, partitions: &[i32]) -> Result<Vec<(i32, i64)>, StartsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let job = self.job.clone();
            let result = async {
                let client = self.session().await?;
                let rows = client
                    .query(&job.bookkeeping.read_offsets, &[&job.name, &job.topic, &partitions])
                    .await
                    .map_err(|e| classify(&e))?;
                db::stored_offsets(&rows).map_err(|e| Failure::Fatal(e.to_string()))
            }
            .await;
            match result {
                Ok(offsets) => return Ok(offsets),
                Err(Failure::Transient(reason)) if attempt < 5 && !self.job.is_stopping() => {
                    self.drop_session(&reason);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(Failure::Transient(reason)) => {
                    return Err(StartsError::Unavailable(format!("cannot read stored offsets: {reason}")));
                }
                Err(Failure::Fatal(reason)) => {
                    return Err(StartsError::Final(format!("cannot read stored offsets: {reason}")));
                }
            }
        }
    }

    async fn load(&mut self, mut batch: Box<Batch>) -> BatchOutcome {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self.load_once(&mut batch).await {
                Ok(Loaded::Committed { rows, errors }) => {
                    tracing::debug!(
                        job = %self.job.name,
                        shard = self.shard,
                        batch = batch.seq,
                        messages = batch.message_count(),
                        fast = batch.fast_rows(),
                        slow = batch.slow.len(),
                        rows,
                        errors,
                        filled_ms = (batch.sealed_at - batch.opened_at).as_millis() as u64,
                        queued_ms = started.duration_since(batch.sealed_at).as_millis() as u64,
                        commit_ms = started.elapsed().as_millis() as u64,
                        "batch committed"
                    );
                    self.job.record_commit(&batch, rows, errors as u64, started);
                    return BatchOutcome::Committed { buffers: Some(batch) };
                }
                Ok(Loaded::Conflict) => return BatchOutcome::Conflict,
                Err(Failure::Transient(reason)) => {
                    self.drop_session(&reason);
                    if self.job.is_stopping() && attempt >= 3 {
                        self.notify(SupervisorEvent::Fatal(format!("batch not loaded before stopping: {reason}")))
                            .await;
                        return BatchOutcome::Failed;
                    }
                    self.job.set_warning(format!("database unavailable, retrying: {reason}"));
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(Failure::Fatal(reason)) => {
                    self.notify(SupervisorEvent::Fatal(reason)).await;
                    return BatchOutcome::Failed;
                }
            }
        }
    }

    fn drop_session(&mut self, reason: &str) {
        if self.session.take().is_some() {
            tracing::warn!(job = %self.job.name, shard = self.shard, %reason, "database session dropped");
        }
    }

    async fn session(&mut self) -> Result<&mut Client, Failure> {
        if self.session.as_ref().is_some_and(Client::is_closed) {
            self.session = None;
        }
        if self.session.is_none() {
            let name = format!("flowserver:{}", self.job.name);
            let client =
                db::connect(&self.job.config.target, &name).await.map_err(|e| Failure::Transient(e.to_string()))?;
            for statement in &self.job.plan.create_staging {
                db::run(&client, statement).await.map_err(|e| classify(&e))?;
            }
            self.session = Some(client);
        }
        self.session.as_mut().ok_or_else(|| Failure::Transient("no session".into()))
    }

    async fn load_once(&mut self, batch: &mut Batch) -> Result<Loaded, Failure> {
        let job = self.job.clone();
        let shard = self.shard;
        let client = self.session().await?;
        let transaction = client.transaction().await.map_err(|e| classify(&e))?;
        if !record_offsets(&transaction, &job, &batch.partitions).await? {
            transaction.rollback().await.map_err(|e| classify(&e))?;
            return Ok(Loaded::Conflict);
        }
        let budget = ErrorBudget::read(&transaction, &job, batch.message_count()).await?;
        let mut errors = shard_rejections(&job, batch, None);
        let most = budget.most_in_batch(batch.message_count());
        let rows = load_rows(&transaction, &job, shard, batch, None, &mut errors, most).await?;
        errors.sort_by_key(|e| e.message);

        if let Some(position) = budget.crossing(&errors) {
            transaction.rollback().await.map_err(|e| classify(&e))?;
            let crossing = errors[position].clone();
            let reason = budget.describe(position, &crossing, batch, &job);
            return match self.load_up_to(batch, &crossing).await? {
                Some((rows, kept)) => {
                    let counters = &self.job.counters;
                    counters.rows_loaded.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                    counters.rows_rejected.fetch_add(kept as u64, std::sync::atomic::Ordering::Relaxed);
                    Err(Failure::Fatal(reason))
                }
                None => Ok(Loaded::Conflict),
            };
        }
        if errors.len() >= most {
            // Isolation stops only where the limit is certainly crossed.
            return Err(Failure::Fatal(format!(
                "internal error: {} rejected rows found but error_limit not crossed",
                errors.len()
            )));
        }
        if !errors.is_empty() {
            insert_errors(&transaction, &job, batch, &errors).await.map_err(|e| classify(&e))?;
            add_rejected(&transaction, &job, batch, &errors).await?;
        }
        transaction.commit().await.map_err(|e| classify(&e))?;
        Ok(Loaded::Committed { rows, errors: errors.len() })
    }

    /// Loads the batch up to `crossing`, the message at which error_limit was
    /// crossed, in a transaction of its own: the rows of the messages before
    /// it, their error rows and its own, and offsets just past it. None when
    /// another consumer moved the offsets meanwhile.
    async fn load_up_to(&mut self, batch: &mut Batch, crossing: &ErrorRow) -> Result<Option<(u64, usize)>, Failure> {
        let job = self.job.clone();
        let shard = self.shard;
        let ranges = ranges_through(batch, crossing.message);
        let client = self.session().await?;
        let transaction = client.transaction().await.map_err(|e| classify(&e))?;
        if !record_offsets(&transaction, &job, &ranges).await? {
            transaction.rollback().await.map_err(|e| classify(&e))?;
            return Ok(None);
        }
        let mut errors = shard_rejections(&job, batch, Some(crossing.message));
        let rows = load_rows(&transaction, &job, shard, batch, Some(crossing.message), &mut errors, usize::MAX).await?;
        errors.sort_by_key(|e| e.message);
        errors.push(crossing.clone());
        insert_errors(&transaction, &job, batch, &errors).await.map_err(|e| classify(&e))?;
        add_rejected(&transaction, &job, batch, &errors).await?;
        transaction.commit().await.map_err(|e| classify(&e))?;
        Ok(Some((rows, errors.len())))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Fast,
    Slow,
}

/// A percentage is never judged on fewer messages than this, so the first
/// messages of a job cannot cross it alone (one bad message is not 100 %).
pub const PERCENT_MIN_MESSAGES: u64 = 1000;

/// `error_limit` over the job's span: every message read since its offsets
/// were last reset, as counted in flow_offsets before this batch.
#[derive(Debug, Clone, Copy)]
struct ErrorBudget {
    limit: ErrorLimit,
    messages_before: u64,
    rejected_before: u64,
}

impl ErrorBudget {
    /// The counts before a batch of `batch_messages`, whose own messages the
    /// offsets statement has already added.
    async fn read(
        transaction: &Transaction<'_>,
        job: &JobRuntime,
        batch_messages: usize,
    ) -> Result<ErrorBudget, Failure> {
        let limit = job.config.target.error_limit;
        if limit == ErrorLimit::Unlimited {
            return Ok(ErrorBudget { limit, messages_before: 0, rejected_before: 0 });
        }
        let row = transaction
            .query_one(&job.bookkeeping.read_totals, &[&job.name, &job.topic])
            .await
            .map_err(|e| classify(&e))?;
        let count = |index: usize| -> Result<u64, Failure> {
            let value: i64 =
                row.try_get(index).map_err(|e| Failure::Fatal(format!("cannot read the error counts: {e}")))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(ErrorBudget {
            limit,
            messages_before: count(0)?.saturating_sub(batch_messages as u64),
            rejected_before: count(1)?,
        })
    }

    /// Rejections the limit allows after `messages` messages.
    fn allowed(&self, messages: u64) -> u64 {
        match self.limit {
            ErrorLimit::Unlimited => u64::MAX,
            ErrorLimit::Count(limit) => limit,
            ErrorLimit::Percent(percent) => {
                let allowed = u128::from(percent) * u128::from(messages.max(PERCENT_MIN_MESSAGES)) / 100;
                u64::try_from(allowed).unwrap_or(u64::MAX)
            }
        }
    }

    /// Rejections in a batch of `messages` after which the limit is certainly
    /// crossed: isolating bad rows can stop there.
    fn most_in_batch(&self, messages: usize) -> usize {
        if self.limit == ErrorLimit::Unlimited {
            return usize::MAX;
        }
        let allowed = self.allowed(self.messages_before.saturating_add(messages as u64));
        let most = allowed.saturating_add(1).saturating_sub(self.rejected_before).max(1);
        usize::try_from(most).unwrap_or(usize::MAX)
    }

    /// Position in `errors` (in message order) of the rejection that crosses the limit.
    fn crossing(&self, errors: &[ErrorRow]) -> Option<usize> {
        if self.limit == ErrorLimit::Unlimited {
            return None;
        }
        errors.iter().enumerate().position(|(position, error)| {
            let rejected = self.rejected_before.saturating_add(position as u64 + 1);
            let messages = self.messages_before.saturating_add(u64::from(error.message) + 1);
            rejected > self.allowed(messages)
        })
    }

    fn describe(&self, position: usize, crossing: &ErrorRow, batch: &Batch, job: &JobRuntime) -> String {
        let limit = match self.limit {
            ErrorLimit::Unlimited => "none".to_string(),
            ErrorLimit::Count(n) => n.to_string(),
            ErrorLimit::Percent(p) => format!("{p}%"),
        };
        let rejected = self.rejected_before.saturating_add(position as u64 + 1);
        let messages = self.messages_before.saturating_add(u64::from(crossing.message) + 1);
        let at = batch
            .messages
            .get(crossing.message as usize)
            .map(|meta| format!("partition {} offset {}", meta.partition, meta.offset))
            .unwrap_or_default();
        format!(
            "error_limit exceeded: {rejected} of {messages} messages rejected since the job's offsets were last reset \
             (limit {limit}); loaded up to {at}, rejected there: {}; rejected messages are in {}.flow_errors",
            crossing.reason,
            crate::sql::ident(&job.config.target.staging_schema)
        )
    }
}

/// The shard's rejections (messages it could not decode), of messages before `before` if given.
fn shard_rejections(job: &JobRuntime, batch: &Batch, before: Option<u32>) -> Vec<ErrorRow> {
    batch
        .rejected
        .iter()
        .filter(|(message, _)| before.is_none_or(|before| *message < before))
        .map(|(message, reason)| ErrorRow { message: *message, reason: reason.describe(&job.source_columns) })
        .collect()
}

/// The offsets the batch covers through message `last`.
fn ranges_through(batch: &Batch, last: u32) -> Vec<PartitionRange> {
    let mut ranges: Vec<PartitionRange> = Vec::with_capacity(batch.partitions.len());
    for meta in batch.messages.iter().take(last as usize + 1) {
        match ranges.iter_mut().find(|r| r.partition == meta.partition) {
            Some(range) => {
                range.next = meta.offset + 1;
                range.messages += 1;
            }
            None => {
                let stored_before =
                    batch.partitions.iter().find(|r| r.partition == meta.partition).map_or(-1, |r| r.stored_before);
                ranges.push(PartitionRange {
                    partition: meta.partition,
                    stored_before,
                    next: meta.offset + 1,
                    messages: 1,
                });
            }
        }
    }
    ranges
}

/// Advances the offsets of `ranges` and counts their messages: by
/// compare-and-set for exactly-once (false: another consumer moved one),
/// unconditionally for the modes whose positions live in the consumer group.
async fn record_offsets(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    ranges: &[PartitionRange],
) -> Result<bool, Failure> {
    if ranges.is_empty() {
        return Ok(true);
    }
    let partitions: Vec<i32> = ranges.iter().map(|r| r.partition).collect();
    let before: Vec<i64> = ranges.iter().map(|r| r.stored_before).collect();
    let next: Vec<i64> = ranges.iter().map(|r| r.next).collect();
    let messages: Vec<i64> = ranges.iter().map(|r| i64::from(r.messages)).collect();
    let statement = if job.exactly_once { &job.bookkeeping.advance_offsets } else { &job.bookkeeping.record_offsets };
    let advanced = transaction
        .execute(statement, &[&job.name, &job.topic, &partitions, &before, &next, &messages])
        .await
        .map_err(|e| classify(&e))?;
    Ok(!job.exactly_once || advanced == partitions.len() as u64)
}

/// Adds the rejections in `errors` to their partitions' counts.
async fn add_rejected(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    batch: &Batch,
    errors: &[ErrorRow],
) -> Result<(), Failure> {
    let mut partitions: Vec<i32> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for error in errors {
        let Some(meta) = batch.messages.get(error.message as usize) else { continue };
        match partitions.iter().position(|&p| p == meta.partition) {
            Some(i) => counts[i] += 1,
            None => {
                partitions.push(meta.partition);
                counts.push(1);
            }
        }
    }
    transaction
        .execute(&job.bookkeeping.add_rejected, &[&job.name, &job.topic, &partitions, &counts])
        .await
        .map_err(|e| classify(&e))?;
    Ok(())
}

/// Rows of `set` that belong to messages before `before` (all without it):
/// rows are in message order.
fn rows_before(set: &RowSet, before: Option<u32>) -> usize {
    match before {
        None => set.len(),
        Some(before) => set.messages.partition_point(|&m| m < before),
    }
}

/// Loads the batch's rows — all of them, or those of messages before
/// `before` — isolating rows the database refuses into `errors`. Each row set
/// stops being isolated once it yielded `most` rejections (the limit is
/// crossed by then; the caller loads up to the crossing instead).
async fn load_rows(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    shard: usize,
    batch: &mut Batch,
    before: Option<u32>,
    errors: &mut Vec<ErrorRow>,
    most: usize,
) -> Result<u64, Failure> {
    let mut rows = 0u64;
    if let Some(greenplum) = &job.greenplum {
        rows += match (before, batch.served.clone()) {
            (None, _) => load_served(transaction, job, greenplum, shard, batch, errors, most).await?,
            (Some(_), Some(served)) => {
                let count = rows_before(&batch.fast, before);
                load_served_through_coordinator(transaction, job, greenplum, batch, &served, count, errors, most)
                    .await?
            }
            (Some(_), None) => 0,
        };
    } else {
        let fast = Bytes::from(std::mem::take(&mut batch.fast.data));
        let count = rows_before(&batch.fast, before);
        let result = load_set(transaction, job, RowKind::Fast, &fast, &batch.fast, 0..count, errors, most).await;
        batch.fast.data = reclaim(fast);
        rows += result?;
    }
    let slow = Bytes::from(std::mem::take(&mut batch.slow.data));
    let count = rows_before(&batch.slow, before);
    let result = load_set(transaction, job, RowKind::Slow, &slow, &batch.slow, 0..count, errors, most).await;
    batch.slow.data = reclaim(slow);
    rows += result?;
    Ok(rows)
}

/// Loads rows `rows` of `set`, isolating rows the database rejects; stops
/// isolating after `most` rejections.
#[allow(clippy::too_many_arguments)]
async fn load_set(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    kind: RowKind,
    data: &Bytes,
    set: &RowSet,
    rows: std::ops::Range<usize>,
    errors: &mut Vec<ErrorRow>,
    most: usize,
) -> Result<u64, Failure> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut loaded = 0u64;
    let mut found = 0usize;
    let mut pending = Vec::with_capacity(16);
    pending.push(rows);
    // Halves are pushed second half first: rows are settled in order.
    while let Some(rows) = pending.pop() {
        db::run(transaction, "SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
        match load_range(transaction, job, kind, data, set, rows.clone()).await {
            Ok(count) => {
                db::run(transaction, "RELEASE SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
                loaded += count;
            }
            Err(error) if is_row_error(&error) => {
                db::run(transaction, "ROLLBACK TO SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
                if rows.len() == 1 {
                    let Some(&message) = set.messages.get(rows.start) else { continue };
                    errors.push(ErrorRow { message, reason: db::describe(&error) });
                    found += 1;
                    if found >= most {
                        return Ok(loaded);
                    }
                } else {
                    let middle = rows.start + rows.len() / 2;
                    pending.push(middle..rows.end);
                    pending.push(rows.start..middle);
                }
            }
            Err(error) => return Err(classify(&error)),
        }
    }
    Ok(loaded)
}

/// WarehousePG / Greenplum: the segments read the batch's fast rows from the
/// shard's gpfdist listener through the shard's external table. Rows the
/// segments reject (a row they cannot read) come back from the table's error
/// log; a row the target refuses (a constraint, a mapping expression) fails
/// the whole statement, and then the batch's fast rows are loaded through the
/// coordinator instead, where bad rows are isolated one by one.
async fn load_served(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    greenplum: &GreenplumLoad,
    shard: usize,
    batch: &Batch,
    errors: &mut Vec<ErrorRow>,
    most: usize,
) -> Result<u64, Failure> {
    let Some(served) = batch.served.as_ref().filter(|s| !s.row_ends.is_empty()) else {
        return Ok(0);
    };
    let Some(table) = greenplum.tables.get(shard) else {
        return Err(Failure::Fatal(format!("internal error: no external table for shard {shard}")));
    };
    // The error log outlives transactions: start from an empty one.
    db::run(transaction, &greenplum::truncate_error_log(table)).await.map_err(|e| classify(&e))?;
    db::run(transaction, "SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
    let mut inserted = 0u64;
    let mut failure = None;
    for insert in greenplum.inserts.get(shard).into_iter().flatten() {
        match db::run(transaction, insert).await {
            Ok(n) => inserted += n,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    match failure {
        None => {}
        Some(error) if is_row_error(&error) => {
            tracing::info!(
                job = %job.name,
                shard,
                error = %db::describe(&error),
                "a served row was refused; loading this batch through the coordinator to isolate it"
            );
            db::run(transaction, "ROLLBACK TO SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
            let count = served.row_ends.len();
            return load_served_through_coordinator(transaction, job, greenplum, batch, served, count, errors, most)
                .await;
        }
        Some(error) => {
            let message = db::describe(&error);
            if message.contains("gpfdist") {
                return Err(Failure::Fatal(format!(
                    "the segments cannot read flowserver's gpfdist at {} (the host is Gpfdist.AdvertiseHost, \
                     by default this machine's name; it must be an address every segment host can reach): {message}",
                    table.location
                )));
            }
            return Err(classify(&error));
        }
    }
    db::run(transaction, "RELEASE SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
    let rejected = transaction.query(&greenplum::read_error_log(table), &[]).await.map_err(|e| classify(&e))?;
    let mut seen_rows = std::collections::BTreeSet::new();
    for row in rejected {
        // The error log is read as the segments wrote it: a row without a
        // line number cannot be matched to a message, and one without a
        // message still gets a reason.
        let line: Option<i64> = row.try_get(0).ok().flatten();
        let reason = row
            .try_get::<_, Option<String>>(1)
            .ok()
            .flatten()
            .filter(|reason| !reason.is_empty())
            .unwrap_or_else(|| "rejected by a segment (the error log holds no message)".to_owned());
        // Each INSERT scans the table once: several target tables log a bad row several times.
        let Some(index) = line.and_then(|l| l.checked_sub(1)).and_then(|l| usize::try_from(l).ok()) else { continue };
        if !seen_rows.insert(index) {
            continue;
        }
        let Some(&message) = batch.fast.messages.get(index) else { continue };
        errors.push(ErrorRow { message, reason });
    }
    Ok(inserted)
}

/// Loads the first `count` fast rows of a served batch through the
/// coordinator, isolating bad rows.
#[allow(clippy::too_many_arguments)]
async fn load_served_through_coordinator(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    greenplum: &GreenplumLoad,
    batch: &Batch,
    served: &flowserver_engine::gpfdist::ServedBatch,
    count: usize,
    errors: &mut Vec<ErrorRow>,
    most: usize,
) -> Result<u64, Failure> {
    match greenplum.format {
        ServedFormat::FsFormatter => {
            // fs_formatter rows are binary COPY tuples behind a length word.
            let mut rows = RowSet::default();
            rows.data.reserve(served.data.len());
            let mut start = 0usize;
            for &end in served.row_ends.iter().take(count) {
                let end = end as usize; // u32 → usize: widening
                let tuple = start
                    .checked_add(4)
                    .and_then(|from| served.data.get(from..end))
                    .ok_or_else(|| Failure::Fatal(format!("the served batch's row ending at {end} is malformed")))?;
                rows.data.extend_from_slice(tuple);
                let row_end = u32::try_from(rows.data.len())
                    .map_err(|_| Failure::Fatal("the served batch is larger than 4 GiB".into()))?;
                rows.ends.push(row_end);
                start = end;
            }
            rows.messages.extend(batch.fast.messages.iter().take(count));
            let data = Bytes::from(std::mem::take(&mut rows.data));
            let len = rows.len();
            load_set(transaction, job, RowKind::Fast, &data, &rows, 0..len, errors, most).await
        }
        // The shard kept the source columns' tuples next to the CSV it served.
        ServedFormat::Csv => {
            let data = Bytes::copy_from_slice(&batch.fast.data);
            load_set(transaction, job, RowKind::Slow, &data, &batch.fast, 0..count, errors, most).await
        }
    }
}

/// Copies rows `rows` of `set` and applies the SQL of their kind; returns the
/// number of target rows written.
async fn load_range(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    kind: RowKind,
    data: &Bytes,
    set: &RowSet,
    rows: std::ops::Range<usize>,
) -> Result<u64, tokio_postgres::Error> {
    let plan = &job.plan;
    let (copy, truncate, inserts) = match kind {
        RowKind::Fast => (&plan.copy_fast, plan.truncate_fast.as_ref(), &plan.insert_fast),
        RowKind::Slow => (&plan.copy_slow, Some(&plan.truncate_slow), &plan.insert_slow),
    };
    if let Some(truncate) = truncate {
        db::run(transaction, truncate).await?;
    }
    let statement = transaction.prepare(copy).await?;
    let sink = transaction.copy_in::<_, Bytes>(&statement).await?;
    futures_util::pin_mut!(sink);
    sink.feed(Bytes::from_static(&COPY_HEADER)).await?;
    sink.feed(data.slice(set.byte_range(rows))).await?;
    sink.feed(Bytes::from_static(&COPY_TRAILER)).await?;
    let copied = sink.as_mut().finish().await?;
    let direct = kind == RowKind::Fast && matches!(plan.fast, FastRelation::Direct { .. });
    if direct {
        return Ok(copied);
    }
    let mut inserted = 0;
    for insert in inserts.iter() {
        inserted += db::run(transaction, insert).await?;
    }
    Ok(inserted)
}

async fn insert_errors<C: GenericClient>(
    client: &C,
    job: &JobRuntime,
    batch: &Batch,
    errors: &[ErrorRow],
) -> Result<u64, tokio_postgres::Error> {
    let mut partitions = Vec::with_capacity(errors.len());
    let mut offsets = Vec::with_capacity(errors.len());
    let mut times = Vec::with_capacity(errors.len());
    let mut reasons = Vec::with_capacity(errors.len());
    let mut raws = Vec::with_capacity(errors.len());
    for error in errors {
        // Error rows name messages of this batch (the shard's rejections and
        // the sets' own indices), so the index is in range; u32 → usize widens.
        let index = error.message as usize;
        let meta = &batch.messages[index];
        partitions.push(meta.partition);
        offsets.push(meta.offset);
        times.push(
            (meta.timestamp_ms >= 0)
                .then(|| std::time::UNIX_EPOCH + Duration::from_millis(meta.timestamp_ms.unsigned_abs())),
        );
        reasons.push(error.reason.as_str());
        raws.push(batch.payload(index));
    }
    client
        .execute(
            job.bookkeeping.insert_errors.as_str(),
            &[&job.name, &job.topic, &partitions, &offsets, &times, &reasons, &raws],
        )
        .await
}

/// Gets the vector back from `bytes` when nothing else holds it.
fn reclaim(bytes: Bytes) -> Vec<u8> {
    match bytes.try_into_mut() {
        Ok(unique) => unique.into(),
        Err(_) => Vec::new(),
    }
}

/// Errors one message can cause, which are therefore row errors: its data
/// (class 22: conversions, encodings, NUL in text, malformed json), the
/// target's constraints (23), what the job's own SQL — mappings, filters,
/// user-defined functions — does with it (21 a subquery's cardinality; 2F,
/// 38, 39 routine exceptions; P0 raised by PL/pgSQL; 57014 a statement
/// cancelled, say by a statement_timeout a pathological value ran into), and
/// the server's limits on one value (54: stack depth of a deeply nested
/// document, a statement too complex, a value too big for an index).
/// Everything else belongs to the session or the job: the connection,
/// permissions, the target's shape, resources, the server itself. Isolation by
/// halves also settles an error that does not repeat: its rows load.
pub(crate) fn is_row_error(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else { return false };
    let code = code.code();
    let class = code.get(..2).unwrap_or_default();
    matches!(class, "21" | "22" | "23" | "2F" | "38" | "39" | "54" | "P0") || code == SqlState::QUERY_CANCELED.code()
}

fn classify(error: &tokio_postgres::Error) -> Failure {
    let transient = match error.code() {
        None => true, // the connection broke
        Some(code) => {
            let code = code.code();
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // operator intervention, shutdown
                || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
                || code == SqlState::T_R_DEADLOCK_DETECTED.code()
                || code == SqlState::LOCK_NOT_AVAILABLE.code()
        }
    };
    let message = db::describe(error);
    if transient { Failure::Transient(message) } else { Failure::Fatal(format!("loading failed: {message}")) }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: ErrorLimit, messages_before: u64, rejected_before: u64) -> ErrorBudget {
        ErrorBudget { limit, messages_before, rejected_before }
    }

    fn rejections(messages: &[u32]) -> Vec<ErrorRow> {
        messages.iter().map(|&message| ErrorRow { message, reason: String::new() }).collect()
    }

    #[test]
    fn a_count_is_crossed_by_the_rejection_past_it_wherever_batches_end() {
        // Rejections at messages 10, 20, 30, 40 of one stream, limit 2: the third crosses it.
        let whole = budget(ErrorLimit::Count(2), 0, 0);
        assert_eq!(whole.crossing(&rejections(&[10, 20, 30, 40])), Some(2));
        // The same stream in two batches: the first holds two, the second crosses at its first.
        let first = budget(ErrorLimit::Count(2), 0, 0);
        assert_eq!(first.crossing(&rejections(&[10, 20])), None);
        let second = budget(ErrorLimit::Count(2), 25, 2);
        assert_eq!(second.crossing(&rejections(&[5, 15])), Some(0));
        assert_eq!(budget(ErrorLimit::Count(0), 0, 0).crossing(&rejections(&[3])), Some(0));
        assert_eq!(budget(ErrorLimit::Unlimited, 0, 0).crossing(&rejections(&[0, 1, 2])), None);
    }

    #[test]
    fn a_percentage_is_judged_on_at_least_a_thousand_messages() {
        // One bad message alone, in a job's first batch: 1 of 1, not 100 %.
        assert_eq!(budget(ErrorLimit::Percent(1), 0, 0).crossing(&rejections(&[0])), None);
        // 1 % of the first thousand allows ten.
        let ten: Vec<u32> = (0..10).collect();
        assert_eq!(budget(ErrorLimit::Percent(1), 0, 0).crossing(&rejections(&ten)), None);
        let eleven: Vec<u32> = (0..11).collect();
        assert_eq!(budget(ErrorLimit::Percent(1), 0, 0).crossing(&rejections(&eleven)), Some(10));
        // After a million messages with 5 rejected, a batch of three with one bad one is fine.
        assert_eq!(budget(ErrorLimit::Percent(1), 1_000_000, 5).crossing(&rejections(&[1])), None);
        // 10 % over 5000 messages: the 501st rejection crosses when read at message 5000.
        assert_eq!(budget(ErrorLimit::Percent(10), 4999, 500).crossing(&rejections(&[0])), Some(0));
        assert_eq!(budget(ErrorLimit::Percent(10), 5000, 499).crossing(&rejections(&[9])), None);
        assert_eq!(budget(ErrorLimit::Percent(100), 0, 0).crossing(&rejections(&[0, 1, 2])), None);
    }

    #[test]
    fn isolation_stops_only_where_the_limit_is_certainly_crossed() {
        assert_eq!(budget(ErrorLimit::Unlimited, 0, 0).most_in_batch(100), usize::MAX);
        assert_eq!(budget(ErrorLimit::Count(5), 0, 0).most_in_batch(100), 6);
        assert_eq!(budget(ErrorLimit::Count(5), 0, 4).most_in_batch(100), 2);
        assert_eq!(budget(ErrorLimit::Count(5), 0, 9).most_in_batch(100), 1);
        assert_eq!(budget(ErrorLimit::Percent(1), 0, 0).most_in_batch(100), 11);
        assert_eq!(budget(ErrorLimit::Percent(1), 99_900, 0).most_in_batch(100), 1001);
        // Finding `most` rejections always means a crossing, wherever they are in the batch.
        for (limit, before, rejected, batch) in [
            (ErrorLimit::Count(3), 0, 0, 50u32),
            (ErrorLimit::Count(3), 10, 2, 50),
            (ErrorLimit::Percent(2), 0, 0, 5000),
            (ErrorLimit::Percent(2), 3000, 50, 900),
        ] {
            let b = budget(limit, before, rejected);
            let most = b.most_in_batch(batch as usize);
            let at_end: Vec<u32> = (batch - most as u32..batch).collect();
            assert!(b.crossing(&rejections(&at_end)).is_some(), "{limit:?} {before} {rejected} {batch}");
            if most > 1 {
                let fewer: Vec<u32> = (batch - most as u32 + 1..batch).collect();
                assert!(b.crossing(&rejections(&fewer)).is_none(), "{limit:?} {before} {rejected} {batch}");
            }
        }
    }
}

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
//! A row the database rejects is isolated by loading halves of the failing
//! set under savepoints until single rows remain; those become error rows
//! with PostgreSQL's message and the raw message. Past `error_limit` the batch
//! rolls back (its error rows are still kept, in a transaction of their own,
//! so the reason can be read) and the job stops with state Error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowserver_engine::batch::{Batch, RowSet};
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
                Ok::<_, Failure>(rows.iter().map(|row| (row.get::<_, i32>(0), row.get::<_, i64>(1))).collect())
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
                client.batch_execute(statement).await.map_err(|e| classify(&e))?;
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

        if job.exactly_once && !batch.partitions.is_empty() {
            let partitions: Vec<i32> = batch.partitions.iter().map(|r| r.partition).collect();
            let before: Vec<i64> = batch.partitions.iter().map(|r| r.stored_before).collect();
            let next: Vec<i64> = batch.partitions.iter().map(|r| r.next).collect();
            let advanced = transaction
                .execute(&job.bookkeeping.advance_offsets, &[&job.name, &job.topic, &partitions, &before, &next])
                .await
                .map_err(|e| classify(&e))?;
            if advanced != partitions.len() as u64 {
                transaction.rollback().await.map_err(|e| classify(&e))?;
                return Ok(Loaded::Conflict);
            }
        }

        let mut errors: Vec<ErrorRow> = batch
            .rejected
            .iter()
            .map(|(message, reason)| ErrorRow { message: *message, reason: reason.describe(&job.source_columns) })
            .collect();
        let limit = Limit { limit: job.config.target.error_limit, messages: batch.message_count() };
        let mut rows = 0u64;
        let mut exceeded = limit.exceeded(errors.len());

        if !exceeded && let Some(greenplum) = &job.greenplum {
            match load_served(&transaction, &job, greenplum, shard, batch, &mut errors, &limit).await? {
                SetResult::Loaded(n) => rows += n,
                SetResult::LimitExceeded => exceeded = true,
            }
        } else if !exceeded {
            let fast = Bytes::from(std::mem::take(&mut batch.fast.data));
            let result = load_set(&transaction, &job, RowKind::Fast, &fast, &batch.fast, &mut errors, &limit).await;
            batch.fast.data = reclaim(fast);
            match result? {
                SetResult::Loaded(n) => rows += n,
                SetResult::LimitExceeded => exceeded = true,
            }
        }
        if !exceeded {
            let slow = Bytes::from(std::mem::take(&mut batch.slow.data));
            let result = load_set(&transaction, &job, RowKind::Slow, &slow, &batch.slow, &mut errors, &limit).await;
            batch.slow.data = reclaim(slow);
            match result? {
                SetResult::Loaded(n) => rows += n,
                SetResult::LimitExceeded => exceeded = true,
            }
        }

        if exceeded {
            transaction.rollback().await.map_err(|e| classify(&e))?;
            let reason = limit.describe(&errors, batch, &job);
            // Keep what was found, so the reason can be inspected; the batch
            // itself stays unloaded and its offsets unchanged.
            let client = self.session().await?;
            if let Err(e) = insert_errors(&*client, &job, batch, &errors).await {
                tracing::warn!(job = %job.name, error = %db::describe(&e), "cannot keep error rows");
            }
            return Err(Failure::Fatal(reason));
        }
        if !errors.is_empty() {
            insert_errors(&transaction, &job, batch, &errors).await.map_err(|e| classify(&e))?;
        }
        transaction.commit().await.map_err(|e| classify(&e))?;
        Ok(Loaded::Committed { rows, errors: errors.len() })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Fast,
    Slow,
}

enum SetResult {
    Loaded(u64),
    LimitExceeded,
}

struct Limit {
    limit: ErrorLimit,
    messages: usize,
}

impl Limit {
    fn exceeded(&self, errors: usize) -> bool {
        match self.limit {
            ErrorLimit::Unlimited => false,
            ErrorLimit::Count(limit) => errors as u64 > limit,
            ErrorLimit::Percent(percent) => (errors as u64) * 100 > u64::from(percent) * self.messages as u64,
        }
    }

    fn describe(&self, errors: &[ErrorRow], batch: &Batch, job: &JobRuntime) -> String {
        let limit = match self.limit {
            ErrorLimit::Unlimited => "none".to_string(),
            ErrorLimit::Count(n) => n.to_string(),
            ErrorLimit::Percent(p) => format!("{p}%"),
        };
        let first = errors
            .first()
            .map(|e| {
                let meta = &batch.messages[e.message as usize];
                format!("; first: partition {} offset {}: {}", meta.partition, meta.offset, e.reason)
            })
            .unwrap_or_default();
        format!(
            "error_limit exceeded: {} of {} messages rejected in one batch (limit {limit}); rows are in {}.flow_errors{first}",
            errors.len(),
            self.messages,
            crate::sql::ident(&job.config.target.staging_schema)
        )
    }
}

/// Loads `set` (all its rows), isolating rows the database rejects.
async fn load_set(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    kind: RowKind,
    data: &Bytes,
    set: &RowSet,
    errors: &mut Vec<ErrorRow>,
    limit: &Limit,
) -> Result<SetResult, Failure> {
    if set.is_empty() {
        return Ok(SetResult::Loaded(0));
    }
    let mut loaded = 0u64;
    let mut pending = Vec::with_capacity(16);
    pending.push(0..set.len());
    while let Some(rows) = pending.pop() {
        transaction.batch_execute("SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
        match load_range(transaction, job, kind, data, set, rows.clone()).await {
            Ok(count) => {
                transaction.batch_execute("RELEASE SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
                loaded += count;
            }
            Err(error) if is_row_error(&error) => {
                transaction.batch_execute("ROLLBACK TO SAVEPOINT flowserver_rows").await.map_err(|e| classify(&e))?;
                if rows.len() == 1 {
                    errors.push(ErrorRow { message: set.messages[rows.start], reason: db::describe(&error) });
                    if limit.exceeded(errors.len()) {
                        return Ok(SetResult::LimitExceeded);
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
    Ok(SetResult::Loaded(loaded))
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
    limit: &Limit,
) -> Result<SetResult, Failure> {
    let Some(served) = batch.served.as_ref().filter(|s| !s.row_ends.is_empty()) else {
        return Ok(SetResult::Loaded(0));
    };
    let table = &greenplum.tables[shard];
    // The error log outlives transactions: start from an empty one.
    transaction.batch_execute(&greenplum::truncate_error_log(table)).await.map_err(|e| classify(&e))?;
    transaction.batch_execute("SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
    let mut inserted = 0u64;
    let mut failure = None;
    for insert in &greenplum.inserts[shard] {
        match transaction.execute(insert.as_str(), &[]).await {
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
            transaction.batch_execute("ROLLBACK TO SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
            return load_served_through_coordinator(transaction, job, greenplum, batch, served, errors, limit).await;
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
    transaction.batch_execute("RELEASE SAVEPOINT flowserver_served").await.map_err(|e| classify(&e))?;
    let rejected = transaction.query(&greenplum::read_error_log(table), &[]).await.map_err(|e| classify(&e))?;
    let mut seen_rows = std::collections::BTreeSet::new();
    for row in rejected {
        let line: Option<i64> = row.get(0);
        let reason: String = row.get(1);
        // Each INSERT scans the table once: several target tables log a bad row several times.
        let Some(index) = line.and_then(|l| usize::try_from(l - 1).ok()) else { continue };
        if !seen_rows.insert(index) {
            continue;
        }
        let Some(&message) = batch.fast.messages.get(index) else { continue };
        errors.push(ErrorRow { message, reason });
        if limit.exceeded(errors.len()) {
            return Ok(SetResult::LimitExceeded);
        }
    }
    Ok(SetResult::Loaded(inserted))
}

async fn load_served_through_coordinator(
    transaction: &Transaction<'_>,
    job: &JobRuntime,
    greenplum: &GreenplumLoad,
    batch: &Batch,
    served: &flowserver_engine::gpfdist::ServedBatch,
    errors: &mut Vec<ErrorRow>,
    limit: &Limit,
) -> Result<SetResult, Failure> {
    match greenplum.format {
        ServedFormat::FsFormatter => {
            // fs_formatter rows are binary COPY tuples behind a length word.
            let mut rows = RowSet::default();
            rows.data.reserve(served.data.len());
            let mut start = 0usize;
            for &end in &served.row_ends {
                rows.data.extend_from_slice(&served.data[start + 4..end as usize]);
                rows.ends.push(rows.data.len() as u32);
                start = end as usize;
            }
            rows.messages.clone_from(&batch.fast.messages);
            let data = Bytes::from(std::mem::take(&mut rows.data));
            load_set(transaction, job, RowKind::Fast, &data, &rows, errors, limit).await
        }
        // The shard kept the source columns' tuples next to the CSV it served.
        ServedFormat::Csv => {
            let data = Bytes::copy_from_slice(&batch.fast.data);
            load_set(transaction, job, RowKind::Slow, &data, &batch.fast, errors, limit).await
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
        transaction.batch_execute(truncate).await?;
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
        inserted += transaction.execute(insert.as_str(), &[]).await?;
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

/// Errors that belong to the rows, not to the session or the job.
fn is_row_error(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else { return false };
    let code = code.code();
    code.starts_with("22") // data exception
        || code.starts_with("23") // integrity constraint violation
        || code.starts_with("P0") // raised by a trigger or function
        || code == SqlState::PROGRAM_LIMIT_EXCEEDED.code()
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

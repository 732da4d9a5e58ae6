//! A running job: the start checks that must pass before any message is
//! read, the shared state its committers update, and the supervisor that
//! decides when it ends and in which state.
//!
//! Start order: database reachable → staging schema and bookkeeping tables →
//! target tables and columns → load plan → topic exists → EXPLAIN of the
//! generated SQL (unless skipped) → offset resets → shards start reading.
//! Every failure before the shards start leaves the job as it was.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flowserver_engine::batch::Batch;
use flowserver_engine::events::{ControlReply, PartitionStart, StartPosition};
use flowserver_engine::kafka::fetcher::NativeFetchPlan;
use flowserver_engine::kafka::wire::Isolation;
use flowserver_engine::plan::{KafkaCommit, ServePlan, ServedRows, ShardJobPlan};
use flowserver_engine::runtime::Engine;
use flowserver_engine::stats::{KafkaHealth, ShardJobStats};
use tokio::sync::{mpsc, oneshot};

use crate::committer::Committer;
use crate::db::{self, TargetKind};
use crate::error::ControlError;
use crate::greenplum::{self, ExternalTable, ServedFormat};
use crate::jobspec::{Consistency, FallbackOffset, JobConfig, SourceFormatSpec};
use crate::kafka_admin::KafkaProbe;
use crate::liveness::Liveness;
use crate::load_plan::{self, LoadPlan, TargetCatalog};
use crate::sql::{BookkeepingSql, ident};

/// How a job is started (from `flowcli start` or a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartOptions {
    pub stop_at_eof: bool,
    pub skip_explain: bool,
    #[serde(skip)]
    pub reset: Option<OffsetReset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// What the supervisor hears from committers.
#[derive(Debug)]
pub enum SupervisorEvent {
    /// The partitions the shard now holds (empty after a revocation).
    Held(Vec<i32>),
    Drained(Vec<i32>),
    Fatal(String),
    Stopped(Option<String>),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Stopped,
    Success,
    Error(String),
}

/// State shared by a running job's supervisor, committers and status readers.
pub struct JobRuntime {
    pub name: String,
    pub config: JobConfig,
    pub plan: LoadPlan,
    pub bookkeeping: BookkeepingSql,
    pub topic: String,
    pub exactly_once: bool,
    pub source_columns: Vec<String>,
    pub partitions: Vec<i32>,
    probe: Arc<Mutex<KafkaProbe>>,
    /// The probe last failed, or the brokers were unreachable since it last
    /// worked: its client may hold metadata of a topic that was re-created
    /// (librdkafka 2.12 can crash fetching with a stale topic id), so the next
    /// resolution starts with a new one.
    probe_stale: AtomicBool,
    start_overrides: Mutex<HashMap<i32, i64>>,
    initial_latest: bool,
    stopping: AtomicBool,
    pub counters: Counters,
    committed: Mutex<BTreeMap<i32, i64>>,
    warning: Mutex<Option<String>>,
    shard_stats: Mutex<Vec<(usize, Arc<ShardJobStats>)>>,
    pub started_at_ms: i64,
    /// Set when the target is WarehousePG / Greenplum: fast rows are served to
    /// the segments through external tables.
    pub greenplum: Option<GreenplumLoad>,
    /// Lasting remarks about how the job runs (shown in its status).
    pub notices: Vec<String>,
    /// What the run waits for, its Kafka warnings, its rate.
    pub liveness: Liveness,
}

/// Why start offsets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum StartsError {
    /// The stored offsets do not fit the log (the offset-gap error): the job cannot go on.
    #[error("{0}")]
    Final(String),
    /// Kafka or the database did not answer: worth waiting for.
    #[error("{0}")]
    Unavailable(String),
}

/// What flowserver offers every job: where its shards' gpfdist listeners are.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// Port of shard `i`'s listener, in shard order.
    pub gpfdist_ports: Vec<u16>,
    /// The host written into LOCATION (Gpfdist.AdvertiseHost).
    pub advertise_host: String,
    pub reuse_tables: bool,
    /// BatchMaxBytes.
    pub batch_max_bytes: usize,
    /// FetchQueueMaxBytes.
    pub fetch_queue_max_bytes: usize,
    /// KafkaFetch is native: eligible jobs fetch without librdkafka.
    pub native_fetch: bool,
    /// Engine shards.
    pub shards: usize,
}

/// A job's WarehousePG / Greenplum load: one external table per shard.
#[derive(Debug, Clone)]
pub struct GreenplumLoad {
    pub tables: Vec<ExternalTable>,
    /// The INSERT statements reading each shard's table.
    pub inserts: Vec<Vec<String>>,
    pub format: ServedFormat,
    /// Why the load is not what it could be (fs_formatter missing).
    pub notice: Option<String>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub rows_loaded: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub batches: AtomicU64,
    pub last_commit_ms: AtomicI64,
    pub last_latency_us: AtomicU64,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl JobRuntime {
    /// Runs the start checks and prepares everything the job needs.
    pub async fn prepare(
        name: &str,
        config: JobConfig,
        options: &StartOptions,
        server: &ServerContext,
    ) -> Result<Arc<JobRuntime>, ControlError> {
        let target = &config.target;
        let mut client =
            db::connect(target, &format!("flowserver:{name}:start")).await.map_err(ControlError::database)?;
        let kind = db::target_kind(&client).await.map_err(ControlError::database)?;
        if !db::schema_exists(&client, &target.staging_schema).await.map_err(ControlError::database)? {
            return Err(ControlError::StartCheck(format!(
                "target.database.staging_schema: schema {} does not exist",
                ident(&target.staging_schema)
            )));
        }
        let bookkeeping = BookkeepingSql::new(&target.staging_schema);
        prepare_bookkeeping(&mut client, &bookkeeping, &target.staging_schema).await.map_err(|e| {
            ControlError::StartCheck(format!("cannot create flowserver's tables: {}", db::describe(&e)))
        })?;

        let mut tables = Vec::with_capacity(target.tables.len());
        for (index, table) in target.tables.iter().enumerate() {
            let columns = db::table_columns(&client, table.schema.as_deref(), &table.table)
                .await
                .map_err(ControlError::database)?
                .ok_or_else(|| {
                    ControlError::StartCheck(format!(
                        "target.database.tables[{index}]: table {} does not exist",
                        crate::sql::qualified(table.schema.as_deref(), &table.table)
                    ))
                })?;
            tables.push(columns);
        }
        let session_time_zone_is_utc = db::session_time_zone_is_utc(&client).await.map_err(ControlError::database)?;
        let catalog = TargetCatalog { tables, session_time_zone_is_utc };
        let plan = load_plan::build(&config, &catalog, kind).map_err(|e| ControlError::StartCheck(e.to_string()))?;
        for line in &plan.explain_lines {
            tracing::info!(job = name, "mapping {line}");
        }

        let source = &config.source;
        let brokers = source.brokers.join(",");
        let probe_properties = source.properties.clone();
        let topic = source.topic.clone();
        let probe_health = Arc::new(KafkaHealth::default());
        let (probe, partitions) = tokio::task::spawn_blocking({
            let brokers = brokers.clone();
            let topic = topic.clone();
            let probe_health = probe_health.clone();
            move || {
                let probe = KafkaProbe::new(&brokers, &probe_properties, probe_health)?;
                let partitions = probe.partitions(&topic)?;
                Ok::<_, crate::kafka_admin::KafkaAdminError>((probe, partitions))
            }
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
        .map_err(ControlError::kafka)?;

        let greenplum = match kind {
            TargetKind::PostgreSql => None,
            TargetKind::Greenplum => Some(prepare_greenplum(&client, name, &config, &plan, server).await?),
        };
        if !options.skip_explain {
            explain(&mut client, &plan, greenplum.as_ref()).await?;
        }

        let source_columns = match &source.format {
            SourceFormatSpec::Json { column, .. } => vec![column.clone()],
            SourceFormatSpec::Csv(csv) => csv.columns.iter().map(|c| c.name.clone()).collect(),
        };
        let initial_latest = source
            .properties
            .iter()
            .any(|(k, v)| k == "auto.offset.reset" && matches!(v.as_str(), "latest" | "largest" | "end"));
        let group = group_of(name, &source.properties);
        let runtime = JobRuntime {
            name: name.to_owned(),
            exactly_once: source.consistency == Consistency::ExactlyOnce,
            config,
            plan,
            bookkeeping,
            topic,
            source_columns,
            partitions,
            probe: Arc::new(Mutex::new(probe)),
            probe_stale: AtomicBool::new(false),
            start_overrides: Mutex::new(HashMap::new()),
            initial_latest,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            committed: Mutex::new(BTreeMap::new()),
            warning: Mutex::new(None),
            shard_stats: Mutex::new(Vec::new()),
            started_at_ms: now_ms(),
            notices: greenplum.iter().filter_map(|g| g.notice.clone()).collect(),
            liveness: Liveness::new(group, probe_health),
            greenplum,
        };
        if let Some(reset) = options.reset {
            runtime.apply_reset(&client, reset).await?;
        }
        let runtime = Arc::new(runtime);
        if runtime.exactly_once {
            runtime.check_stored_offsets(&client).await?;
        }
        Ok(runtime)
    }

    /// Resolves every partition's start now, so an offset gap fails the start
    /// itself rather than the first assignment, and a gap resolved by
    /// `fallback_offset` is resolved once, at start, and stored.
    async fn check_stored_offsets(self: &Arc<Self>, client: &tokio_postgres::Client) -> Result<(), ControlError> {
        let rows = client
            .query(&self.bookkeeping.read_offsets, &[&self.name, &self.topic, &self.partitions])
            .await
            .map_err(|e| ControlError::StartCheck(format!("cannot read stored offsets: {}", db::describe(&e))))?;
        let stored = db::stored_offsets(&rows).map_err(|e| ControlError::StartCheck(e.to_string()))?;
        let runtime = self.clone();
        let starts = tokio::task::spawn_blocking(move || runtime.resolve_starts(&runtime.partitions, &stored))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .map_err(|e| ControlError::StartCheck(e.to_string()))?;
        let moved: Vec<(i32, i64)> = starts
            .iter()
            .filter_map(|start| match start.position {
                StartPosition::Offset(offset) if start.stored >= 0 && offset != start.stored => {
                    Some((start.partition, offset))
                }
                _ => None,
            })
            .collect();
        if !moved.is_empty() {
            tracing::warn!(job = %self.name, partitions = ?moved, "offset gap: starting from fallback_offset");
            let partitions: Vec<i32> = moved.iter().map(|m| m.0).collect();
            let offsets: Vec<i64> = moved.iter().map(|m| m.1).collect();
            client
                .execute(&self.bookkeeping.reset_offsets, &[&self.name, &self.topic, &partitions, &offsets, &false])
                .await
                .map_err(|e| ControlError::StartCheck(format!("cannot store offsets: {}", db::describe(&e))))?;
        }
        Ok(())
    }

    /// Moves every partition's start to the reset point: in the database for
    /// exactly-once, else for the first assignment of this run.
    async fn apply_reset(&self, client: &tokio_postgres::Client, reset: OffsetReset) -> Result<(), ControlError> {
        let targets = self
            .with_probe(move |probe, topic, partitions| {
                partitions
                    .iter()
                    .map(|&p| {
                        let offset = match reset {
                            OffsetReset::Earliest => probe.bounds(topic, p)?.0,
                            OffsetReset::Latest => probe.bounds(topic, p)?.1,
                            OffsetReset::Timestamp(ts) => probe.offset_for_time(topic, p, ts)?,
                        };
                        Ok((p, offset))
                    })
                    .collect::<Result<Vec<_>, crate::kafka_admin::KafkaAdminError>>()
            })
            .await?;
        tracing::info!(job = %self.name, ?targets, "offsets reset");
        // A reset starts a new span for error_limit in every mode.
        let partitions: Vec<i32> = targets.iter().map(|t| t.0).collect();
        let offsets: Vec<i64> = targets.iter().map(|t| t.1).collect();
        client
            .execute(&self.bookkeeping.reset_offsets, &[&self.name, &self.topic, &partitions, &offsets, &true])
            .await
            .map_err(|e| ControlError::StartCheck(format!("cannot reset offsets: {}", db::describe(&e))))?;
        if !self.exactly_once
            && let Ok(mut overrides) = self.start_overrides.lock()
        {
            overrides.extend(targets);
        }
        Ok(())
    }

    async fn with_probe<T: Send + 'static>(
        &self,
        work: impl FnOnce(&KafkaProbe, &str, &[i32]) -> Result<T, crate::kafka_admin::KafkaAdminError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let probe = self.probe.clone();
        let topic = self.topic.clone();
        let partitions = self.partitions.clone();
        tokio::task::spawn_blocking(move || {
            let probe = probe.lock().map_err(|_| ControlError::Internal("kafka probe lock poisoned".into()))?;
            work(&probe, &topic, &partitions).map_err(ControlError::kafka)
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
    }

    /// Start offsets for exactly-once: the stored offset when the log still
    /// has it; the fallback (or an error naming both offsets) when it does
    /// not; the log start (or end, if `auto.offset.reset` says latest) for a
    /// partition never loaded. Blocking.
    pub fn resolve_starts(
        &self,
        partitions: &[i32],
        stored: &[(i32, i64)],
    ) -> Result<Vec<PartitionStart>, StartsError> {
        let mut probe = self.probe.lock().map_err(|_| StartsError::Final("kafka probe lock poisoned".into()))?;
        if self.probe_stale.swap(false, Ordering::AcqRel) {
            let source = &self.config.source;
            match KafkaProbe::new(&source.brokers.join(","), &source.properties, self.liveness.probe_health.clone()) {
                Ok(fresh) => *probe = fresh,
                Err(error) => {
                    self.probe_stale.store(true, Ordering::Release);
                    return Err(StartsError::Unavailable(error.to_string()));
                }
            }
        }
        let result = self.resolve_with(&probe, partitions, stored);
        if matches!(result, Err(StartsError::Unavailable(_))) {
            self.probe_stale.store(true, Ordering::Release);
        }
        result
    }

    /// The brokers were unreachable: resolve the next starts with a new probe.
    pub fn mark_probe_stale(&self) {
        self.probe_stale.store(true, Ordering::Release);
    }

    fn resolve_with(
        &self,
        probe: &KafkaProbe,
        partitions: &[i32],
        stored: &[(i32, i64)],
    ) -> Result<Vec<PartitionStart>, StartsError> {
        let fallback = self.config.source.fallback_offset;
        let unavailable = |e: crate::kafka_admin::KafkaAdminError| StartsError::Unavailable(e.to_string());
        // Fresh metadata first: the topic may be gone or re-created since the last look.
        let existing = probe.partitions(&self.topic).map_err(unavailable)?;
        let mut starts = Vec::with_capacity(partitions.len());
        // A partition the topic no longer has (re-created with fewer) gets no
        // start: it is not read, and the group's next assignment drops it.
        for &partition in partitions.iter().filter(|p| existing.contains(p)) {
            let stored_offset = stored.iter().find(|(p, _)| *p == partition).map(|(_, o)| *o);
            let (low, reported_high) = probe.reported_bounds(&self.topic, partition).map_err(unavailable)?;
            let (position, stored) = match stored_offset {
                // The common case needs no fetch: the offset is within what the broker reports.
                Some(offset) if (low..=reported_high).contains(&offset) => (offset, offset),
                Some(offset) => {
                    let (low, high) = probe.bounds(&self.topic, partition).map_err(unavailable)?;
                    if (low..=high).contains(&offset) {
                        (offset, offset)
                    } else {
                        match fallback {
                            Some(FallbackOffset::Earliest) => (low, offset),
                            Some(FallbackOffset::Latest) => (high, offset),
                            None => {
                                return Err(StartsError::Final(format!(
                                    "offset gap on partition {partition} of topic {:?}: the stored offset {offset} is outside \
                                     the available offsets {low} to {high}; set source.kafka.control.fallback_offset \
                                     (earliest or latest) or start with --reset-to-earliest or --reset-to-latest",
                                    self.topic
                                )));
                            }
                        }
                    }
                }
                None if self.initial_latest => (probe.bounds(&self.topic, partition).map_err(unavailable)?.1, -1),
                None => (low, -1),
            };
            starts.push(PartitionStart { partition, position: StartPosition::Offset(position), stored });
        }
        Ok(starts)
    }

    /// Stores the starts `fallback_offset` moved (an offset gap found while
    /// running), as the start checks do, so a later start does not resolve
    /// the gap again; compare-and-set against the offsets `starts` were
    /// resolved from.
    pub async fn store_moved_starts(
        &self,
        client: &tokio_postgres::Client,
        starts: &mut [PartitionStart],
    ) -> Result<(), StartsError> {
        let moved: Vec<(i32, i64, i64)> = starts
            .iter()
            .filter_map(|start| match start.position {
                StartPosition::Offset(offset) if start.stored >= 0 && offset != start.stored => {
                    Some((start.partition, start.stored, offset))
                }
                _ => None,
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        tracing::warn!(job = %self.name, partitions = ?moved, "offset gap: going on from fallback_offset");
        let partitions: Vec<i32> = moved.iter().map(|m| m.0).collect();
        let before: Vec<i64> = moved.iter().map(|m| m.1).collect();
        let offsets: Vec<i64> = moved.iter().map(|m| m.2).collect();
        // A jump over a gap reads no message: the counts stay.
        let messages: Vec<i64> = vec![0; moved.len()];
        let stored = client
            .execute(
                &self.bookkeeping.advance_offsets,
                &[&self.name, &self.topic, &partitions, &before, &offsets, &messages],
            )
            .await
            .map_err(|e| StartsError::Unavailable(format!("cannot store offsets: {}", db::describe(&e))))?;
        if stored != moved.len() as u64 {
            return Err(StartsError::Unavailable("the stored offsets moved while they were checked".into()));
        }
        for start in starts.iter_mut() {
            if let StartPosition::Offset(offset) = start.position
                && moved.iter().any(|m| m.0 == start.partition)
            {
                start.stored = offset;
            }
        }
        Ok(())
    }

    pub fn take_start_overrides(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        let Ok(mut overrides) = self.start_overrides.lock() else { return HashMap::new() };
        partitions.iter().filter_map(|p| overrides.remove(p).map(|o| (*p, o))).collect()
    }

    pub fn shard_plan(&self, stop_at_eof: bool, server: &ServerContext) -> ShardJobPlan {
        let source = &self.config.source;
        let mut consumer_config: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), source.brokers.join(",")),
            ("group.id".into(), self.liveness.group.clone()),
            ("client.id".into(), format!("flowserver.{}", self.name)),
            ("session.timeout.ms".into(), "10000".into()),
            // librdkafka's default backs a full partition queue off for a whole
            // second; the shard drains its queue in milliseconds.
            ("fetch.queue.backoff.ms".into(), "10".into()),
            // A subscribed topic that is missing (a broker that came back
            // without it) is looked up again this often; the group rejoins
            // once it exists. librdkafka's default, 5 minutes, kept a job
            // holding no partitions that long after the topic was re-created.
            ("topic.metadata.refresh.interval.ms".into(), "5000".into()),
        ];
        // What librdkafka may hold ahead of the shard: the backpressure bound.
        // Its queue limit applies to each partition's fetch queue, so the
        // consumer's budget is split over the partitions a shard expects.
        let per_consumer = self.partitions.len().div_ceil(server.shards.max(1)).max(1);
        let per_partition = (server.fetch_queue_max_bytes / per_consumer).max(64 << 10);
        consumer_config.extend([
            ("queued.max.messages.kbytes".into(), (per_partition / 1024).to_string()),
            ("max.partition.fetch.bytes".into(), (per_partition / 2).to_string()),
            ("fetch.max.bytes".into(), (server.fetch_queue_max_bytes / 2).clamp(1 << 20, 50 << 20).to_string()),
        ]);
        let auto_offset_reset = match source.fallback_offset {
            Some(FallbackOffset::Latest) => "latest",
            _ => "earliest",
        };
        if source.consistency != Consistency::ExactlyOnce {
            consumer_config.push(("auto.offset.reset".into(), auto_offset_reset.into()));
        }
        consumer_config.extend(source.properties.iter().cloned());
        // Settings the loading protocol depends on; the job's properties cannot change them.
        consumer_config.push(("enable.partition.eof".into(), "true".into()));
        let (auto_commit, kafka_commit) = match source.consistency {
            Consistency::ExactlyOnce => ("false", KafkaCommit::AfterLoadSecondary),
            Consistency::AtLeastOnce => ("false", KafkaCommit::AfterLoad),
            Consistency::AtMostOnce => ("false", KafkaCommit::BeforeLoad),
            Consistency::None => ("true", KafkaCommit::Auto),
        };
        consumer_config.push(("enable.auto.commit".into(), auto_commit.into()));
        // Shards store what auto-commit commits (batches are read from partition queues).
        consumer_config.push(("enable.auto.offset.store".into(), "false".into()));
        if source.consistency == Consistency::ExactlyOnce {
            // The database decides where to read; an offset the log lost must be noticed.
            consumer_config.push(("auto.offset.reset".into(), "error".into()));
        }
        let native_fetch = self.native_fetch_plan(server, per_partition);
        // Exactly-once shards read their share at once: partition i to shard i mod shards.
        let shards = server.shards.max(1);
        let read_ahead = if self.exactly_once {
            (0..shards).map(|shard| self.partitions.iter().skip(shard).step_by(shards).copied().collect()).collect()
        } else {
            Vec::new()
        };
        ShardJobPlan {
            job: self.name.clone(),
            topic: self.topic.clone(),
            consumer_config,
            native_fetch,
            read_ahead,
            decode: self.decode_plan(),
            batch_interval: source.batch.interval,
            batch_max_messages: source.batch.max_count.map(|n| n.get()),
            batch_max_bytes: server.batch_max_bytes,
            kafka_commit,
            stop_at_eof,
            serve: self.greenplum.as_ref().map(|g| ServePlan {
                path: self.name.clone(),
                rows: match g.format {
                    ServedFormat::FsFormatter => ServedRows::FsFormatter,
                    ServedFormat::Csv => ServedRows::Csv,
                },
            }),
        }
    }

    /// The native fetch plan, for exactly-once jobs (every start offset comes
    /// from the database) on plaintext brokers; `None` leaves the fetching
    /// to librdkafka.
    fn native_fetch_plan(&self, server: &ServerContext, per_partition: usize) -> Option<NativeFetchPlan> {
        let source = &self.config.source;
        if !server.native_fetch || source.consistency != Consistency::ExactlyOnce {
            return None;
        }
        let property = |key: &str| source.properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let secured = source.properties.iter().any(|(k, _)| k.starts_with("sasl.") || k.starts_with("ssl."))
            || property("security.protocol").is_some_and(|p| !p.eq_ignore_ascii_case("plaintext"));
        if secured {
            return None;
        }
        let isolation = match property("isolation.level") {
            Some("read_uncommitted") => Isolation::ReadUncommitted,
            _ => Isolation::ReadCommitted,
        };
        let max_wait_ms = property("fetch.wait.max.ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(500);
        // One response per leader connection, one queued and one being
        // delivered: a quarter of the budget each keeps a single-broker
        // cluster within FetchQueueMaxBytes.
        let request_max_bytes = (server.fetch_queue_max_bytes / 4).clamp(1 << 20, 50 << 20);
        Some(NativeFetchPlan {
            bootstrap: source.brokers.clone(),
            client_id: format!("flowserver.{}", self.name),
            isolation,
            max_wait: Duration::from_millis(max_wait_ms),
            request_max_bytes: request_max_bytes as i32,
            partition_max_bytes: (per_partition / 2).min(request_max_bytes) as i32,
        })
    }

    /// What the shards compute: on WarehousePG / Greenplum the fast rows are
    /// always staged (the external table's shape), or only the source columns
    /// when the database has no fs_formatter.
    fn decode_plan(&self) -> flowserver_engine::codec::DecodePlan {
        let mut decode = self.plan.decode.clone();
        match self.greenplum.as_ref().map(|g| g.format) {
            None => {}
            Some(ServedFormat::FsFormatter) => decode.fast_columns = self.plan.staged_decode.clone(),
            Some(ServedFormat::Csv) => decode.fast_columns = self.plan.source_decode.clone(),
        }
        decode
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn set_warning(&self, warning: String) {
        if let Ok(mut slot) = self.warning.lock() {
            *slot = Some(warning);
        }
    }

    pub fn warning(&self) -> Option<String> {
        self.warning.lock().ok().and_then(|w| w.clone())
    }

    pub fn record_commit(&self, batch: &Batch, rows: u64, errors: u64, started: Instant) {
        let counters = &self.counters;
        let loaded = counters.rows_loaded.fetch_add(rows, Ordering::Relaxed) + rows;
        self.liveness.note_commit(loaded);
        counters.rows_rejected.fetch_add(errors, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        counters.last_latency_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Ok(mut committed) = self.committed.lock() {
            for range in &batch.partitions {
                committed.insert(range.partition, range.next);
            }
        }
        if let Ok(mut warning) = self.warning.lock() {
            *warning = None;
        }
    }

    pub fn committed_offsets(&self) -> BTreeMap<i32, i64> {
        self.committed.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn shard_stats(&self) -> Vec<(usize, Arc<ShardJobStats>)> {
        self.shard_stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Rows per second over the last 10 s; after the run, its average (see [`crate::liveness`]).
    pub fn rows_per_second(&self) -> f64 {
        self.liveness.rows_per_second()
    }

    fn sample_rate(&self) {
        self.liveness.sample_rate(self.counters.rows_loaded.load(Ordering::Relaxed));
    }

    /// What keeps the running job from loading, if anything.
    pub fn waiting(&self) -> Option<String> {
        self.liveness.waiting(&self.shard_stats())
    }
}

/// The job's consumer group: `group.id` from its properties, else `flowserver.<job>`.
fn group_of(job: &str, properties: &[(String, String)]) -> String {
    properties.iter().find(|(k, _)| k == "group.id").map_or_else(|| format!("flowserver.{job}"), |(_, v)| v.clone())
}

/// Creates flow_offsets and flow_errors, and upgrades a flow_offsets written
/// by an older flowserver in place (its offsets stay; the counts start at 0).
/// Two jobs starting at once must not race to create the same tables.
async fn prepare_bookkeeping(
    client: &mut tokio_postgres::Client,
    bookkeeping: &BookkeepingSql,
    staging_schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    db::run(&transaction, "SELECT pg_advisory_xact_lock(hashtext('flowserver bookkeeping'))").await?;
    db::run(&transaction, &bookkeeping.create_offsets).await?;
    db::run(&transaction, &bookkeeping.create_errors).await?;
    let columns: Vec<String> = transaction
        .query(bookkeeping.offsets_columns, &[&staging_schema])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !columns.iter().any(|c| c == "rejected") || !columns.iter().any(|c| c == "messages") {
        tracing::info!(schema = staging_schema, "adding the error_limit counts to flow_offsets");
        db::run(&transaction, &bookkeeping.upgrade_offsets).await?;
    }
    transaction.commit().await
}

/// Installs fs_formatter if needed (falling back to CSV when it cannot be
/// installed) and creates one external table per shard.
async fn prepare_greenplum(
    client: &tokio_postgres::Client,
    job: &str,
    config: &JobConfig,
    plan: &LoadPlan,
    server: &ServerContext,
) -> Result<GreenplumLoad, ControlError> {
    if server.gpfdist_ports.is_empty() {
        return Err(ControlError::StartCheck(
            "the target is WarehousePG / Greenplum but this flowserver runs no gpfdist listener".into(),
        ));
    }
    let installed = client
        .query_opt("SELECT extversion FROM pg_extension WHERE extname = 'fs_formatter'", &[])
        .await
        .map_err(|e| ControlError::StartCheck(format!("cannot look up fs_formatter: {}", db::describe(&e))))?
        .is_some();
    let mut notice = None;
    let format = if installed {
        ServedFormat::FsFormatter
    } else {
        match db::run(client, "CREATE EXTENSION IF NOT EXISTS fs_formatter").await {
            Ok(_) => {
                tracing::info!(job, "created extension fs_formatter");
                ServedFormat::FsFormatter
            }
            Err(error) => {
                let text = format!(
                    "fs_formatter cannot be installed ({}); serving CSV and computing every column in the database",
                    db::describe(&error)
                );
                tracing::warn!(job, "{text}");
                notice = Some(text);
                ServedFormat::Csv
            }
        }
    };
    let (shape, inserts_of): (&crate::load_plan::RelationShape, _) = match format {
        ServedFormat::FsFormatter => (&plan.staged, &plan.staged),
        ServedFormat::Csv => (&plan.sources, &plan.sources),
    };
    let segments: i64 = client
        .query_one(greenplum::PRIMARY_SEGMENTS, &[])
        .await
        .map_err(|e| ControlError::StartCheck(format!("cannot count primary segments: {}", db::describe(&e))))?
        .get(0);
    if segments < 1 {
        return Err(ControlError::StartCheck("the cluster has no primary segment up".into()));
    }
    let target = &config.target;
    let mut tables = Vec::new();
    let mut inserts = Vec::new();
    for (shard, port) in server.gpfdist_ports.iter().enumerate() {
        let location = greenplum::location(&server.advertise_host, *port, job);
        let table = greenplum::external_table(greenplum::TableSpec {
            staging_schema: &target.staging_schema,
            job,
            shard,
            location: &location,
            shape,
            format,
            reuse: server.reuse_tables,
        });
        let cannot_create = |e: &tokio_postgres::Error| {
            ControlError::StartCheck(format!("cannot create the external table {}: {}", table.name, db::describe(e)))
        };
        if table.reuse {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.name])
                .await
                .map_err(|e| cannot_create(&e))?
                .get(0);
            if !exists {
                match db::run(client, &table.create).await {
                    Ok(_) => {}
                    // Another job with the same definition created it meanwhile.
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_TABLE) => {}
                    Err(e) => return Err(cannot_create(&e)),
                }
            }
        } else {
            db::run(client, &table.drop).await.map_err(|e| cannot_create(&e))?;
            db::run(client, &table.create).await.map_err(|e| cannot_create(&e))?;
        }
        inserts.push(inserts_of.inserts(&table.name));
        tables.push(table);
    }
    tracing::info!(job, format = ?format, locations = ?tables.iter().map(|t| &t.location).collect::<Vec<_>>(), "external tables ready");
    Ok(GreenplumLoad { tables, inserts, format, notice })
}

/// Checks every generated statement against the target inside a transaction
/// that is rolled back. Each statement is parsed alone (extended protocol), so
/// a mapping that ends the statement early fails here and runs nothing.
async fn explain(
    client: &mut tokio_postgres::Client,
    plan: &LoadPlan,
    greenplum: Option<&GreenplumLoad>,
) -> Result<(), ControlError> {
    let served = greenplum.and_then(|g| g.inserts.first()).cloned().unwrap_or_default();
    let transaction = client
        .transaction()
        .await
        .map_err(|e| ControlError::StartCheck(format!("cannot check the generated SQL: {}", db::describe(&e))))?;
    let result = async {
        for statement in &plan.create_staging {
            db::run(&transaction, statement).await.map_err(|e| format!("{}\n  in: {statement}", explain_error(&e)))?;
        }
        for insert in plan.insert_fast.iter().chain(&plan.insert_slow).chain(&served) {
            db::run(&transaction, &format!("EXPLAIN {insert}"))
                .await
                .map_err(|e| format!("{}\n  in: {insert}", explain_error(&e)))?;
        }
        Ok::<_, String>(())
    }
    .await;
    // Dropping the transaction rolls it back; say so explicitly to see a failure.
    if let Err(error) = transaction.rollback().await {
        tracing::debug!(error = %db::describe(&error), "rollback after EXPLAIN");
    }
    result.map_err(|reason| ControlError::StartCheck(format!("the generated SQL does not fit the target: {reason}")))
}

/// The database's message, with a hint when a statement was more than one.
fn explain_error(error: &tokio_postgres::Error) -> String {
    let message = db::describe(error);
    if error.code() == Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR)
        && message.contains("cannot insert multiple commands into a prepared statement")
    {
        return format!(
            "{message}: a mapping, filter or filter_expression of the job ends the statement and starts another; \
             each must be one SQL expression"
        );
    }
    message
}

/// A started job: what its owner keeps to stop it and learn how it ended.
pub struct RunningJob {
    pub runtime: Arc<JobRuntime>,
    stop: Option<oneshot::Sender<()>>,
    pub ended: Option<oneshot::Receiver<RunEnd>>,
}

impl RunningJob {
    /// Starts the job's shards and its supervisor.
    pub async fn launch(
        runtime: Arc<JobRuntime>,
        engine: &Engine,
        options: &StartOptions,
        server: &ServerContext,
    ) -> Result<RunningJob, ControlError> {
        let plan = Arc::new(runtime.shard_plan(options.stop_at_eof, server));
        let links = engine.start_job(plan).await.map_err(|e| ControlError::Internal(e.to_string()))?;
        if let Ok(mut stats) = runtime.shard_stats.lock() {
            *stats = links.iter().map(|l| (l.shard, l.stats.clone())).collect();
        }
        let (events_tx, events_rx) = mpsc::channel(64);
        let replies: Vec<_> = links.iter().map(|l| l.replies.clone()).collect();
        for link in links {
            tokio::spawn(Committer::new(runtime.clone(), link, events_tx.clone()).run());
        }
        drop(events_tx);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = oneshot::channel();
        let supervised = runtime.clone();
        let stop_at_eof = options.stop_at_eof;
        tokio::spawn(async move {
            let end = supervise(supervised, replies, events_rx, stop_rx, stop_at_eof).await;
            let _ = ended_tx.send(end);
        });
        Ok(RunningJob { runtime, stop: Some(stop_tx), ended: Some(ended_rx) })
    }

    /// Asks the job to load what it holds and stop.
    pub fn request_stop(&mut self) {
        self.runtime.stopping.store(true, Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn supervise(
    runtime: Arc<JobRuntime>,
    replies: Vec<async_channel::Sender<ControlReply>>,
    mut events: mpsc::Receiver<(usize, SupervisorEvent)>,
    mut stop: oneshot::Receiver<()>,
    stop_at_eof: bool,
) -> RunEnd {
    let shards = replies.len();
    let mut held: Vec<Vec<i32>> = vec![Vec::new(); shards];
    let mut drained: Vec<Vec<i32>> = vec![Vec::new(); shards];
    let mut stopped = 0usize;
    let mut error: Option<String> = None;
    let mut success = false;
    let mut stop_sent = false;
    let mut stop_listening = true;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));

    async fn stop_all(replies: &[async_channel::Sender<ControlReply>], runtime: &JobRuntime, sent: &mut bool) {
        if *sent {
            return;
        }
        *sent = true;
        runtime.stopping.store(true, Ordering::Release);
        for reply in replies {
            let _ = reply.send(ControlReply::Stop).await;
        }
    }

    while stopped < shards {
        tokio::select! {
            _ = &mut stop, if stop_listening => {
                stop_listening = false;
                stop_all(&replies, &runtime, &mut stop_sent).await;
            }
            event = events.recv() => {
                let Some((shard, event)) = event else { break };
                match event {
                    SupervisorEvent::Held(partitions) => {
                        held[shard] = partitions;
                        drained[shard].clear();
                    }
                    SupervisorEvent::Drained(partitions) => {
                        drained[shard] = partitions;
                        // Every partition of the topic must be held and read to its end
                        // here: during a rebalance a shard may hold nothing yet, and
                        // partitions nobody holds have not been read.
                        let everything_held = runtime
                            .partitions
                            .iter()
                            .all(|p| held.iter().any(|h| h.contains(p)));
                        let all_drained = held.iter().zip(&drained).all(|(h, d)| h.iter().all(|p| d.contains(p)));
                        if stop_at_eof && everything_held && all_drained && !stop_sent {
                            tracing::info!(job = %runtime.name, "every partition is read to its end; stopping");
                            success = true;
                            stop_all(&replies, &runtime, &mut stop_sent).await;
                        }
                    }
                    SupervisorEvent::Fatal(reason) => {
                        tracing::error!(job = %runtime.name, %reason, "job failed");
                        error.get_or_insert(reason);
                        stop_all(&replies, &runtime, &mut stop_sent).await;
                    }
                    SupervisorEvent::Stopped(shard_error) => {
                        stopped += 1;
                        if let Some(reason) = shard_error {
                            if error.is_none() {
                                tracing::error!(job = %runtime.name, shard, %reason, "shard stopped the job");
                                error = Some(reason);
                            }
                            stop_all(&replies, &runtime, &mut stop_sent).await;
                        }
                    }
                }
            }
            _ = tick.tick() => {
                runtime.sample_rate();
                if runtime.liveness.tick(&runtime.name, &runtime.shard_stats()) {
                    runtime.mark_probe_stale();
                }
            }
        }
    }
    runtime.sample_rate();
    let _ = runtime.liveness.tick(&runtime.name, &runtime.shard_stats());
    runtime.liveness.finish_rate(
        runtime.counters.rows_loaded.load(Ordering::Relaxed),
        runtime.counters.last_commit_ms.load(Ordering::Relaxed),
    );
    match error {
        Some(reason) => RunEnd::Error(reason),
        None if success => RunEnd::Success,
        None => RunEnd::Stopped,
    }
}

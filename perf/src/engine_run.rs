//! The engine without a database: N JSON events pre-produced to a topic are
//! read, decoded and encoded by 1 or 2 shards; each sealed batch is either
//! acknowledged at once (`kafka_json_to_blackhole`) or first read by emulated
//! Greenplum segments from the shard's gpfdist listener
//! (`kafka_json_to_segments`). Throughput is timed from the first message read
//! to the last batch acknowledged; the consumer-group join before it is
//! excluded. Each run also reports the CPU time its shard threads and
//! librdkafka's threads spent over the same window, read from
//! `/proc/self/task/*/schedstat`: messages per shard-CPU-second is the
//! per-core rate with the broker's share of the machine taken out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Fetch, produce_bench_events};
use anyhow::{Context, bail, ensure};
use clap::Parser;
use flowserver_engine::codec::{
    Conversion, DecodePlan, EncodeContext, FastColumn, JsonKind, JsonPath, PgType, SourceFormat,
};
use flowserver_engine::events::{BatchOutcome, ControlReply, PartitionStart, ShardEvent, StartPosition};
use flowserver_engine::gpfdist::GpfdistConfig;
use flowserver_engine::kafka::fetcher::NativeFetchPlan;
use flowserver_engine::kafka::wire::Isolation;
use flowserver_engine::plan::{KafkaCommit, ServePlan, ServedRows, ShardJobPlan};
use flowserver_engine::runtime::{Engine, EngineConfig, GpfdistListen};
use flowserver_tests::segment::{Keep, ReadOptions, SegmentRequest, run_segments};
use flowserver_tests::{kafka_brokers, unique};

#[derive(Debug, Parser)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Shard counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub shards: Vec<usize>,
    #[arg(long, default_value_t = 200_000)]
    pub max_count: u64,
    /// Pin shard i to CPU i.
    #[arg(long)]
    pub pin: bool,
    /// Serve every sealed batch to this many emulated segments through the
    /// shard's gpfdist listener before acknowledging it (0: no serving).
    #[arg(long, default_value_t = 0)]
    pub segments: usize,
    /// How the shards fetch: `native` (the shard's own fetcher) or `librdkafka`.
    #[arg(long, value_enum, default_value_t = Fetch::Native)]
    pub fetch: Fetch,
}

/// Runs the measurement described by `args` and prints the table.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let topic = unique("perf_blackhole");
    produce_bench_events(&topic, args.partitions, args.count)?;
    println!("produced {} events to {topic} ({} partitions)", args.count, args.partitions);
    let mut lines = Vec::new();
    let mut one_shard = None;
    for &shards in &args.shards {
        let mut rates = Vec::new();
        let mut per_cpu_second = Vec::new();
        for run in 1..=args.runs {
            let measured = run_once(args, &topic, shards, run)?;
            let messages = measured.messages;
            if messages != args.count {
                bail!("read {messages} messages, expected {}", args.count);
            }
            let rate = messages as f64 / measured.seconds;
            let per_shard_cpu = messages as f64 / measured.shard_cpu_seconds;
            println!(
                "shards {shards} run {run}: {:.3} s, {rate:.0} messages/s ({:.0} per shard); CPU s: shards {:.3}, \
                 librdkafka {:.3}; {per_shard_cpu:.0} messages per shard-CPU-second",
                measured.seconds,
                rate / shards as f64,
                measured.shard_cpu_seconds,
                measured.librdkafka_cpu_seconds,
            );
            rates.push(rate);
            per_cpu_second.push(per_shard_cpu);
        }
        rates.sort_by(f64::total_cmp);
        per_cpu_second.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let median_per_cpu_second = per_cpu_second[per_cpu_second.len() / 2];
        if shards == 1 {
            one_shard = Some(median);
        }
        let scaling = one_shard.map_or(String::from("-"), |one| format!("{:.2}x", median / one));
        lines.push(format!(
            "| {} | {} | {shards} | {:.0} | {:.0} | {scaling} | {median_per_cpu_second:.0} |",
            args.count,
            args.partitions,
            median,
            median / shards as f64
        ));
    }
    println!(
        "\n| messages | partitions | shards | messages/s | per shard | vs 1 shard | per shard-CPU-second |\n\
         |---|---|---|---|---|---|---|"
    );
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// The five benchmark fields pushed down, as every engine run decodes them.
pub fn bench_decode_plan() -> DecodePlan {
    let column = |key: &str, ty: PgType| FastColumn::JsonPath {
        path: JsonPath::key(key),
        conversion: Conversion::new(ty, ty).expect("supported"),
    };
    DecodePlan {
        format: SourceFormat::Json(JsonKind::Json),
        fast_columns: vec![
            column("id", PgType::Int4),
            column("big", PgType::Int8),
            column("name", PgType::Text),
            column("ts", PgType::Timestamp),
            column("score", PgType::Float8),
        ],
        context: EncodeContext { session_time_zone_is_utc: true },
    }
}

fn plan(topic: &str, group: &str, max_count: u64, serve: bool, fetch: Fetch) -> ShardJobPlan {
    ShardJobPlan {
        job: group.to_string(),
        topic: topic.to_string(),
        consumer_config: vec![
            ("bootstrap.servers".into(), kafka_brokers()),
            ("group.id".into(), group.to_string()),
            ("session.timeout.ms".into(), "2000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
            ("fetch.queue.backoff.ms".into(), "10".into()),
            ("enable.partition.eof".into(), "true".into()),
            ("enable.auto.commit".into(), "false".into()),
            ("enable.auto.offset.store".into(), "false".into()),
        ],
        native_fetch: (fetch == Fetch::Native).then(|| NativeFetchPlan {
            bootstrap: kafka_brokers().split(',').map(str::to_owned).collect(),
            client_id: group.to_string(),
            isolation: Isolation::ReadCommitted,
            max_wait: Duration::from_millis(500),
            request_max_bytes: 16 << 20,
            partition_max_bytes: 8 << 20,
        }),
        // Wait for the group: the measurement starts once every shard holds partitions.
        read_ahead: Vec::new(),
        decode: bench_decode_plan(),
        batch_interval: Duration::from_millis(1000),
        batch_max_messages: Some(max_count),
        batch_max_bytes: 64 << 20,
        kafka_commit: KafkaCommit::AfterLoadSecondary,
        stop_at_eof: true,
        serve: serve.then(|| ServePlan { path: "perf".into(), rows: ServedRows::FsFormatter }),
    }
}

/// One run's figures.
struct Measured {
    messages: u64,
    /// From the first message read to the last batch acknowledged.
    seconds: f64,
    shard_cpu_seconds: f64,
    librdkafka_cpu_seconds: f64,
}

/// CPU time, in nanoseconds, of each live thread of this process whose name
/// starts with `prefix`, by thread id.
fn thread_cpu_ns(prefix: &str) -> std::collections::HashMap<u32, u64> {
    let mut times = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return times };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        if let Some(ns) = schedstat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
            times.insert(tid, ns);
        }
    }
    times
}

/// CPU seconds the `prefix` threads spent since `before` was taken.
fn cpu_seconds_since(prefix: &str, before: &std::collections::HashMap<u32, u64>) -> f64 {
    let spent: u64 = thread_cpu_ns(prefix)
        .into_iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(&tid).copied().unwrap_or(0)))
        .sum();
    spent as f64 / 1e9
}

/// Messages read and seconds from the first message read to the last batch
/// sealed. Start offsets are withheld until every shard holds partitions, so
/// the measurement covers a stable assignment, not the consumer group's
/// rebalances; acknowledged batches advance the offsets a later assignment
/// starts from, so nothing is read twice.
fn run_once(args: &Args, topic: &str, shards: usize, run: usize) -> anyhow::Result<Measured> {
    use std::collections::HashMap;
    let gpfdist = (args.segments > 0).then(|| GpfdistListen {
        host: "127.0.0.1".into(),
        base_port: 0,
        config: GpfdistConfig::default(),
    });
    let engine = Engine::start(&EngineConfig { shards, pin: args.pin, gpfdist })?;
    let addresses = engine.gpfdist_addresses().to_vec();
    let group = unique(&format!("blackhole_{shards}_{run}"));
    let plan = Arc::new(plan(topic, &group, args.max_count, args.segments > 0, args.fetch));
    let links = futures_lite_block_on(engine.start_job(plan))?;
    let replies: Vec<_> = links.iter().map(|l| l.replies.clone()).collect();
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    for (shard, link) in links.into_iter().enumerate() {
        let events_tx = events_tx.clone();
        std::thread::spawn(move || {
            while let Ok(event) = link.events.recv_blocking() {
                let last = matches!(event, ShardEvent::Stopped { .. });
                if events_tx.send((shard, event)).is_err() || last {
                    break;
                }
            }
        });
    }
    drop(events_tx);
    let holders_needed = shards.min(args.partitions as usize);
    let mut pending: Vec<Option<(u64, Vec<i32>)>> = vec![None; shards];
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut sealed = 0u64;
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut stopped = 0;
    let mut stop_sent = false;
    let mut cpu_before = None;
    while stopped < shards {
        let (shard, event) = events_rx.recv_timeout(Duration::from_secs(300)).context("no shard event in 300 s")?;
        match event {
            ShardEvent::Assigned { generation, starting, .. } => {
                pending[shard] = Some((generation, starting));
                let holders = pending.iter().filter(|p| p.as_ref().is_some_and(|(_, parts)| !parts.is_empty())).count();
                if holders >= holders_needed {
                    if cpu_before.is_none() {
                        cpu_before = Some((thread_cpu_ns("shard-"), thread_cpu_ns("rdk:")));
                    }
                    for (shard, entry) in pending.iter_mut().enumerate() {
                        if let Some((generation, partitions)) = entry.take() {
                            let offsets = partitions
                                .iter()
                                .map(|&partition| PartitionStart {
                                    partition,
                                    position: StartPosition::Offset(*next.get(&partition).unwrap_or(&0)),
                                    stored: -1,
                                })
                                .collect();
                            replies[shard]
                                .send_blocking(ControlReply::StartOffsets { generation, offsets: Ok(offsets) })?;
                        }
                    }
                }
            }
            ShardEvent::Revoked { .. } => pending[shard] = None,
            ShardEvent::Drained { .. } => {}
            ShardEvent::Sealed(batch) => {
                sealed += batch.message_count() as u64;
                for range in &batch.partitions {
                    next.insert(range.partition, range.next);
                }
                first = Some(first.map_or(batch.opened_at, |f| f.min(batch.opened_at)));
                let seq = batch.seq;
                if args.segments > 0 {
                    // The segments pull the batch the shard published, as a
                    // Greenplum INSERT … SELECT would, before it is acknowledged.
                    let served = scan_batch(addresses[shard], &format!("{run}-{shard}-{seq}"), args.segments)?;
                    ensure!(served == batch.fast_rows() as u64, "segments read {served} of {} rows", batch.fast_rows());
                }
                let done = Instant::now();
                last = Some(last.map_or(done, |l| l.max(done)));
                replies[shard].send_blocking(ControlReply::BatchOutcome {
                    seq,
                    outcome: BatchOutcome::Committed { buffers: Some(batch) },
                })?;
                if sealed >= args.count && !stop_sent {
                    stop_sent = true;
                    for reply in &replies {
                        let _ = reply.send_blocking(ControlReply::Stop);
                    }
                }
            }
            ShardEvent::Stopped { error } => {
                if let Some(error) = error {
                    bail!("shard {shard} stopped: {error}");
                }
                stopped += 1;
            }
        }
    }
    let (shard_cpu_seconds, librdkafka_cpu_seconds) = match &cpu_before {
        Some((shard_threads, librdkafka_threads)) => {
            (cpu_seconds_since("shard-", shard_threads), cpu_seconds_since("rdk:", librdkafka_threads))
        }
        None => bail!("never started reading"),
    };
    engine.shutdown();
    let seconds = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => bail!("no batch"),
    };
    Ok(Measured { messages: sealed, seconds, shard_cpu_seconds, librdkafka_cpu_seconds })
}

fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Rows `segments` emulated segments read from one scan of the shard at `address`.
fn scan_batch(address: std::net::SocketAddr, xid: &str, segments: usize) -> anyhow::Result<u64> {
    let responses = run_segments(
        &[address],
        segments,
        |i, _| SegmentRequest::gp7("/perf", xid, "1", "0", i as u32, segments as u32),
        &ReadOptions { keep: Keep::Count, ..ReadOptions::default() },
    );
    let mut rows = 0;
    for response in responses {
        rows += response?.row_count;
    }
    Ok(rows)
}

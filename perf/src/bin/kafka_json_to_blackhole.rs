//! Engine only: N JSON events pre-produced to a topic are read, decoded and
//! encoded by 1 or 2 shards, and every sealed batch is acknowledged at once
//! without touching a database. Measures per-core throughput of the data
//! plane (Kafka consumption + decode + encode) and its scaling across shards.
//! Prints the median of `--runs` runs, timed from the first message read to
//! the last batch sealed (the consumer-group join before it is excluded).
//!
//! `cargo build --release -p flowserver-perf && target/release/kafka_json_to_blackhole --count 1000000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use flowserver_engine::codec::{
    Conversion, DecodePlan, EncodeContext, FastColumn, JsonKind, JsonPath, PgType, SourceFormat,
};
use flowserver_engine::events::{BatchOutcome, ControlReply, PartitionStart, ShardEvent, StartPosition};
use flowserver_engine::plan::{KafkaCommit, ShardJobPlan};
use flowserver_engine::runtime::{Engine, EngineConfig};
use flowserver_perf::{bench_json, bench_row};
use flowserver_tests::{kafka_brokers, produce_json_strings, unique};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Shard counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    #[arg(long, default_value_t = 200_000)]
    max_count: u64,
    /// Pin shard i to CPU i.
    #[arg(long)]
    pin: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = unique("perf_blackhole");
    let mut text = String::new();
    produce_json_strings(
        &topic,
        args.partitions,
        (0..args.count).map(|i| {
            bench_json(&bench_row(i), &mut text);
            text.clone()
        }),
    )?;
    println!("produced {} events to {topic} ({} partitions)", args.count, args.partitions);
    let mut lines = Vec::new();
    let mut one_shard = None;
    for &shards in &args.shards {
        let mut rates = Vec::new();
        for run in 1..=args.runs {
            let (messages, seconds) = run_once(&args, &topic, shards, run)?;
            if messages != args.count {
                bail!("read {messages} messages, expected {}", args.count);
            }
            let rate = messages as f64 / seconds;
            println!(
                "shards {shards} run {run}: {seconds:.3} s, {rate:.0} messages/s ({:.0} per shard)",
                rate / shards as f64
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        if shards == 1 {
            one_shard = Some(median);
        }
        let scaling = one_shard.map_or(String::from("-"), |one| format!("{:.2}x", median / one));
        lines.push(format!(
            "| {} | {} | {shards} | {:.0} | {:.0} | {scaling} |",
            args.count,
            args.partitions,
            median,
            median / shards as f64
        ));
    }
    println!("\n| messages | partitions | shards | messages/s | per shard | vs 1 shard |\n|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn plan(topic: &str, group: &str, max_count: u64) -> ShardJobPlan {
    let column = |key: &str, ty: PgType| FastColumn::JsonPath {
        path: JsonPath::key(key),
        conversion: Conversion::new(ty, ty).expect("supported"),
    };
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
        decode: DecodePlan {
            format: SourceFormat::Json(JsonKind::Json),
            fast_columns: vec![
                column("id", PgType::Int4),
                column("big", PgType::Int8),
                column("name", PgType::Text),
                column("ts", PgType::Timestamp),
                column("score", PgType::Float8),
            ],
            context: EncodeContext { session_time_zone_is_utc: true },
        },
        batch_interval: Duration::from_millis(1000),
        batch_max_messages: Some(max_count),
        batch_max_bytes: 64 << 20,
        kafka_commit: KafkaCommit::AfterLoadSecondary,
        stop_at_eof: true,
        serve: None,
    }
}

/// Messages read and seconds from the first message read to the last batch
/// sealed. Start offsets are withheld until every shard holds partitions, so
/// the measurement covers a stable assignment, not the consumer group's
/// rebalances; acknowledged batches advance the offsets a later assignment
/// starts from, so nothing is read twice.
fn run_once(args: &Args, topic: &str, shards: usize, run: usize) -> anyhow::Result<(u64, f64)> {
    use std::collections::HashMap;
    let engine = Engine::start(&EngineConfig { shards, pin: args.pin, gpfdist: None })?;
    let group = unique(&format!("blackhole_{shards}_{run}"));
    let plan = Arc::new(plan(topic, &group, args.max_count));
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
    while stopped < shards {
        let (shard, event) = events_rx.recv_timeout(Duration::from_secs(300)).context("no shard event in 300 s")?;
        match event {
            ShardEvent::Assigned { generation, partitions } => {
                pending[shard] = Some((generation, partitions));
                let holders = pending.iter().filter(|p| p.as_ref().is_some_and(|(_, parts)| !parts.is_empty())).count();
                if holders >= holders_needed {
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
                last = Some(last.map_or(batch.sealed_at, |l| l.max(batch.sealed_at)));
                let seq = batch.seq;
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
    engine.shutdown();
    let seconds = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => bail!("no batch"),
    };
    Ok((sealed, seconds))
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

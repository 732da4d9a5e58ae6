//! The shards' hot path with the broker and the database taken out: N
//! benchmark events, as Kafka record batches in memory (what a fetch response
//! holds), are split over 1 or 2 shard threads (glommio executors, pinned to
//! one CPU each, as flowserver runs them); each walks its record batches and
//! encodes every value into binary-COPY rows with the benchmark job's five
//! pushed-down fields, sealing a batch every `--max-count` rows. This is what
//! a shard does per message with the native fetch path, minus the socket
//! read. `kafka_json_to_blackhole` measures the same with tansu on the same
//! 2 cores, where the broker's CPU caps the scaling.
//!
//! `cargo build --release && target/release/shard_scaling --count 2000000 --runs 5`

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use flowserver_engine::codec::{Encoded, RowEncoder};
use flowserver_engine::kafka::wire::{RecordBatches, encode_record_batch};
use flowserver_perf::engine_run::bench_decode_plan;
use flowserver_perf::{bench_json, bench_row};
use glommio::{LocalExecutorBuilder, Placement};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 2_000_000)]
    count: u64,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Shard counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    #[arg(long, default_value_t = 200_000)]
    max_count: u64,
}

/// Records per batch, as a producer with `linger.ms` writes them.
const PER_BATCH: usize = 500;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut lines = Vec::new();
    let mut one_shard = None;
    for &shards in &args.shards {
        if shards > cpus {
            bail!("{shards} shards on {cpus} CPUs would not measure scaling");
        }
        let parts: Vec<Arc<Vec<u8>>> = (0..shards).map(|s| Arc::new(record_batches(&args, s, shards))).collect();
        let mut rates = Vec::new();
        for run in 1..=args.runs {
            let (rows, seconds) = run_once(&parts, args.max_count)?;
            if rows != args.count {
                bail!("encoded {rows} rows, expected {}", args.count);
            }
            let rate = rows as f64 / seconds;
            println!(
                "shards {shards} run {run}: {seconds:.3} s, {rate:.0} rows/s ({:.0} per shard)",
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
        lines.push(format!("| {} | {shards} | {median:.0} | {:.0} | {scaling} |", args.count, median / shards as f64));
    }
    println!("\n| rows | shards | rows/s | per shard | vs 1 shard |\n|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Shard `shard`'s share of the events (every `shards`-th), as record batches.
fn record_batches(args: &Args, shard: usize, shards: usize) -> Vec<u8> {
    let mut text = String::new();
    let values: Vec<Vec<u8>> = (shard as u64..args.count)
        .step_by(shards)
        .map(|i| {
            bench_json(&bench_row(i), &mut text);
            text.clone().into_bytes()
        })
        .collect();
    let mut out = Vec::new();
    for (n, chunk) in values.chunks(PER_BATCH).enumerate() {
        let records: Vec<_> = chunk.iter().enumerate().map(|(i, v)| (i as i64, None, Some(v.as_slice()))).collect();
        encode_record_batch(&mut out, (n * PER_BATCH) as i64, 1_700_000_000_000, 0, -1, &records);
    }
    out
}

/// Runs every part on its own pinned shard thread at once; rows encoded and wall seconds.
fn run_once(parts: &[Arc<Vec<u8>>], max_count: u64) -> anyhow::Result<(u64, f64)> {
    let start = Arc::new(Barrier::new(parts.len() + 1));
    let mut threads = Vec::new();
    for (shard, part) in parts.iter().enumerate() {
        let part = part.clone();
        let start = start.clone();
        let thread = LocalExecutorBuilder::new(Placement::Fixed(shard))
            .name(&format!("shard-{shard}"))
            .spawn(move || async move {
                start.wait();
                encode_all(&part, max_count)
            })
            .map_err(|e| anyhow::anyhow!("start a shard thread: {e}"))?;
        threads.push(thread);
    }
    start.wait();
    let started = Instant::now();
    let mut rows = 0;
    for thread in threads {
        rows += thread.join().map_err(|e| anyhow::anyhow!("shard thread: {e}"))??;
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// Walks the record batches and encodes each value, sealing (clearing) the
/// buffers every `max_count` rows as a shard hands a batch over.
fn encode_all(records: &[u8], max_count: u64) -> anyhow::Result<u64> {
    let mut encoder = RowEncoder::new(&bench_decode_plan());
    let (mut fast, mut slow, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let mut ends: Vec<u32> = Vec::new();
    let mut rows = 0u64;
    let mut in_batch = 0u64;
    for batch in RecordBatches::new(records) {
        for record in batch?.records(&mut scratch)? {
            match encoder.encode(record?.value, &mut fast, &mut slow) {
                Encoded::Fast => ends.push(fast.len() as u32),
                other => bail!("a benchmark row did not encode fast: {other:?}"),
            }
            rows += 1;
            in_batch += 1;
            if in_batch == max_count {
                std::hint::black_box((&fast, &ends));
                fast.clear();
                ends.clear();
                in_batch = 0;
            }
        }
    }
    Ok(rows)
}

//! The gpfdist listener's serving rate: 1 and 2 shards, each publishing a
//! batch of 1,000,000 rows of 5 columns (int, bigint, 20-char text, timestamp,
//! double) in fs_formatter format, read by 1, 2 and 8 emulated Greenplum 7
//! segments (segment i reads location i % shards, as the planner assigns
//! them), with and without zstd. Prints the median of 3 rounds per case.
//!
//! `cargo build --release -p flowserver-perf && target/release/gpfdist_serving`
//!
//! The segments run on the same cores as the shards; on a 2-core machine the
//! figure is a lower bound of what a shard can serve.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use flowserver_engine::gpfdist::GpfdistConfig;
use flowserver_tests::segment::{Keep, ReadOptions, SegmentRequest, TestShard, run_segments, sample_batch};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let batch = Arc::new(sample_batch(0, args.rows));
    let bytes_per_shard = batch.data.len() as f64;
    println!("batch per shard: {} rows, {} bytes", args.rows, batch.data.len());
    println!(
        "\n| shards | segments | zstd | MB/s per shard | M rows/s per shard | total MB/s |\n|---|---|---|---|---|---|"
    );
    for shards in [1usize, 2] {
        for compression in [false, true] {
            let config = GpfdistConfig { compression, ..GpfdistConfig::default() };
            let servers: Vec<TestShard> = (0..shards).map(|_| TestShard::start(config.clone())).collect();
            let locations: Vec<_> = servers.iter().map(|s| s.addr).collect();
            for segments in [1usize, 2, 8] {
                if segments < shards {
                    continue; // every location needs a segment
                }
                let mut seconds = Vec::new();
                for round in 0..args.rounds {
                    for server in &servers {
                        server.publish("perf", batch.clone());
                    }
                    let xid = format!("{shards}-{compression}-{segments}-{round}");
                    let started = Instant::now();
                    let responses = run_segments(
                        &locations,
                        segments,
                        |i, _| {
                            let mut request = SegmentRequest::gp7("/perf", &xid, "1", "0", i as u32, segments as u32);
                            request.zstd = compression;
                            request
                        },
                        &ReadOptions { keep: Keep::Count, ..ReadOptions::default() },
                    );
                    seconds.push(started.elapsed().as_secs_f64());
                    let rows: u64 = responses.iter().map(|r| r.as_ref().map_or(0, |r| r.row_count)).sum();
                    anyhow::ensure!(rows == args.rows * shards as u64, "served {rows} rows");
                }
                seconds.sort_by(f64::total_cmp);
                let median = seconds[seconds.len() / 2];
                println!(
                    "| {shards} | {segments} | {} | {:.0} | {:.2} | {:.0} |",
                    if compression { "on" } else { "off" },
                    bytes_per_shard / median / 1e6,
                    args.rows as f64 / median / 1e6,
                    bytes_per_shard * shards as f64 / median / 1e6
                );
            }
        }
    }
    Ok(())
}

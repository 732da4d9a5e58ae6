//! Kafka → shard → gpfdist listener → emulated Greenplum 7 segments: every
//! sealed batch is read by `--segments` segments (default 2) before it is
//! acknowledged (see `flowserver_perf::engine_run`).
//!
//! `cargo build --release -p flowserver-perf && target/release/kafka_json_to_segments --segments 8`

use clap::Parser;
use flowserver_perf::engine_run::{Args, run};

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.segments == 0 {
        args.segments = 2;
    }
    run(&args)
}

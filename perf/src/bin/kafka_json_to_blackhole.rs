//! Engine only: Kafka consumption + decode + encode, every batch acknowledged
//! at once (see `flowserver_perf::engine_run`).
//!
//! `cargo build --release -p flowserver-perf && target/release/kafka_json_to_blackhole --count 1000000`

use clap::Parser;
use flowserver_perf::engine_run::{Args, run};

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.segments = 0;
    run(&args)
}

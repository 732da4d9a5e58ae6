//! Produces sample events to a topic (creating it if needed):
//! `flow-produce --topic demo_orders --partitions 4 --count 100000 --kind orders`.

use clap::{Parser, ValueEnum};
use flowserver_perf::{bench_json, bench_row, order_json};
use flowserver_tests::{create_topic_if_missing, producer};
use rdkafka::producer::{BaseRecord, Producer};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Orders,
    Bench,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    #[arg(long, value_enum, default_value_t = Kind::Orders)]
    kind: Kind,
    /// First event number (to add more events after an earlier run).
    #[arg(long, default_value_t = 0)]
    start: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    create_topic_if_missing(&args.topic, args.partitions)?;
    let producer = producer();
    let started = Instant::now();
    let mut text = String::new();
    for i in args.start..args.start + args.count {
        match args.kind {
            Kind::Orders => order_json(i, &mut text),
            Kind::Bench => bench_json(&bench_row(i), &mut text),
        }
        let partition = (i % args.partitions as u64) as i32;
        let mut record: BaseRecord<'_, (), str> = BaseRecord::to(&args.topic).partition(partition).payload(&text);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(5));
                    record = returned;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "produced {} events to {} ({} partitions) in {seconds:.2} s ({:.0}/s)",
        args.count,
        args.topic,
        args.partitions,
        args.count as f64 / seconds
    );
    Ok(())
}

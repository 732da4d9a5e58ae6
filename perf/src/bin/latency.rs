//! Latency from produce to commit at half the maximum load rate.
//!
//! First measures the maximum rate (rows/s from the first message read to the
//! last commit) on pre-produced events; then runs a job with
//! `interval_ms: 100` while a producer sends events at half that rate for
//! `--seconds`, each carrying its send time. Latency of a row = the time
//! PostgreSQL inserted it (`clock_timestamp()` default, within the batch's
//! transaction, a few ms before its commit) minus its send time. Prints p50,
//! p99 and max.
//!
//! `cargo build --release -p flowserver-perf && target/release/latency`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure};
use clap::Parser;
use flowserver_perf::{BENCH_COLUMNS, Fetch, bench_job_yaml, produce_bench_events};
use flowserver_tests::{
    Server, create_topic_if_missing, insert_table, job_yaml, json_value, kafka_brokers, pg, unique,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Skip the maximum-rate measurement and produce at this rate.
    #[arg(long)]
    rate: Option<u64>,
    /// The producer's `linger.ms`: how long it gathers messages into one
    /// produce request. Counted in the latency, since it is part of what a
    /// user's producer adds; longer lingers mean fewer, larger requests for
    /// the broker. At 5 ms, tansu spends most of a core on produce requests
    /// at 150k messages/s and the latency measures the broker.
    #[arg(long, default_value_t = 25)]
    linger_ms: u64,
    /// How flowserver fetches: `native` or `librdkafka`.
    #[arg(long, value_enum, default_value_t = Fetch::Native)]
    fetch: Fetch,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start_with(args.fetch.server_config());
    let rate = match args.rate {
        Some(rate) => rate,
        None => {
            let max = max_rate(&server, args.partitions)?;
            println!("maximum rate: {max:.0} rows/s");
            (max / 2.0) as u64
        }
    };
    let topic = unique("perf_latency");
    create_topic_if_missing(&topic, args.partitions)?;
    let table = unique("perf_latency_t");
    pg().batch_execute(&format!(
        "CREATE TABLE {table} (id bigint, sent_ms bigint, loaded_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))?;
    let job = job_yaml(
        &topic,
        &json_value("json"),
        "      consistency: exactly-once",
        &format!("        interval_ms: {}", args.interval_ms),
        &insert_table(&table, &[("id", "(value->>'id')::bigint"), ("sent_ms", "(value->>'sent_ms')::bigint")]),
        "",
    )
    // tansu answers a waiting fetch only when its wait expires: keep the wait short.
    .replace("fetch.wait.max.ms: 20", "fetch.wait.max.ms: 5\n      fetch.error.backoff.ms: 10");
    ensure!(server.submit_yaml(&table, &job, &["--start"]).success, "submit");
    // Wait until the job reads (the group join) before producing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.status(&table)["partitions"].as_array().is_none_or(|p| p.len() < args.partitions as usize) {
        ensure!(Instant::now() < deadline, "the job did not get its partitions");
        std::thread::sleep(Duration::from_millis(100));
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("linger.ms", args.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let total = rate * args.seconds;
    let started = Instant::now();
    let mut text = String::new();
    for i in 0..total {
        // Pace: message i is due at i / rate seconds; sleep rather than spin,
        // the producer shares the machine with everything it measures.
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        let elapsed = started.elapsed();
        if elapsed < due {
            producer.poll(Duration::ZERO);
            std::thread::sleep(due - elapsed);
        }
        text.clear();
        use std::fmt::Write as _;
        let _ = write!(text, r#"{{"id":{i},"sent_ms":{}}}"#, now_ms());
        let mut record: BaseRecord<'_, (), str> =
            BaseRecord::to(&topic).partition((i % args.partitions as u64) as i32).payload(&text);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let produced_in = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let loaded: i64 = pg().query_one(&format!("SELECT count(*) FROM {table}"), &[])?.get(0);
        if loaded as u64 == total {
            break;
        }
        if Instant::now() > deadline {
            bail!("{loaded} of {total} rows loaded");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.ok(&["stop", &table]);
    let row = pg().query_one(
        &format!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.99) WITHIN GROUP (ORDER BY l), max(l) \
             FROM (SELECT (extract(epoch FROM loaded_at) * 1000 - sent_ms)::float8 AS l FROM {table}) t"
        ),
        &[],
    )?;
    let (p50, p99, max): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
    // The p99 of each second of production: the median shows the steady state,
    // the worst shows the stalls (e.g. the database's checkpoints).
    let row = pg().query_one(
        &format!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY p99), max(p99) FROM ( \
               SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at) * 1000 - sent_ms) AS p99 \
               FROM {table} GROUP BY sent_ms / 1000) s"
        ),
        &[],
    )?;
    let (steady_p99, worst_second_p99): (f64, f64) = (row.get(0), row.get(1));
    println!(
        "produced {total} rows at {rate}/s ({:.0}/s achieved) with interval_ms {}",
        total as f64 / produced_in,
        args.interval_ms
    );
    println!(
        "\n| rate rows/s | interval_ms | linger.ms | rows | p50 ms | p99 ms | max ms | p99 of a second: median / worst | \
         bar p99 ≤ interval + 100 |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {rate} | {} | {} | {total} | {p50:.1} | {p99:.1} | {max:.1} | {steady_p99:.1} / {worst_second_p99:.1} | {} |",
        args.interval_ms,
        args.linger_ms,
        if p99 <= (args.interval_ms + 100) as f64 { "met" } else { "not met" }
    );
    Ok(())
}

/// Rows/s from the first message read to the last commit for 1M pre-produced events.
fn max_rate(server: &Server, partitions: i32) -> anyhow::Result<f64> {
    let topic = unique("perf_latency_max");
    let count = 1_000_000u64;
    produce_bench_events(&topic, partitions, count)?;
    let table = unique("perf_latency_max_t");
    pg().batch_execute(&format!("CREATE TABLE {table} ({BENCH_COLUMNS})"))?;
    let job = bench_job_yaml(&topic, &table, 1000, 200_000);
    ensure!(server.submit_yaml(&table, &job, &["--start"]).success, "submit");
    let mut first_read = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = server.status(&table);
        if first_read.is_none() && status["messages_read"].as_u64().is_some_and(|n| n > 0) {
            first_read = Some(now_ms());
        }
        if status["rows_loaded"].as_u64() == Some(count) {
            let last_commit = status["last_commit_at_ms"].as_i64().unwrap_or(0);
            server.ok(&["stop", &table]);
            let first = first_read.unwrap_or(last_commit);
            return Ok(count as f64 / ((last_commit - first).max(1) as f64 / 1000.0));
        }
        ensure!(Instant::now() < deadline, "maximum-rate load did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! Memory at full speed and under a stalled database.
//!
//! N JSON events are pre-produced; flowserver runs with `BatchMaxBytes` and
//! `FetchQueueMaxBytes` set for a memory cap. Run 1 loads everything at full
//! speed and records the server's peak RSS. Run 2 holds an ACCESS EXCLUSIVE
//! lock on the target table for `--stall-seconds` while the job runs: the
//! first batch's transaction waits, the shard fills its next batch to the cap
//! and stops reading, librdkafka's queue fills and fetching pauses. The peak
//! RSS during the stall must stay under `--cap-mb`; after the lock is released
//! every message must be loaded exactly once.
//!
//! `cargo build --release -p flowserver-perf && target/release/memory_backpressure`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clap::Parser;
use flowserver_perf::{BENCH_COLUMNS, Fetch, bench_job_yaml, produce_bench_events};
use flowserver_tests::{Server, pg, query_i64, unique};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 2_000_000)]
    count: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 60)]
    stall_seconds: u64,
    /// The memory cap the configuration below is chosen for.
    #[arg(long, default_value_t = 256)]
    cap_mb: u64,
    #[arg(long, default_value_t = 16)]
    batch_max_mb: u64,
    #[arg(long, default_value_t = 16)]
    fetch_queue_max_mb: u64,
    /// How flowserver fetches: `native` or `librdkafka`.
    #[arg(long, value_enum, default_value_t = Fetch::Native)]
    fetch: Fetch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = unique("perf_memory");
    produce_bench_events(&topic, args.partitions, args.count)?;
    println!("produced {} events to {topic}", args.count);
    let server = Server::start_with(&format!(
        r#""BatchMaxBytes": {}, "FetchQueueMaxBytes": {}, {}"#,
        args.batch_max_mb << 20,
        args.fetch_queue_max_mb << 20,
        args.fetch.server_config()
    ));
    let idle = server.rss_bytes().unwrap_or(0);
    println!("server idle RSS {:.1} MB", mb(idle));

    // Full speed.
    let (peak, seconds) = load(&server, &topic, &args, None)?;
    println!("full speed: {} rows in {seconds:.2} s, peak RSS {:.1} MB", args.count, mb(peak));

    // Stalled database.
    let (stalled_peak, seconds) = load(&server, &topic, &args, Some(Duration::from_secs(args.stall_seconds)))?;
    println!(
        "stalled {} s, then loaded: {} rows exactly once in {seconds:.2} s, peak RSS {:.1} MB (cap {} MB)",
        args.stall_seconds,
        args.count,
        mb(stalled_peak),
        args.cap_mb
    );
    println!(
        "\n| rows | BatchMaxBytes | FetchQueueMaxBytes | idle RSS MB | peak RSS MB, full speed | peak RSS MB, {} s stall | cap MB |\n|---|---|---|---|---|---|---|\n| {} | {} MiB | {} MiB | {:.0} | {:.0} | {:.0} | {} |",
        args.stall_seconds,
        args.count,
        args.batch_max_mb,
        args.fetch_queue_max_mb,
        mb(idle),
        mb(peak),
        mb(stalled_peak),
        args.cap_mb
    );
    ensure!(stalled_peak <= args.cap_mb << 20, "peak RSS above the cap");
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Loads the topic into a new table; with `stall`, a lock holds the table
/// that long after the job starts. Returns the peak RSS and the seconds from
/// start to the last row.
fn load(server: &Server, topic: &str, args: &Args, stall: Option<Duration>) -> anyhow::Result<(u64, f64)> {
    let table = unique("perf_mem");
    pg().batch_execute(&format!("CREATE TABLE {table} ({BENCH_COLUMNS})"))?;
    let mut locker = pg();
    let lock = match stall {
        Some(_) => {
            let mut transaction = locker.transaction()?;
            transaction.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))?;
            Some(transaction)
        }
        None => None,
    };
    let job = bench_job_yaml(topic, &table, 1000, 200_000);
    ensure!(server.submit_yaml(&table, &job, &[]).success, "submit");
    let started = Instant::now();
    // EXPLAIN would wait for the lock too: the stalled run skips it.
    if stall.is_some() {
        server.ok(&["start", &table, "--skip-explain"]);
    } else {
        server.ok(&["start", &table]);
    }
    let mut peak = 0u64;
    if let (Some(stall), Some(transaction)) = (stall, lock) {
        let mut next_report = Duration::ZERO;
        while started.elapsed() < stall {
            let rss = server.rss_bytes().unwrap_or(0);
            peak = peak.max(rss);
            if started.elapsed() >= next_report {
                eprintln!("  stalled {:>5.1} s: RSS {:.1} MB", started.elapsed().as_secs_f64(), mb(rss));
                next_report += Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ensure!(query_i64(&format!("SELECT count(*) FROM public.flow_offsets WHERE job = '{table}'")) == 0);
        transaction.rollback()?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        peak = peak.max(server.rss_bytes().unwrap_or(0));
        let status = server.status(&table);
        if status["rows_loaded"].as_u64() == Some(args.count) {
            break;
        }
        if status["state"] != "running" {
            bail!("job ended: {status}");
        }
        if Instant::now() > deadline {
            bail!("load did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    server.ok(&["stop", &table]);
    let (rows, distinct) = {
        let row = pg().query_one(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"), &[])?;
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    ensure!(rows as u64 == args.count && distinct as u64 == args.count, "{rows} rows, {distinct} distinct");
    pg().batch_execute(&format!("DROP TABLE {table}"))?;
    Ok((peak, seconds))
}

//! Start latency: `flowcli start` → the job's first committed batch.
//!
//! For each consistency mode (exactly-once through both fetch paths,
//! at-least-once, at-most-once, none), `--runs` times: a new topic with
//! `--messages` events already in it, a new table and a new job (so a new
//! consumer group, with no member of an earlier run to wait for), then
//! `flowcli start` and a poll of the table every 5 ms until the first batch
//! is committed. The job seals its first batch `interval_ms` after its first
//! message, so that much of the time is the job's own choice. The jobs use
//! the product's consumer settings (`session.timeout.ms` 10 s, which tansu
//! turns into a 5 s join) unless `--session-timeout-ms` says otherwise.
//! Prints every run, then the medians and the bar: exactly-once median ≤
//! `interval_ms` + 500 ms.
//!
//! `cargo build --release --workspace --bins && target/release/start_latency`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clap::Parser;
use flowserver_perf::Fetch;
use flowserver_tests::{Server, create_topic_if_missing, id_messages, pg, produce, simple_json_job, unique};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Events in the topic before the start.
    #[arg(long, default_value_t = 4000)]
    messages: i64,
    /// The jobs' `session.timeout.ms` (unset: the product's default).
    #[arg(long)]
    session_timeout_ms: Option<u64>,
}

struct Mode {
    name: &'static str,
    consistency: &'static str,
    fetch: Fetch,
}

const MODES: [Mode; 5] = [
    Mode { name: "exactly-once, native fetch", consistency: "exactly-once", fetch: Fetch::Native },
    Mode { name: "exactly-once, librdkafka fetch", consistency: "exactly-once", fetch: Fetch::Librdkafka },
    Mode { name: "at-least-once", consistency: "at-least-once", fetch: Fetch::Native },
    Mode { name: "at-most-once", consistency: "at-most-once", fetch: Fetch::Native },
    Mode { name: "none", consistency: "none", fetch: Fetch::Native },
];

/// One run: how long `flowcli start` took to return, and to the first commit.
struct Run {
    start_call_ms: f64,
    first_commit_ms: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let native = Server::start_with(Fetch::Native.server_config());
    let librdkafka = Server::start_with(Fetch::Librdkafka.server_config());
    let mut lines = Vec::new();
    let mut exactly_once_medians = Vec::new();
    for mode in &MODES {
        let server = match mode.fetch {
            Fetch::Native => &native,
            Fetch::Librdkafka => &librdkafka,
        };
        let mut runs = Vec::with_capacity(args.runs);
        for run in 1..=args.runs {
            let measured = run_once(server, mode, &args)?;
            println!(
                "{} run {run}: start call {:.0} ms, first commit {:.0} ms",
                mode.name, measured.start_call_ms, measured.first_commit_ms
            );
            runs.push(measured);
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let mut firsts: Vec<f64> = runs.iter().map(|r| r.first_commit_ms).collect();
        let mut calls: Vec<f64> = runs.iter().map(|r| r.start_call_ms).collect();
        let (min, max) = (firsts.iter().copied().fold(f64::MAX, f64::min), firsts.iter().copied().fold(0.0, f64::max));
        let first_median = median(&mut firsts);
        if mode.consistency == "exactly-once" {
            exactly_once_medians.push(first_median);
        }
        lines.push(format!(
            "| {} | {} | {:.0} | {first_median:.0} | {min:.0} – {max:.0} |",
            mode.name,
            args.interval_ms,
            median(&mut calls)
        ));
    }
    println!(
        "\n| mode | interval_ms | `flowcli start` returns, median ms | first committed batch, median ms | range ms |\n\
         |---|---|---|---|---|"
    );
    for line in lines {
        println!("{line}");
    }
    let bar = (args.interval_ms + 500) as f64;
    let met = exactly_once_medians.iter().all(|&m| m <= bar);
    println!("\nbar: exactly-once median ≤ interval_ms + 500 = {bar:.0} ms: {}", if met { "met" } else { "not met" });
    Ok(())
}

fn run_once(server: &Server, mode: &Mode, args: &Args) -> anyhow::Result<Run> {
    let topic = unique("perf_start");
    let table = unique("perf_start_t");
    create_topic_if_missing(&topic, args.partitions)?;
    produce(&topic, args.partitions, id_messages(0..args.messages));
    let mut db = pg();
    db.batch_execute(&format!("CREATE TABLE {table} (id int, body text)"))?;
    let mut job =
        simple_json_job(&topic, &table, mode.consistency, &format!("        interval_ms: {}", args.interval_ms), "");
    job = match args.session_timeout_ms {
        Some(ms) => job.replace("session.timeout.ms: 2000", &format!("session.timeout.ms: {ms}")),
        // The product's consumer settings.
        None => job.replace("      session.timeout.ms: 2000\n      heartbeat.interval.ms: 500\n", ""),
    };
    ensure!(server.submit_yaml(&table, &job, &[]).success, "submit {table}");
    let exists = db.prepare(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))?;
    let started = Instant::now();
    server.ok(&["start", &table]);
    let start_call_ms = started.elapsed().as_secs_f64() * 1000.0;
    let deadline = started + Duration::from_secs(120);
    loop {
        let loaded: bool = db.query_one(&exists, &[])?.get(0);
        if loaded {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: no batch committed in 120 s", mode.name);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let first_commit_ms = started.elapsed().as_secs_f64() * 1000.0;
    server.ok(&["remove", &table]);
    db.batch_execute(&format!("DROP TABLE {table}"))?;
    Ok(Run { start_call_ms, first_commit_ms })
}

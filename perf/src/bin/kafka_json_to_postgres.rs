//! End-to-end throughput: N JSON events (int, bigint, 20-char text,
//! timestamp, double) pre-produced to a topic, loaded by a flowserver job with
//! `(value->>'k')::type` mappings; compared, in the same run, with a raw binary
//! `COPY` of the same rows and with FlowServer's approach (the JSON into a
//! `json` column, extraction by SQL). Prints the median of `--runs` runs.
//!
//! `cargo build --release && target/release/kafka_json_to_postgres --count 1000000`

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use flowserver_perf::{
    BENCH_COLUMNS, BenchRow, Fetch, bench_job_yaml, bench_json, bench_row, process_cpu_seconds, produce_bench_events,
};
use flowserver_tests::{Server, pg, unique};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// flowserver shards.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    #[arg(long, default_value_t = 200_000)]
    max_count: u64,
    /// How flowserver fetches: `native` or `librdkafka`.
    #[arg(long, value_enum, default_value_t = Fetch::Native)]
    fetch: Fetch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = unique("perf_json");
    println!("producing {} events to {topic} ({} partitions)", args.count, args.partitions);
    let started = Instant::now();
    produce_bench_events(&topic, args.partitions, args.count)?;
    println!("  produced in {:.1} s", started.elapsed().as_secs_f64());
    let copy_data = binary_copy_rows(args.count);
    let json_lines = json_copy_text(args.count);

    let server = Server::start_with(&format!(r#""Shards": {}, {}"#, args.shards, args.fetch.server_config()));
    let mut ours = Vec::new();
    let mut loads = Vec::new();
    let mut copies = Vec::new();
    let mut sqls = Vec::new();
    let mut cpu = Vec::new();
    for run in 1..=args.runs {
        let (ours_s, load_s, ours_cpu) = flowserver_run(&server, &topic, &args).context("flowserver load")?;
        let (copy_s, copy_cpu) = raw_copy_run(&copy_data).context("binary COPY")?;
        let sql_s = sql_extraction_run(&json_lines).context("SQL extraction")?;
        println!(
            "run {run}: flowserver {ours_s:.3} s ({:.0} rows/s; {load_s:.3} s from the first message read), binary COPY {copy_s:.3} s ({:.0} rows/s), \
             SQL extraction {sql_s:.3} s ({:.0} rows/s); flowserver/COPY {:.2}, flowserver vs SQL {:.2}x",
            args.count as f64 / ours_s,
            args.count as f64 / copy_s,
            args.count as f64 / sql_s,
            copy_s / ours_s,
            sql_s / ours_s
        );
        ours.push(ours_s);
        loads.push(load_s);
        copies.push(copy_s);
        sqls.push(sql_s);
        cpu.push((ours_cpu, copy_cpu));
    }
    let (o, l, c, s) = (median(&mut ours), median(&mut loads), median(&mut copies), median(&mut sqls));
    println!(
        "\n| rows | partitions | shards | flowserver rows/s (start → last commit) | from first message | binary COPY rows/s | \
         SQL extraction rows/s | vs COPY | vs COPY, from first message | vs SQL |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2}x |",
        args.count,
        args.partitions,
        args.shards,
        args.count as f64 / o,
        args.count as f64 / l,
        args.count as f64 / c,
        args.count as f64 / s,
        c / o,
        c / l,
        s / o
    );
    // Where the machine's CPU went: the run whose flowserver time is the median.
    let per_million = 1e6 / args.count as f64;
    cpu.sort_by(|a, b| a.0.iter().sum::<f64>().total_cmp(&b.0.iter().sum::<f64>()));
    let (ours_cpu, copy_cpu) = &cpu[cpu.len() / 2];
    println!(
        "\nCPU seconds per million rows (median run; flowserver from `start` to the last commit):\n\n\
         | load | {} | total |\n|---|---|---|---|---|\n\
         | flowserver | {} | {:.2} |\n| binary COPY | {} | {:.2} |",
        CPU_PROCESSES.join(" | "),
        ours_cpu.iter().map(|s| format!("{:.2}", s * per_million)).collect::<Vec<_>>().join(" | "),
        ours_cpu.iter().sum::<f64>() * per_million,
        copy_cpu.iter().map(|s| format!("{:.2}", s * per_million)).collect::<Vec<_>>().join(" | "),
        copy_cpu.iter().sum::<f64>() * per_million,
    );
    Ok(())
}

/// The processes whose CPU time a load is charged with.
const CPU_PROCESSES: [&str; 3] = ["flowserver", "tansu", "postgres"];

/// CPU seconds each of `CPU_PROCESSES` used since `before`.
fn cpu_since(before: &[f64]) -> Vec<f64> {
    process_cpu_seconds(&CPU_PROCESSES).iter().zip(before).map(|(now, then)| (now - then).max(0.0)).collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Seconds from `flowcli start` to the commit of the last row, and from the
/// first message read (seen by polling the job's status) to that commit; the
/// CPU seconds of `CPU_PROCESSES` from `start` to the last commit.
fn flowserver_run(server: &Server, topic: &str, args: &Args) -> anyhow::Result<(f64, f64, Vec<f64>)> {
    let table = unique("perf_ours");
    pg().batch_execute(&format!("CREATE TABLE {table} ({BENCH_COLUMNS})"))?;
    let job = bench_job_yaml(topic, &table, args.interval_ms, args.max_count);
    let submitted = server.submit_yaml(&table, &job, &[]);
    if !submitted.success {
        bail!("submit failed: {}", submitted.stderr);
    }
    let cpu_before = process_cpu_seconds(&CPU_PROCESSES);
    let start_ms = now_ms();
    server.ok(&["start", &table]);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_read_ms = None;
    let last_commit = loop {
        let status = server.status(&table);
        if first_read_ms.is_none() && status["messages_read"].as_u64().is_some_and(|n| n > 0) {
            first_read_ms = Some(now_ms());
        }
        if status["rows_loaded"].as_u64() == Some(args.count) {
            break status["last_commit_at_ms"].as_i64().context("last_commit_at_ms")?;
        }
        if status["state"] != "running" {
            bail!("job ended: {status}");
        }
        if Instant::now() > deadline {
            bail!("load did not finish: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let cpu = cpu_since(&cpu_before);
    server.ok(&["stop", &table]);
    server.ok(&["remove", &table]);
    let loaded: i64 = pg().query_one(&format!("SELECT count(*) FROM {table}"), &[])?.get(0);
    if loaded as u64 != args.count {
        bail!("{table} has {loaded} rows");
    }
    pg().batch_execute(&format!("DROP TABLE {table}"))?;
    let first_read_ms = first_read_ms.unwrap_or(start_ms);
    Ok(((last_commit - start_ms) as f64 / 1000.0, (last_commit - first_read_ms) as f64 / 1000.0, cpu))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn raw_copy_run(data: &[u8]) -> anyhow::Result<(f64, Vec<f64>)> {
    let table = unique("perf_copy");
    let mut client = pg();
    client.batch_execute(&format!("CREATE TABLE {table} ({BENCH_COLUMNS})"))?;
    let cpu_before = process_cpu_seconds(&CPU_PROCESSES);
    let started = Instant::now();
    let mut writer = client.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))?;
    // Large writes in pieces: one huge CopyData message is not what a client sends.
    for chunk in data.chunks(1 << 20) {
        writer.write_all(chunk)?;
    }
    writer.finish().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_since(&cpu_before);
    client.batch_execute(&format!("DROP TABLE {table}"))?;
    Ok((seconds, cpu))
}

fn sql_extraction_run(lines: &[u8]) -> anyhow::Result<f64> {
    let staging = unique("perf_json_staging");
    let table = unique("perf_sql");
    let mut client = pg();
    client.batch_execute(&format!("CREATE TABLE {staging} (value json); CREATE TABLE {table} ({BENCH_COLUMNS})"))?;
    let started = Instant::now();
    let mut writer = client.copy_in(&format!("COPY {staging} FROM STDIN"))?;
    for chunk in lines.chunks(1 << 20) {
        writer.write_all(chunk)?;
    }
    writer.finish().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    client.batch_execute(&format!(
        "INSERT INTO {table} SELECT (value->>'id')::int, (value->>'big')::bigint, (value->>'name')::text, \
         (value->>'ts')::timestamp, (value->>'score')::double precision FROM {staging}"
    ))?;
    let seconds = started.elapsed().as_secs_f64();
    client.batch_execute(&format!("DROP TABLE {staging}; DROP TABLE {table}"))?;
    Ok(seconds)
}

fn binary_copy_rows(count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 80);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for i in 0..count {
        let BenchRow { id, big, name, ts_micros, score } = bench_row(i);
        out.extend_from_slice(&5i16.to_be_bytes());
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&big.to_be_bytes());
        out.extend_from_slice(&(name.len() as i32).to_be_bytes());
        out.extend_from_slice(&name);
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&ts_micros.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&score.to_bits().to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// The events as COPY text lines (backslashes doubled, as the text format needs).
fn json_copy_text(count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 120);
    let mut text = String::new();
    for i in 0..count {
        bench_json(&bench_row(i), &mut text);
        out.extend_from_slice(text.replace('\\', "\\\\").as_bytes());
        out.push(b'\n');
    }
    out
}

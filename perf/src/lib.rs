//! Data sets shared by the perf runs and the demo: deterministic events, as
//! JSON messages and as the typed rows they stand for.

pub mod engine_run;

// The `flowserver` binary's allocator and its configuration
// (`flowserver_control::allocator`), so that the in-process engine runs
// (`engine_run`) measure what the product does.
use flowserver_control as _;

use std::fmt::Write as _;

/// The five-field event of the benchmarks: int, bigint, 20-char text,
/// timestamp, double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchRow {
    pub id: i32,
    pub big: i64,
    pub name: [u8; 20],
    /// Microseconds since 2000-01-01 00:00:00 (PostgreSQL's timestamp epoch).
    pub ts_micros: i64,
    pub score: f64,
}

const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

pub fn bench_row(i: u64) -> BenchRow {
    let mut name = [0u8; 20];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for byte in &mut name {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = NAME_CHARS[(x % NAME_CHARS.len() as u64) as usize];
    }
    // 2026-01-01T00:00:00 plus i milliseconds and a microsecond part.
    let base = 820_540_800_000_000i64;
    BenchRow {
        id: i as i32,
        big: (i as i64).wrapping_mul(1_000_003) - 4_000_000_000,
        name,
        ts_micros: base + (i as i64) * 1000 + (i as i64 % 1000),
        score: (i as f64) * 0.5 + 0.125,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` of microseconds since 2000-01-01.
pub fn format_timestamp(micros: i64, out: &mut String) {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400) + 10_957; // days from 1970-01-01 to 2000-01-01
    let of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
}

pub fn bench_json(row: &BenchRow, out: &mut String) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"id":{},"big":{},"name":"{}","ts":""#,
        row.id,
        row.big,
        std::str::from_utf8(&row.name).unwrap_or("")
    );
    format_timestamp(row.ts_micros, out);
    let _ = write!(out, r#"","score":{:?}}}"#, row.score);
}

/// How flowserver reads Kafka in a run (its `KafkaFetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fetch {
    /// The shard's own fetcher (the server's default).
    Native,
    Librdkafka,
}

impl Fetch {
    /// The flow_server.json member that selects this path.
    pub fn server_config(self) -> &'static str {
        match self {
            Fetch::Native => r#""KafkaFetch": "native""#,
            Fetch::Librdkafka => r#""KafkaFetch": "librdkafka""#,
        }
    }
}

/// Columns of the benchmark table.
pub const BENCH_COLUMNS: &str = "id int, big bigint, name text, ts timestamp, score double precision";

/// Produces the first `count` benchmark events as JSON to `topic` (created
/// with `partitions` if missing), event i to partition i % partitions.
pub fn produce_bench_events(topic: &str, partitions: i32, count: u64) -> anyhow::Result<()> {
    let mut text = String::new();
    flowserver_tests::produce_json_strings(
        topic,
        partitions,
        (0..count).map(|i| {
            bench_json(&bench_row(i), &mut text);
            text.clone()
        }),
    )?;
    Ok(())
}

/// The benchmark job: the five fields mapped with `(value->>'k')::type` into
/// `table`, exactly-once, batches of `interval_ms` / `max_count`.
pub fn bench_job_yaml(topic: &str, table: &str, interval_ms: u64, max_count: u64) -> String {
    flowserver_tests::job_yaml(
        topic,
        &flowserver_tests::json_value("json"),
        "      consistency: exactly-once",
        &format!("        interval_ms: {interval_ms}\n        max_count: {max_count}"),
        &flowserver_tests::insert_table(
            table,
            &[
                ("id", "(value->>'id')::int"),
                ("big", "(value->>'big')::bigint"),
                ("name", "(value->>'name')::text"),
                ("ts", "(value->>'ts')::timestamp"),
                ("score", "(value->>'score')::double precision"),
            ],
        ),
        "",
    )
}

/// An order for the demo.
pub fn order_json(i: u64, out: &mut String) {
    out.clear();
    let customers = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
    let _ = write!(
        out,
        r#"{{"order_id":{},"customer":"{}","amount":"{}.{:02}","ordered_at":"2026-11-25T{:02}:{:02}:{:02}Z"}}"#,
        1_000_000 + i,
        customers[(i % customers.len() as u64) as usize],
        10 + i % 490,
        i % 100,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    );
}

/// CPU seconds (user + system) used so far by every live process whose name
/// is one of `names`, summed per name. Processes that ended are not counted,
/// so take both readings while the processes of interest are running.
pub fn process_cpu_seconds(names: &[&str]) -> Vec<f64> {
    let mut seconds = vec![0.0; names.len()];
    let Ok(processes) = std::fs::read_dir("/proc") else { return seconds };
    // USER_HZ is 100 on every Linux this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    for process in processes.flatten() {
        let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else { continue };
        // pid (comm) state ppid … utime stime: comm may hold spaces, so split after its ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let Some(i) = names.iter().position(|name| comm == *name) else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the comm: state is field 0, utime field 11, stime field 12.
        let ticks = |k: usize| fields.get(k).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        seconds[i] += (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND;
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut s = String::new();
        format_timestamp(0, &mut s);
        assert_eq!(s, "2000-01-01T00:00:00.000000");
        s.clear();
        format_timestamp(820_540_800_000_001, &mut s);
        assert_eq!(s, "2026-01-01T00:00:00.000001");
        let mut json = String::new();
        bench_json(&bench_row(1), &mut json);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["id"], 1);
        assert_eq!(value["name"].as_str().map(str::len), Some(20));
        assert_eq!(value["ts"], "2026-01-01T00:00:00.001001");
    }
}

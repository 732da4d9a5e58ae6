//! Rendering of job statuses as text and JSON: pure functions, no I/O.

use flowserver_proto::v1::{JobState, JobStatus, PartitionStatus};
use serde::Serialize;

/// The lowercase word for a `JobState` value as carried on the wire.
pub fn state_word(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Unspecified) => "unspecified",
        Ok(JobState::Submitted) => "submitted",
        Ok(JobState::Running) => "running",
        Ok(JobState::Stopped) => "stopped",
        Ok(JobState::Success) => "success",
        Ok(JobState::Error) => "error",
        Err(_) => "unknown",
    }
}

/// JSON view of a [`JobStatus`]: the proto's field names, `state` as a word.
#[derive(Debug, Serialize)]
pub struct JobView<'a> {
    pub name: &'a str,
    pub state: &'static str,
    pub message: &'a str,
    pub source: &'a str,
    pub target: &'a str,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    pub messages_read: u64,
    pub bytes_read: u64,
    pub batches_committed: u64,
    pub rows_per_second: f64,
    pub lag: i64,
    pub partitions: Vec<PartitionView>,
    pub started_at_ms: i64,
    pub last_commit_at_ms: i64,
    pub last_batch_latency_ms: f64,
    pub consistency: &'a str,
    pub waiting: &'a str,
}

/// JSON view of a [`PartitionStatus`].
#[derive(Debug, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub committed_offset: i64,
    pub end_offset: i64,
    pub lag: i64,
    pub shard: u32,
}

impl<'a> From<&'a JobStatus> for JobView<'a> {
    fn from(s: &'a JobStatus) -> Self {
        JobView {
            name: &s.name,
            state: state_word(s.state),
            message: &s.message,
            source: &s.source,
            target: &s.target,
            rows_loaded: s.rows_loaded,
            rows_rejected: s.rows_rejected,
            messages_read: s.messages_read,
            bytes_read: s.bytes_read,
            batches_committed: s.batches_committed,
            rows_per_second: s.rows_per_second,
            lag: s.lag,
            partitions: s.partitions.iter().map(PartitionView::from).collect(),
            started_at_ms: s.started_at_ms,
            last_commit_at_ms: s.last_commit_at_ms,
            last_batch_latency_ms: s.last_batch_latency_ms,
            consistency: &s.consistency,
            waiting: &s.waiting,
        }
    }
}

impl From<&PartitionStatus> for PartitionView {
    fn from(p: &PartitionStatus) -> Self {
        PartitionView {
            partition: p.partition,
            committed_offset: p.committed_offset,
            end_offset: p.end_offset,
            lag: p.lag,
            shard: p.shard,
        }
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> String {
    let result = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    // Views hold only strings and numbers: serialization cannot fail.
    result.expect("job views serialize")
}

/// `status --output json`: one pretty-printed object.
pub fn status_json(status: &JobStatus) -> String {
    to_json(&JobView::from(status), true)
}

/// `monitor --output json`: one object on one line (JSON Lines).
pub fn status_json_line(status: &JobStatus) -> String {
    to_json(&JobView::from(status), false)
}

/// `list --output json`: a pretty-printed array of job objects.
pub fn list_json(jobs: &[JobStatus]) -> String {
    let views: Vec<JobView<'_>> = jobs.iter().map(JobView::from).collect();
    to_json(&views, true)
}

/// `list --name-only --output json`: a pretty-printed array of names.
pub fn names_json(jobs: &[JobStatus]) -> String {
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    to_json(&names, true)
}

/// `list --name-only`: one name per line.
pub fn names_text(jobs: &[JobStatus]) -> String {
    jobs.iter().map(|j| format!("{}\n", j.name)).collect()
}

/// A lag, offset or other "-1 if unknown" value.
fn known(value: i64) -> String {
    if value < 0 { "-".to_string() } else { value.to_string() }
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// The state as `list` shows it: `waiting` for a running job that is not
/// loading (its status says why).
fn list_state(job: &JobStatus) -> &'static str {
    if job.state == JobState::Running as i32 && !job.waiting.is_empty() { "waiting" } else { state_word(job.state) }
}

/// `list`: a table with a header; columns separated by two spaces, numbers
/// right-aligned, no trailing blanks.
pub fn list_text(jobs: &[JobStatus]) -> String {
    const HEADER: [&str; 7] = ["NAME", "STATE", "ROWS", "ERRORS", "LAG", "SOURCE", "TARGET"];
    const RIGHT: [bool; 7] = [false, false, true, true, true, false, false];
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_string)];
    for job in jobs {
        rows.push([
            job.name.clone(),
            list_state(job).to_string(),
            job.rows_loaded.to_string(),
            job.rows_rejected.to_string(),
            known(job.lag),
            or_dash(&job.source).to_string(),
            or_dash(&job.target).to_string(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if RIGHT[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An epoch-milliseconds instant as RFC 3339 UTC, or `never` for 0.
fn instant(ms: i64) -> String {
    if ms == 0 { "never".to_string() } else { format_utc_ms(ms) }
}

/// `status`: one `key: value` line per field, then one line per partition.
pub fn status_text(s: &JobStatus) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        out.push_str(key);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    };
    line("name", &s.name);
    line("state", state_word(s.state));
    line("message", or_dash(&s.message));
    line("waiting", or_dash(&s.waiting));
    line("source", or_dash(&s.source));
    line("target", or_dash(&s.target));
    line("consistency", or_dash(&s.consistency));
    line("rows_loaded", &s.rows_loaded.to_string());
    line("rows_rejected", &s.rows_rejected.to_string());
    line("messages_read", &s.messages_read.to_string());
    line("bytes_read", &s.bytes_read.to_string());
    line("batches_committed", &s.batches_committed.to_string());
    line("rows_per_second", &format!("{:.1}", s.rows_per_second));
    line("lag", &known(s.lag));
    line("started_at", &instant(s.started_at_ms));
    line("last_commit_at", &instant(s.last_commit_at_ms));
    line("last_batch_latency_ms", &format!("{:.1}", s.last_batch_latency_ms));
    line("partitions", &s.partitions.len().to_string());
    for p in &s.partitions {
        out.push_str(&format!(
            "partition {}: committed_offset={} end_offset={} lag={} shard={}\n",
            p.partition,
            p.committed_offset,
            known(p.end_offset),
            known(p.lag),
            p.shard
        ));
    }
    out
}

/// `monitor`: one line per update (no newline), stamped with `now_ms`.
pub fn monitor_line(now_ms: i64, s: &JobStatus) -> String {
    let mut line = format!(
        "{} {} rows={} rows/s={:.1} lag={} batches={} errors={}",
        format_utc_ms(now_ms),
        state_word(s.state),
        s.rows_loaded,
        s.rows_per_second,
        known(s.lag),
        s.batches_committed,
        s.rows_rejected,
    );
    if !s.partitions.is_empty() {
        let lags: Vec<String> = s.partitions.iter().map(|p| format!("{}:{}", p.partition, known(p.lag))).collect();
        line.push_str(" partition_lag=");
        line.push_str(&lags.join(","));
    }
    if s.state == JobState::Running as i32 && !s.waiting.is_empty() {
        line.push_str(" [");
        line.push_str(&single_line(&s.waiting));
        line.push(']');
    }
    if s.state == JobState::Error as i32 && !s.message.is_empty() {
        line.push_str(" message=");
        line.push_str(&single_line(&s.message));
    }
    line
}

/// `start --stop-at-eof`: the final state of a job, one line.
pub fn final_line(s: &JobStatus) -> String {
    format!("{}: {} (rows loaded: {}, rows rejected: {})", s.name, state_word(s.state), s.rows_loaded, s.rows_rejected)
}

/// Joins the lines of a message with "; " so it fits one output line.
pub fn single_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Milliseconds since the epoch as `YYYY-MM-DDThh:mm:ss.mmmZ` (UTC).
pub fn format_utc_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", tod / 3600, tod % 3600 / 60, tod % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobStatus {
        JobStatus {
            name: "orders".into(),
            state: JobState::Running as i32,
            message: String::new(),
            source: "kafka://broker:9092/orders".into(),
            target: "public.orders".into(),
            rows_loaded: 1200,
            rows_rejected: 3,
            messages_read: 1203,
            bytes_read: 45678,
            batches_committed: 12,
            rows_per_second: 150.5,
            lag: 42,
            partitions: vec![
                PartitionStatus { partition: 0, committed_offset: 600, end_offset: 620, lag: 20, shard: 0 },
                PartitionStatus { partition: 1, committed_offset: 603, end_offset: -1, lag: -1, shard: 1 },
            ],
            started_at_ms: 1_767_323_045_000,
            last_commit_at_ms: 1_767_323_100_250,
            last_batch_latency_ms: 12.34,
            consistency: "exactly-once".into(),
            waiting: String::new(),
        }
    }

    #[test]
    fn status_as_text() {
        let expected = "\
name: orders
state: running
message: -
waiting: -
source: kafka://broker:9092/orders
target: public.orders
consistency: exactly-once
rows_loaded: 1200
rows_rejected: 3
messages_read: 1203
bytes_read: 45678
batches_committed: 12
rows_per_second: 150.5
lag: 42
started_at: 2026-01-02T03:04:05.000Z
last_commit_at: 2026-01-02T03:05:00.250Z
last_batch_latency_ms: 12.3
partitions: 2
partition 0: committed_offset=600 end_offset=620 lag=20 shard=0
partition 1: committed_offset=603 end_offset=- lag=- shard=1
";
        assert_eq!(status_text(&sample()), expected);
    }

    #[test]
    fn status_as_text_never_started() {
        let s = JobStatus { name: "new".into(), state: JobState::Submitted as i32, lag: -1, ..JobStatus::default() };
        let text = status_text(&s);
        assert!(text.contains("\nstate: submitted\n"));
        assert!(text.contains("\nlag: -\n"));
        assert!(text.contains("\nstarted_at: never\nlast_commit_at: never\n"));
        assert!(text.ends_with("\npartitions: 0\n"));
    }

    #[test]
    fn status_as_json() {
        let expected = r#"{"name":"orders","state":"running","message":"","source":"kafka://broker:9092/orders","target":"public.orders","rows_loaded":1200,"rows_rejected":3,"messages_read":1203,"bytes_read":45678,"batches_committed":12,"rows_per_second":150.5,"lag":42,"partitions":[{"partition":0,"committed_offset":600,"end_offset":620,"lag":20,"shard":0},{"partition":1,"committed_offset":603,"end_offset":-1,"lag":-1,"shard":1}],"started_at_ms":1767323045000,"last_commit_at_ms":1767323100250,"last_batch_latency_ms":12.34,"consistency":"exactly-once","waiting":""}"#;
        assert_eq!(status_json_line(&sample()), expected);
        // The pretty form is the same document.
        let pretty: serde_json::Value = serde_json::from_str(&status_json(&sample())).unwrap();
        let compact: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(pretty, compact);
        assert!(status_json(&sample()).starts_with("{\n  \"name\": \"orders\",\n  \"state\": \"running\","));
    }

    #[test]
    fn state_words() {
        let words: Vec<&str> = (0..=6).map(state_word).collect();
        assert_eq!(words, ["unspecified", "submitted", "running", "stopped", "success", "error", "unknown"]);
    }

    #[test]
    fn list_as_text() {
        let mut other = JobStatus {
            name: "clicks_eu".into(),
            state: JobState::Stopped as i32,
            rows_loaded: 5,
            lag: -1,
            source: "rabbitmq://mq/clicks".into(),
            target: "web.clicks".into(),
            ..JobStatus::default()
        };
        other.rows_rejected = 1234;
        let expected = "\
NAME       STATE    ROWS  ERRORS  LAG  SOURCE                      TARGET
orders     running  1200       3   42  kafka://broker:9092/orders  public.orders
clicks_eu  stopped     5    1234    -  rabbitmq://mq/clicks        web.clicks
";
        assert_eq!(list_text(&[sample(), other]), expected);
        assert_eq!(list_text(&[]), "NAME  STATE  ROWS  ERRORS  LAG  SOURCE  TARGET\n");
        let waiting = JobStatus { waiting: "waiting: joining consumer group flowserver.orders".into(), ..sample() };
        assert!(list_text(&[waiting]).contains("\norders  waiting  1200"));
    }

    #[test]
    fn list_names() {
        let jobs = [sample(), JobStatus { name: "b".into(), ..JobStatus::default() }];
        assert_eq!(names_text(&jobs), "orders\nb\n");
        assert_eq!(names_json(&jobs), "[\n  \"orders\",\n  \"b\"\n]");
        assert_eq!(names_json(&[]), "[]");
        assert_eq!(list_json(&[]), "[]");
        let v: serde_json::Value = serde_json::from_str(&list_json(&jobs)).unwrap();
        assert_eq!(v[0]["name"], "orders");
        assert_eq!(v[1]["state"], "unspecified");
    }

    #[test]
    fn monitor_lines() {
        let now = 1_767_323_106_007;
        assert_eq!(
            monitor_line(now, &sample()),
            "2026-01-02T03:05:06.007Z running rows=1200 rows/s=150.5 lag=42 batches=12 errors=3 partition_lag=0:20,1:-"
        );
        let failed = JobStatus {
            name: "x".into(),
            state: JobState::Error as i32,
            message: "relation \"t\" does not exist\nHINT: create it".into(),
            lag: -1,
            ..JobStatus::default()
        };
        let joining = JobStatus {
            rows_loaded: 0,
            partitions: Vec::new(),
            waiting: "waiting: joining consumer group flowserver.orders".into(),
            ..sample()
        };
        assert_eq!(
            monitor_line(now, &joining),
            "2026-01-02T03:05:06.007Z running rows=0 rows/s=150.5 lag=42 batches=12 errors=3 \
             [waiting: joining consumer group flowserver.orders]"
        );
        assert_eq!(
            monitor_line(now, &failed),
            "2026-01-02T03:05:06.007Z error rows=0 rows/s=0.0 lag=- batches=0 errors=0 message=relation \"t\" does not exist; HINT: create it"
        );
    }

    #[test]
    fn final_lines() {
        let mut s = sample();
        s.state = JobState::Success as i32;
        assert_eq!(final_line(&s), "orders: success (rows loaded: 1200, rows rejected: 3)");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_767_323_045_123), "2026-01-02T03:04:05.123Z");
        assert_eq!(format_utc_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}

//! The `flowserver.v1.FlowServer` gRPC service: request validation and
//! conversion to and from the registry's types. Every error leaves through
//! [`flowserver_proto::to_status`], the one mapping to gRPC codes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flowserver_proto::to_status;
use flowserver_proto::v1::{self as pb, flow_server_server::FlowServer};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::error::ControlError;
use crate::job::{OffsetReset, StartOptions};
use crate::registry::{JobState, JobView, Registry};

pub struct Service {
    registry: Arc<Registry>,
}

impl Service {
    pub fn new(registry: Arc<Registry>) -> Service {
        Service { registry }
    }
}

fn start_options(options: Option<pb::StartOptions>) -> Result<StartOptions, ControlError> {
    let options = options.unwrap_or_default();
    let reset = match options.reset {
        None => None,
        Some(pb::start_options::Reset::ResetToEarliest(true)) => Some(OffsetReset::Earliest),
        Some(pb::start_options::Reset::ResetToLatest(true)) => Some(OffsetReset::Latest),
        Some(pb::start_options::Reset::ResetToEarliest(false) | pb::start_options::Reset::ResetToLatest(false)) => None,
        Some(pb::start_options::Reset::ResetToTimestamp(text)) => Some(OffsetReset::Timestamp(parse_timestamp(&text)?)),
    };
    Ok(StartOptions { stop_at_eof: options.stop_at_eof, skip_explain: options.skip_explain, reset })
}

/// Milliseconds since the epoch, or RFC 3339 (`2026-01-02T03:04:05Z`,
/// fractional seconds and `±hh:mm` offsets allowed).
///
/// Works on bytes and never slices the text: whatever a client sends
/// (multi-byte characters anywhere, truncated input) is an error, never a
/// panic.
pub fn parse_timestamp(text: &str) -> Result<i64, ControlError> {
    let invalid = || {
        ControlError::InvalidRequest(format!(
            "invalid --reset-to-timestamp {text:?}: use RFC 3339 (2026-01-02T03:04:05Z) or milliseconds since the epoch"
        ))
    };
    let trimmed = text.trim();
    let bytes = trimmed.as_bytes();
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        return trimmed.parse().map_err(|_| invalid());
    }
    rfc3339_millis(bytes).ok_or_else(invalid)
}

/// `bytes` as an RFC 3339 date-time, in milliseconds since the epoch.
fn rfc3339_millis(bytes: &[u8]) -> Option<i64> {
    let (year, month, day) = (digits(bytes.get(0..4)?)?, digits(bytes.get(5..7)?)?, digits(bytes.get(8..10)?)?);
    let (hour, minute, second) =
        (digits(bytes.get(11..13)?)?, digits(bytes.get(14..16)?)?, digits(bytes.get(17..19)?)?);
    let separators_ok = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators_ok
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = bytes.get(19..)?;
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        // Milliseconds: the first three digits, padded with zeros; the rest are dropped.
        millis = fraction
            .get(..count)?
            .iter()
            .take(3)
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))?;
        rest = fraction.get(count..)?;
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 60 + minutes;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    // Four-digit years keep every term far inside i64.
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// The decimal value of `part`, which must be ASCII digits only (at most
/// four here, so the value cannot overflow).
fn digits(part: &[u8]) -> Option<i64> {
    if part.is_empty() || part.len() > 4 {
        return None;
    }
    part.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn state_of(state: JobState) -> pb::JobState {
    match state {
        JobState::Submitted => pb::JobState::Submitted,
        JobState::Running => pb::JobState::Running,
        JobState::Stopped => pb::JobState::Stopped,
        JobState::Success => pb::JobState::Success,
        JobState::Error => pb::JobState::Error,
    }
}

pub fn status_of(view: &JobView) -> pb::JobStatus {
    let source = &view.config.source;
    let target = &view.config.target;
    let mut status = pb::JobStatus {
        name: view.name.clone(),
        state: state_of(view.state) as i32,
        message: view.message.clone(),
        source: format!("kafka {} topic {}", source.brokers.join(","), source.topic),
        target: format!("{}:{}/{} {}", target.host, target.port, target.dbname, crate::sql::table_list(&target.tables)),
        consistency: match source.consistency {
            crate::jobspec::Consistency::ExactlyOnce => "exactly-once",
            crate::jobspec::Consistency::AtLeastOnce => "at-least-once",
            crate::jobspec::Consistency::AtMostOnce => "at-most-once",
            crate::jobspec::Consistency::None => "none",
        }
        .into(),
        lag: -1,
        ..Default::default()
    };
    let Some(runtime) = &view.runtime else { return status };
    let counters = &runtime.counters;
    status.rows_loaded = counters.rows_loaded.load(Ordering::Relaxed);
    status.rows_rejected = counters.rows_rejected.load(Ordering::Relaxed);
    status.batches_committed = counters.batches.load(Ordering::Relaxed);
    status.last_commit_at_ms = counters.last_commit_ms.load(Ordering::Relaxed);
    status.last_batch_latency_ms = counters.last_latency_us.load(Ordering::Relaxed) as f64 / 1000.0;
    status.started_at_ms = runtime.started_at_ms;
    status.rows_per_second = runtime.rows_per_second();
    let running = view.state == JobState::Running;
    if running {
        status.waiting = runtime.waiting().unwrap_or_default();
    }
    if status.message.is_empty() {
        let warning = if running { runtime.warning() } else { None };
        let waiting = Some(status.waiting.clone()).filter(|w| !w.is_empty());
        status.message = runtime.notices.iter().cloned().chain(waiting).chain(warning).collect::<Vec<_>>().join("; ");
    }
    let committed = runtime.committed_offsets();
    let mut lag_total = 0i64;
    let mut lag_known = view.state == JobState::Running;
    let mut listed = Vec::new();
    for (shard, stats) in runtime.shard_stats() {
        status.messages_read += stats.messages.load(Ordering::Relaxed);
        status.bytes_read += stats.bytes.load(Ordering::Relaxed);
        if view.state != JobState::Running {
            continue;
        }
        for progress in stats.snapshot_partitions() {
            let lag = if progress.end >= 0 && progress.position >= 0 {
                (progress.end - progress.position).max(0)
            } else {
                -1
            };
            if lag < 0 {
                lag_known = false;
            } else {
                lag_total += lag;
            }
            listed.push(progress.partition);
            status.partitions.push(pb::PartitionStatus {
                partition: progress.partition,
                committed_offset: committed.get(&progress.partition).copied().unwrap_or(-1),
                end_offset: progress.end,
                lag,
                shard: u32::try_from(shard).unwrap_or(u32::MAX),
            });
        }
    }
    for (&partition, &offset) in &committed {
        if !listed.contains(&partition) {
            status.partitions.push(pb::PartitionStatus {
                partition,
                committed_offset: offset,
                end_offset: -1,
                lag: -1,
                shard: 0,
            });
        }
    }
    status.partitions.sort_by_key(|p| p.partition);
    // Lag is known only from the shards' live view of every partition they read.
    if lag_known && !listed.is_empty() {
        status.lag = lag_total;
    }
    status
}

type MonitorStream = Pin<Box<dyn Stream<Item = Result<pb::JobStatus, Status>> + Send>>;

#[tonic::async_trait]
impl FlowServer for Service {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let request = request.into_inner();
        let options = start_options(request.start_options).map_err(|e| to_status(&e))?;
        let file_name = if request.file_name.is_empty() { "job.yaml" } else { request.file_name.as_str() };
        let name = self.registry.submit(&request.name, file_name, &request.config).await.map_err(|e| to_status(&e))?;
        let mut state = pb::JobState::Submitted;
        if request.start {
            self.registry.start(&name, options).await.map_err(|e| to_status(&e))?;
            state = pb::JobState::Running;
        }
        Ok(Response::new(pb::SubmitResponse { name, state: state as i32 }))
    }

    async fn start(&self, request: Request<pb::StartRequest>) -> Result<Response<pb::StartResponse>, Status> {
        let request = request.into_inner();
        let options = start_options(request.options).map_err(|e| to_status(&e))?;
        if request.all {
            let (started, failed) = self.registry.start_all(options).await;
            if !failed.is_empty() {
                let error = ControlError::StartCheck(format!(
                    "started {}; failed: {}",
                    if started.is_empty() { "none".to_string() } else { started.join(", ") },
                    failed.join("; ")
                ));
                return Err(to_status(&error));
            }
            return Ok(Response::new(pb::StartResponse { started }));
        }
        require_name(&request.name)?;
        self.registry.start(&request.name, options).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::StartResponse { started: vec![request.name] }))
    }

    async fn stop(&self, request: Request<pb::StopRequest>) -> Result<Response<pb::StopResponse>, Status> {
        let request = request.into_inner();
        if request.all {
            let stopped = self.registry.stop_all().await;
            return Ok(Response::new(pb::StopResponse { stopped }));
        }
        require_name(&request.name)?;
        self.registry.stop(&request.name).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::StopResponse { stopped: vec![request.name] }))
    }

    async fn list(&self, _request: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let jobs = self.registry.views().await.iter().map(status_of).collect();
        Ok(Response::new(pb::ListResponse { jobs }))
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::JobStatus>, Status> {
        let request = request.into_inner();
        require_name(&request.name)?;
        let view = self.registry.view(&request.name).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(status_of(&view)))
    }

    type MonitorStream = MonitorStream;

    async fn monitor(&self, request: Request<pb::MonitorRequest>) -> Result<Response<Self::MonitorStream>, Status> {
        let request = request.into_inner();
        require_name(&request.name)?;
        let interval = Duration::from_millis(if request.interval_ms == 0 {
            1000
        } else {
            u64::from(request.interval_ms.max(100))
        });
        let view = self.registry.view(&request.name).await.map_err(|e| to_status(&e))?;
        let registry = self.registry.clone();
        let name = request.name;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut changes = view.state_changes;
            loop {
                let view = match registry.view(&name).await {
                    Ok(view) => view,
                    Err(error) => {
                        let _ = sender.send(Err(to_status(&error))).await;
                        return;
                    }
                };
                let done = view.state != JobState::Running;
                if sender.send(Ok(status_of(&view))).await.is_err() || done {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = changes.changed() => {}
                }
            }
        });
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn remove(&self, request: Request<pb::RemoveRequest>) -> Result<Response<pb::RemoveResponse>, Status> {
        let request = request.into_inner();
        require_name(&request.name)?;
        self.registry.remove(&request.name).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RemoveResponse {}))
    }
}

fn require_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(to_status(&ControlError::InvalidRequest("a job name is required".into())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1700000000000").ok(), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z").ok(), Some(0));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z").ok(), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp("2023-11-14T23:13:20.5+01:00").ok(), Some(1_700_000_000_500));
        assert!(parse_timestamp("2023-02-30T00:00:00Z").is_err());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2023-11-14T22:13:20").is_err());
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.123456Z").ok(), Some(1_700_000_000_123));
        assert_eq!(parse_timestamp("2023-11-14T17:13:20-05:00").ok(), Some(1_700_000_000_000));
        assert!(parse_timestamp("2023-11-14T22:13:20.Z").is_err());
        assert!(parse_timestamp("2023-11-14T22:13:20+24:00").is_err());
        assert!(parse_timestamp("2023-11-14T22:13:20+01:60").is_err());
        assert!(parse_timestamp("99999999999999999999").is_err());
    }

    fn refused(text: &str) -> String {
        match parse_timestamp(text) {
            Err(ControlError::InvalidRequest(message)) => message,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn the_timestamp_of_the_issue_is_refused_with_a_clear_message() {
        assert_eq!(
            refused("2026-01-02T03:04:05+\u{20ac}ab"),
            "invalid --reset-to-timestamp \"2026-01-02T03:04:05+\u{20ac}ab\": use RFC 3339 (2026-01-02T03:04:05Z) \
             or milliseconds since the epoch"
        );
    }

    /// A multi-byte character at every position of valid timestamps (and in
    /// place of each byte, and every prefix of the result) is an error, never a panic.
    #[test]
    fn multi_byte_characters_anywhere_are_errors() {
        for valid in ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.678+01:30", "1767323045000"] {
            assert!(parse_timestamp(valid).is_ok(), "{valid}");
            for wide in ["\u{e9}", "\u{20ac}", "\u{1f600}"] {
                for at in 0..=valid.len() {
                    let inserted = format!("{}{wide}{}", &valid[..at], &valid[at..]);
                    refused(&inserted);
                    if at < valid.len() {
                        let replaced = format!("{}{wide}{}", &valid[..at], &valid[at + 1..]);
                        refused(&replaced);
                    }
                    for end in 0..=inserted.len() {
                        if let Some(prefix) = inserted.get(..end) {
                            let _ = parse_timestamp(prefix);
                        }
                    }
                }
            }
        }
    }
}

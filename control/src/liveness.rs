//! What a running job is waiting for, the log lines about it, and its rate.
//!
//! # Contract
//! - [`Liveness::waiting`] names what keeps a running job from loading, from
//!   the shards' published phases and outages and the committers' waits for
//!   start offsets, most pressing first: `broker unreachable since <RFC 3339
//!   time>: <reason>`, a wait for start offsets, `waiting: joining consumer
//!   group <group>`, `waiting: no partitions assigned to this server …`. It is
//!   `None` while any shard reads.
//! - Kafka warnings of a job (its shards' clients and its probe) are logged at
//!   most once per [`WARNING_WINDOW`] per job; a line stands for the ones
//!   held back before it and says how many. The start and the end of an
//!   outage are logged once each.
//! - `rows_per_second` is the rate over the last [`RATE_WINDOW`] while the
//!   job runs; once the run ends it is the run's average from its first to
//!   its last commit (the last recent rate if it committed once).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowserver_engine::stats::{KafkaHealth, Outage, ShardJobStats, ShardPhase, WarningTally};

use crate::logging::format_time;

pub const WARNING_WINDOW: Duration = Duration::from_secs(30);
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

pub struct Liveness {
    /// The job's consumer group, for messages.
    pub group: String,
    /// Where the job's probe (the control plane's Kafka client) reports.
    pub probe_health: Arc<KafkaHealth>,
    /// By shard: why its committer is still waiting for start offsets.
    start_waits: Mutex<BTreeMap<usize, String>>,
    warnings: Mutex<WarningLimiter>,
    /// The start of the outage last logged.
    logged_outage: Mutex<Option<i64>>,
    rate: Mutex<RateWindow>,
    /// Time and rows loaded after the run's first commit.
    first_commit: Mutex<Option<(i64, u64)>>,
}

impl Liveness {
    pub fn new(group: String, probe_health: Arc<KafkaHealth>) -> Liveness {
        Liveness {
            group,
            probe_health,
            start_waits: Mutex::new(BTreeMap::new()),
            warnings: Mutex::new(WarningLimiter::default()),
            logged_outage: Mutex::new(None),
            rate: Mutex::new(RateWindow::default()),
            first_commit: Mutex::new(None),
        }
    }

    /// Records (or, with `None`, clears) why shard `shard` waits for start offsets.
    pub fn set_start_wait(&self, shard: usize, wait: Option<String>) {
        if let Ok(mut waits) = self.start_waits.lock() {
            match wait {
                Some(text) => waits.insert(shard, text),
                None => waits.remove(&shard),
            };
        }
    }

    /// What keeps the job from loading, if anything (see the module docs).
    pub fn waiting(&self, shards: &[(usize, Arc<ShardJobStats>)]) -> Option<String> {
        if let Some(outage) = earliest_outage(shards) {
            return Some(format!("broker unreachable since {}: {}", format_time(outage.since_ms), outage.reason));
        }
        if let Some(wait) = self.start_waits.lock().ok().and_then(|w| w.values().next().cloned()) {
            return Some(wait);
        }
        let phases: Vec<ShardPhase> = shards.iter().map(|(_, s)| s.phase()).collect();
        if phases.is_empty() || phases.iter().any(|p| matches!(p, ShardPhase::Reading | ShardPhase::ReadingAhead)) {
            return None;
        }
        if phases.contains(&ShardPhase::Joining) {
            return Some(format!("waiting: joining consumer group {}", self.group));
        }
        if phases.contains(&ShardPhase::Starting) {
            return Some("waiting: reading the start offsets of the assigned partitions".into());
        }
        Some(format!("waiting: no partitions assigned to this server (consumer group {})", self.group))
    }

    /// Once a second: logs the job's Kafka warnings (rate-limited) and the
    /// start and end of an outage; true while a shard reports one.
    pub fn tick(&self, job: &str, shards: &[(usize, Arc<ShardJobStats>)]) -> bool {
        let mut tally = self.probe_health.take_warnings();
        for (_, stats) in shards {
            tally.merge(stats.kafka.take_warnings());
        }
        let line = self.warnings.lock().ok().and_then(|mut limiter| limiter.offer(tally, Instant::now()));
        if let Some(line) = line {
            tracing::warn!(job, "{line}");
        }
        let outage = earliest_outage(shards);
        let unreachable = outage.is_some();
        let Ok(mut logged) = self.logged_outage.lock() else { return unreachable };
        match (&*logged, outage) {
            (None, Some(outage)) => {
                tracing::warn!(
                    job,
                    "kafka brokers unreachable since {}: {}; waiting for them",
                    format_time(outage.since_ms),
                    outage.reason
                );
                *logged = Some(outage.since_ms);
            }
            (Some(since_ms), None) => {
                let seconds = (crate::job::now_ms() - since_ms) as f64 / 1000.0;
                tracing::info!(job, "kafka brokers answer again after {seconds:.1} s unreachable");
                *logged = None;
            }
            _ => {}
        }
        unreachable
    }

    pub fn note_commit(&self, rows_loaded: u64) {
        if let Ok(mut first) = self.first_commit.lock()
            && first.is_none()
        {
            *first = Some((crate::job::now_ms(), rows_loaded));
        }
    }

    pub fn sample_rate(&self, rows_loaded: u64) {
        if let Ok(mut rate) = self.rate.lock() {
            rate.sample(Instant::now(), rows_loaded);
        }
    }

    /// The run ended: from now on the rate is its average.
    pub fn finish_rate(&self, rows_loaded: u64, last_commit_ms: i64) {
        let first = self.first_commit.lock().ok().and_then(|f| *f);
        if let (Ok(mut rate), Some((first_ms, first_rows))) = (self.rate.lock(), first) {
            let seconds = (last_commit_ms - first_ms) as f64 / 1000.0;
            if seconds > 0.0 && rows_loaded > first_rows {
                rate.per_second = (rows_loaded - first_rows) as f64 / seconds;
            }
        }
    }

    pub fn rows_per_second(&self) -> f64 {
        self.rate.lock().map_or(0.0, |r| r.per_second)
    }
}

fn earliest_outage(shards: &[(usize, Arc<ShardJobStats>)]) -> Option<Outage> {
    shards.iter().filter_map(|(_, stats)| stats.outage()).min_by_key(|outage| outage.since_ms)
}

/// At most one line per [`WARNING_WINDOW`].
#[derive(Debug, Default)]
pub struct WarningLimiter {
    last_logged: Option<Instant>,
    held_back: WarningTally,
}

impl WarningLimiter {
    /// Adds `tally`; returns the line to log now, if one is due.
    pub fn offer(&mut self, tally: WarningTally, now: Instant) -> Option<String> {
        self.held_back.merge(tally);
        if self.held_back.count == 0 || self.last_logged.is_some_and(|at| now.duration_since(at) < WARNING_WINDOW) {
            return None;
        }
        self.last_logged = Some(now);
        let WarningTally { count, latest } = std::mem::take(&mut self.held_back);
        Some(match count {
            0 | 1 => latest,
            _ => format!("{latest} (and {} more like it in the last {} s)", count - 1, WARNING_WINDOW.as_secs()),
        })
    }
}

/// Rows loaded over the last [`RATE_WINDOW`], from samples a second apart.
#[derive(Debug, Default)]
struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
    per_second: f64,
}

impl RateWindow {
    fn sample(&mut self, now: Instant, rows: u64) {
        self.samples.push_back((now, rows));
        // Keep, as the base, the newest sample at least a window old.
        while self.samples.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW) {
            self.samples.pop_front();
        }
        if let Some(&(at, base)) = self.samples.front() {
            let seconds = now.duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                self.per_second = rows.saturating_sub(base) as f64 / seconds;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(count: u64, latest: &str) -> WarningTally {
        WarningTally { count, latest: latest.into() }
    }

    #[test]
    fn warnings_are_logged_once_per_window_with_a_count_of_the_others() {
        let start = Instant::now();
        let mut limiter = WarningLimiter::default();
        assert_eq!(limiter.offer(tally(1, "a"), start), Some("a".into()));
        assert_eq!(limiter.offer(tally(10, "b"), start + Duration::from_secs(1)), None);
        assert_eq!(limiter.offer(tally(47, "c"), start + Duration::from_secs(29)), None);
        assert_eq!(
            limiter.offer(WarningTally::default(), start + Duration::from_secs(30)),
            Some("c (and 56 more like it in the last 30 s)".into())
        );
        assert_eq!(limiter.offer(WarningTally::default(), start + Duration::from_secs(90)), None);
        assert_eq!(limiter.offer(tally(1, "d"), start + Duration::from_secs(91)), Some("d".into()));
    }

    #[test]
    fn the_rate_covers_the_last_ten_seconds() {
        let start = Instant::now();
        let mut rate = RateWindow::default();
        rate.sample(start, 0);
        rate.sample(start + Duration::from_secs(2), 2000);
        assert_eq!(rate.per_second, 1000.0);
        for second in 3..=20 {
            rate.sample(start + Duration::from_secs(second), 2000 + 100 * (second - 2));
        }
        assert_eq!(rate.per_second, 100.0);
        // A load that just ended still shows while it is in the window.
        rate.sample(start + Duration::from_secs(25), 3800);
        assert!(rate.per_second > 0.0);
    }

    #[test]
    fn waiting_says_what_the_shards_wait_for() {
        let liveness = Liveness::new("flowserver.j".into(), Arc::default());
        let shards: Vec<(usize, Arc<ShardJobStats>)> = (0..2).map(|i| (i, Arc::default())).collect();
        assert_eq!(liveness.waiting(&shards).as_deref(), Some("waiting: joining consumer group flowserver.j"));
        shards[0].1.set_phase(ShardPhase::Idle);
        shards[1].1.set_phase(ShardPhase::Idle);
        assert_eq!(
            liveness.waiting(&shards).as_deref(),
            Some("waiting: no partitions assigned to this server (consumer group flowserver.j)")
        );
        shards[1].1.set_phase(ShardPhase::Reading);
        assert_eq!(liveness.waiting(&shards), None);
        shards[0].1.set_outage(Some(Outage { since_ms: 1_700_000_000_123, reason: "refused".into() }));
        assert_eq!(
            liveness.waiting(&shards).as_deref(),
            Some("broker unreachable since 2023-11-14T22:13:20.123Z: refused")
        );
    }
}

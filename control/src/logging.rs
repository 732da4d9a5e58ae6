//! Logging as FlowServer's `Logging` block describes it: `FrontendLevel` for
//! standard output, `BackendLevel` for `<log-dir>/flowserver.log`, and with
//! `SplitLogByJob` one more file per job, `<log-dir>/<job>.log`, holding
//! every event that names the job.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter};

use crate::config::{LogLevel, LoggingConfig};

pub fn init(config: &LoggingConfig, log_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(log_dir).map_err(|e| format!("cannot create log directory {}: {e}", log_dir.display()))?;
    let log_path = log_dir.join("flowserver.log");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    // RUST_LOG, when set, overrides the configured levels (handy for debugging).
    let frontend = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter(config.frontend_level));
    let backend = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter(config.backend_level));
    let stdout = tracing_subscriber::fmt::layer().with_target(false).with_filter(frontend);
    let backend_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(Mutex::new(file))
        .with_filter(backend);
    let per_job = config.split_log_by_job.then(|| {
        JobFiles { dir: log_dir.to_path_buf(), files: Mutex::new(HashMap::new()) }
            .with_filter(LevelFilter::from_level(level(config.backend_level)))
    });
    tracing_subscriber::registry()
        .with(stdout)
        .with(backend_file)
        .with(per_job)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}

fn filter(level: LogLevel) -> EnvFilter {
    // librdkafka and the HTTP stack are noisy below warn.
    EnvFilter::new(format!("warn,flowserver={0},flowserver_control={0},flowserver_engine={0}", level.as_filter()))
}

fn level(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error | LogLevel::Fatal => Level::ERROR,
    }
}

/// Appends events carrying a `job` field to that job's own file.
struct JobFiles {
    dir: PathBuf,
    files: Mutex<HashMap<String, File>>,
}

#[derive(Default)]
struct Fields {
    job: Option<String>,
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "job" => self.job = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            name => self.rest.push_str(&format!(" {name}={value:?}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job" => self.job = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "message" => self.message = format!("{value:?}"),
            name => self.rest.push_str(&format!(" {name}={value:?}")),
        }
    }
}

impl<S: Subscriber> Layer<S> for JobFiles {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(job) = fields.job else { return };
        if job.is_empty() || job.contains('/') || job.starts_with('.') {
            return;
        }
        let Ok(mut files) = self.files.lock() else { return };
        if !files.contains_key(&job) {
            match OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{job}.log"))) {
                Ok(file) => {
                    files.insert(job.clone(), file);
                }
                Err(_) => return,
            }
        }
        if let Some(file) = files.get_mut(&job) {
            let now = crate::job::now_ms();
            let _ = writeln!(
                file,
                "{} {:>5} {}{}",
                format_time(now),
                event.metadata().level(),
                fields.message,
                fields.rest
            );
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch.
pub(crate) fn format_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

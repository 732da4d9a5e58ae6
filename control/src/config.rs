//! `flow_server.json`: FlowServer's server configuration, read as EDB's
//! product writes it, plus our optional additions.
//!
//! Unknown keys are reported as warnings, not errors: the file ships apart
//! from the binary, and refusing it would turn an upgrade or a rollback into an
//! outage. Every documented key is accepted; values are validated into
//! [`ServerConfig`], so nothing downstream reads the raw file.
//!
//! Where FlowServer's documentation contradicts its own example, the
//! documented default wins (ReuseTables false, MetricsPath `/metrics`), except
//! the logging levels: stdout gets `info`, the log file `debug` is noisy, so
//! both default to `info`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    host: Option<String>,
    port: Option<u16>,
    gpfdist: Option<RawGpfdist>,
    prometheus: Option<RawPrometheus>,
    debug_port: Option<u16>,
    logging: Option<RawLogging>,
    shards: Option<usize>,
    state_dir: Option<PathBuf>,
    pin_shards: Option<bool>,
    batch_max_bytes: Option<usize>,
    fetch_queue_max_bytes: Option<usize>,
    kafka_fetch: Option<String>,
    max_request_bytes: Option<usize>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawGpfdist {
    host: Option<String>,
    port: Option<u16>,
    reuse_tables: Option<bool>,
    advertise_host: Option<String>,
    compression: Option<bool>,
    block_size: Option<usize>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPrometheus {
    host: Option<String>,
    port: Option<u16>,
    metrics_path: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawLogging {
    split_log_by_job: Option<bool>,
    frontend_level: Option<String>,
    backend_level: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub grpc: SocketAddr,
    pub gpfdist: GpfdistConfig,
    pub prometheus: Option<PrometheusConfig>,
    pub debug_port: Option<u16>,
    pub logging: LoggingConfig,
    /// Number of engine shards (default: one per CPU).
    pub shards: usize,
    pub pin_shards: bool,
    /// Where submitted jobs are kept across restarts.
    pub state_dir: PathBuf,
    /// Cap of one batch's buffers on one shard (a second, sealed batch may be
    /// in flight beside it).
    pub batch_max_bytes: usize,
    /// Cap of the messages fetched ahead per consumer (one consumer per job
    /// and shard): librdkafka's queues, split over the partitions it reads,
    /// or the native fetcher's responses in flight. Peak memory of a job is
    /// about shards × (2 × BatchMaxBytes + FetchQueueMaxBytes) plus the
    /// process's baseline when the database stalls.
    pub fetch_queue_max_bytes: usize,
    /// How shards read Kafka partitions (KafkaFetch).
    pub kafka_fetch: KafkaFetch,
    /// The largest gRPC request message accepted (MaxRequestBytes).
    pub max_request_bytes: usize,
    /// Keys the file has that flowserver does not know, for a warning.
    pub unknown_keys: Vec<String>,
}

/// How shards read Kafka partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFetch {
    /// The shard fetches from the partition leaders itself (plaintext
    /// brokers, exactly-once jobs); librdkafka keeps the group and commits.
    /// Other jobs use librdkafka. The default.
    Native,
    /// librdkafka fetches for every job.
    Librdkafka,
}

#[derive(Debug, Clone)]
pub struct GpfdistConfig {
    pub host: String,
    pub port: u16,
    pub reuse_tables: bool,
    /// The host written into external tables' LOCATION: what segments connect
    /// to. Defaults to this machine's host name.
    pub advertise_host: String,
    /// Answer a segment's `X-GP-ZSTD: 1` offer with zstd-compressed blocks.
    pub compression: bool,
    /// Target size of a served block (whole rows).
    pub block_size: usize,
}

#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub listen: SocketAddr,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub split_log_by_job: bool,
    pub frontend_level: LogLevel,
    pub backend_level: LogLevel,
}

impl ServerConfig {
    /// Reads `path`, or uses the defaults when there is no file.
    pub fn load(path: Option<&Path>) -> Result<ServerConfig, ConfigError> {
        let Some(path) = path else {
            return ServerConfig::from_raw(RawConfig::default(), "defaults");
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        ServerConfig::parse(&text, &shown)
    }

    pub fn parse(text: &str, shown: &str) -> Result<ServerConfig, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|error| ConfigError::Invalid { path: shown.to_owned(), message: error.to_string() })?;
        ServerConfig::from_raw(raw, shown)
    }

    fn from_raw(raw: RawConfig, shown: &str) -> Result<ServerConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: shown.to_owned(), message };
        let mut unknown_keys: Vec<String> = raw.unknown.keys().cloned().collect();

        let gpfdist_raw = raw.gpfdist.unwrap_or_default();
        unknown_keys.extend(gpfdist_raw.unknown.keys().map(|k| format!("Gpfdist.{k}")));
        let gpfdist = GpfdistConfig {
            host: gpfdist_raw.host.unwrap_or_default(),
            port: gpfdist_raw.port.unwrap_or(6070),
            reuse_tables: gpfdist_raw.reuse_tables.unwrap_or(false),
            advertise_host: gpfdist_raw.advertise_host.filter(|h| !h.is_empty()).unwrap_or_else(host_name),
            compression: gpfdist_raw.compression.unwrap_or(false),
            block_size: gpfdist_raw.block_size.unwrap_or(256 << 10),
        };
        if !(1024..=(64 << 20)).contains(&gpfdist.block_size) {
            return Err(invalid(format!(
                "Gpfdist.BlockSize must be between 1024 and 67108864; got {}",
                gpfdist.block_size
            )));
        }

        let prometheus = match raw.prometheus {
            None => None,
            Some(p) => {
                unknown_keys.extend(p.unknown.keys().map(|k| format!("Prometheus.{k}")));
                let path = p.metrics_path.unwrap_or_else(|| "/metrics".into());
                if !path.starts_with('/') {
                    return Err(invalid(format!("Prometheus.MetricsPath must start with /; got {path:?}")));
                }
                let listen = listen_address(p.host.as_deref().unwrap_or(""), p.port.unwrap_or(9080))
                    .map_err(|e| invalid(format!("Prometheus.Host: {e}")))?;
                Some(PrometheusConfig { listen, path })
            }
        };

        let logging_raw = raw.logging.unwrap_or_default();
        unknown_keys.extend(logging_raw.unknown.keys().map(|k| format!("Logging.{k}")));
        let level = |key: &str, value: Option<String>| -> Result<LogLevel, ConfigError> {
            match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => Ok(LogLevel::Info),
                Some("debug") => Ok(LogLevel::Debug),
                Some("info") => Ok(LogLevel::Info),
                Some("warn") | Some("warning") => Ok(LogLevel::Warn),
                Some("error") => Ok(LogLevel::Error),
                Some("fatal") => Ok(LogLevel::Fatal),
                Some(other) => {
                    Err(invalid(format!("Logging.{key} must be one of debug, info, warn, error, fatal; got {other:?}")))
                }
            }
        };
        let logging = LoggingConfig {
            split_log_by_job: logging_raw.split_log_by_job.unwrap_or(true),
            frontend_level: level("FrontendLevel", logging_raw.frontend_level)?,
            backend_level: level("BackendLevel", logging_raw.backend_level)?,
        };

        let grpc = listen_address(raw.host.as_deref().unwrap_or(""), raw.port.unwrap_or(6060))
            .map_err(|e| invalid(format!("Host: {e}")))?;
        let shards = match raw.shards {
            Some(0) => return Err(invalid("Shards must be at least 1".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // Shard i listens on Gpfdist.Port + i: the last one must still be a port.
        let last_shard = u16::try_from(shards - 1).ok();
        if gpfdist.port != 0 && last_shard.and_then(|last| gpfdist.port.checked_add(last)).is_none() {
            return Err(invalid(format!(
                "Gpfdist.Port {} with {shards} shards needs ports up to {}, past 65535: lower Gpfdist.Port or Shards \
                 (or use Port 0 for any free ports)",
                gpfdist.port,
                u64::from(gpfdist.port).saturating_add(u64::try_from(shards - 1).unwrap_or(u64::MAX))
            )));
        }
        let state_dir = raw.state_dir.unwrap_or_else(default_state_dir);
        let batch_max_bytes = raw.batch_max_bytes.unwrap_or(64 << 20);
        if !((1 << 20)..=(1 << 31)).contains(&batch_max_bytes) {
            return Err(invalid(format!("BatchMaxBytes must be between 1 MiB and 2 GiB; got {batch_max_bytes}")));
        }
        let fetch_queue_max_bytes = raw.fetch_queue_max_bytes.unwrap_or(64 << 20);
        if !((1 << 20)..=(1 << 31)).contains(&fetch_queue_max_bytes) {
            return Err(invalid(format!(
                "FetchQueueMaxBytes must be between 1 MiB and 2 GiB; got {fetch_queue_max_bytes}"
            )));
        }
        let kafka_fetch = match raw.kafka_fetch.as_deref() {
            None | Some("native") => KafkaFetch::Native,
            Some("librdkafka") => KafkaFetch::Librdkafka,
            Some(other) => {
                return Err(invalid(format!("KafkaFetch must be \"native\" or \"librdkafka\"; got {other:?}")));
            }
        };
        let max_request_bytes = raw.max_request_bytes.unwrap_or(flowserver_proto::DEFAULT_MAX_REQUEST_BYTES);
        if !((64 << 10)..=(1 << 30)).contains(&max_request_bytes) {
            return Err(invalid(format!("MaxRequestBytes must be between 64 KiB and 1 GiB; got {max_request_bytes}")));
        }
        unknown_keys.sort();
        Ok(ServerConfig {
            grpc,
            gpfdist,
            prometheus,
            debug_port: raw.debug_port,
            logging,
            shards,
            pin_shards: raw.pin_shards.unwrap_or(true),
            state_dir,
            batch_max_bytes,
            fetch_queue_max_bytes,
            kafka_fetch,
            max_request_bytes,
            unknown_keys,
        })
    }
}

/// This machine's host name, as segments would resolve it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn default_state_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".flowserver")
}

/// `""` means every interface, as in FlowServer.
fn listen_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_example_unchanged() {
        let text = r#"{
            "Host": "",
            "Port": 6060,
            "Gpfdist": { "Host": "", "Port": 6070, "ReuseTables": true },
            "Prometheus": { "Host": "", "Port": 9080, "MetricsPath": "/flow_metrics" },
            "DebugPort": 6080,
            "Logging": { "SplitLogByJob": false, "FrontendLevel": "debug", "BackendLevel": "info" }
        }"#;
        let config = ServerConfig::parse(text, "flow_server.json").expect("valid");
        assert_eq!(config.grpc.port(), 6060);
        assert_eq!(config.gpfdist.port, 6070);
        assert!(config.gpfdist.reuse_tables);
        let prometheus = config.prometheus.expect("prometheus block");
        assert_eq!(prometheus.listen.port(), 9080);
        assert_eq!(prometheus.path, "/flow_metrics");
        assert_eq!(config.debug_port, Some(6080));
        assert!(!config.logging.split_log_by_job);
        assert_eq!(config.logging.frontend_level, LogLevel::Debug);
        assert!(config.unknown_keys.is_empty());
    }

    #[test]
    fn defaults_follow_the_documentation() {
        let config = ServerConfig::parse("{}", "f").expect("valid");
        assert_eq!(config.grpc.port(), 6060);
        assert_eq!(config.gpfdist.port, 6070);
        assert!(!config.gpfdist.reuse_tables);
        assert!(config.prometheus.is_none());
        assert!(config.logging.split_log_by_job);
        assert!(config.shards >= 1);
        assert_eq!(config.kafka_fetch, KafkaFetch::Native);
        let config = ServerConfig::parse(r#"{"KafkaFetch": "librdkafka"}"#, "f").expect("valid");
        assert_eq!(config.kafka_fetch, KafkaFetch::Librdkafka);
    }

    #[test]
    fn unknown_keys_are_listed_not_fatal() {
        let config = ServerConfig::parse(r#"{"Colour": 1, "Gpfdist": {"Speed": 2}}"#, "f").expect("valid");
        assert_eq!(config.unknown_keys, vec!["Colour".to_string(), "Gpfdist.Speed".to_string()]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = ServerConfig::parse(r#"{"Logging": {"FrontendLevel": "loud"}}"#, "f.json").unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.json: Logging.FrontendLevel must be one of debug, info, warn, error, fatal; got \"loud\""
        );
        let error = ServerConfig::parse(r#"{"KafkaFetch": "fast"}"#, "f.json").unwrap_err();
        assert_eq!(error.to_string(), "f.json: KafkaFetch must be \"native\" or \"librdkafka\"; got \"fast\"");
        let error = ServerConfig::parse(r#"{"Shards": 8, "Gpfdist": {"Port": 65530}}"#, "f.json").unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.json: Gpfdist.Port 65530 with 8 shards needs ports up to 65537, past 65535: lower Gpfdist.Port or \
             Shards (or use Port 0 for any free ports)"
        );
        assert!(ServerConfig::parse(r#"{"Shards": 6, "Gpfdist": {"Port": 65530}}"#, "f.json").is_ok());
        assert!(ServerConfig::parse(r#"{"Shards": 100000, "Gpfdist": {"Port": 0}}"#, "f.json").is_ok());
        let error = ServerConfig::parse(r#"{"MaxRequestBytes": 10}"#, "f.json").unwrap_err();
        assert_eq!(error.to_string(), "f.json: MaxRequestBytes must be between 64 KiB and 1 GiB; got 10");
        let config = ServerConfig::parse(r#"{"MaxRequestBytes": 1048576}"#, "f.json").expect("valid");
        assert_eq!(config.max_request_bytes, 1 << 20);
        assert_eq!(ServerConfig::parse("{}", "f").unwrap().max_request_bytes, 16 << 20);
        let error = ServerConfig::parse(r#"{"Port": "six"}"#, "f.json").unwrap_err();
        assert!(error.to_string().starts_with("f.json: invalid type: string \"six\""), "{error}");
    }
}

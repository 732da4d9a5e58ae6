//! The Prometheus endpoint (`Prometheus` block of flow_server.json):
//! FlowServer's job counts and process metrics under its metric names, plus
//! per-job series it lacks (rows, errors, batches, lag, latency, state), in
//! the text format.
//!
//! The process metrics are those of FlowServer (the Prometheus Go client's
//! process collector, namespace `whpg_flow_server`), with its meanings, read
//! from `/proc/self` at each scrape: CPU seconds (user + system, all
//! threads), open and maximum file descriptors (the soft limit), resident and
//! virtual memory, the address-space limit, the start time, and the bytes
//! received and sent on every interface of the process's network namespace
//! (`/proc/self/net/dev`, loopback included). A limit that is `unlimited` is
//! 2^64 - 1, as there. A value that cannot be read (no `/proc`) leaves its
//! series out rather than reporting a made-up number.

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::PrometheusConfig;
use crate::registry::{JobState, Registry};
use crate::service::status_of;

pub async fn serve(config: PrometheusConfig, registry: Arc<Registry>) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    tracing::info!(address = %config.listen, path = %config.path, "serving metrics");
    loop {
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                // Out of file descriptors, most likely: the endpoint stays up.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let path = config.path.clone();
        tokio::spawn(async move {
            let mut request = [0u8; MAX_HEAD];
            let Some(read) = read_head(&mut socket, &mut request).await else { return };
            let head = request.get(..read).unwrap_or_default();
            let response = match route(head, &path) {
                Route::Metrics => {
                    let body = render(&registry).await;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                refused => {
                    let (status, body) = match refused {
                        Route::NotFound => ("404 Not Found", format!("not found; metrics are at {path}\n")),
                        Route::MethodNotAllowed => ("405 Method Not Allowed", format!("only GET {path} is served\n")),
                        _ => ("400 Bad Request", "bad request: expected GET <path> HTTP/1.x\n".to_owned()),
                    };
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                }
            };
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Largest request head read; the request line is all that is judged.
const MAX_HEAD: usize = 2048;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET <metrics path>[?query] HTTP/1.x`.
    Metrics,
    NotFound,
    MethodNotAllowed,
    /// Not an HTTP/1 request line.
    BadRequest,
}

/// Judges a request head (or as much of it as arrived) by its request line:
/// `METHOD SP target SP HTTP/1.x`. Works on bytes, so any input is an answer.
pub fn route(head: &[u8], metrics_path: &str) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Route::BadRequest;
    }
    if method != b"GET" {
        return Route::MethodNotAllowed;
    }
    let target_path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if target_path == metrics_path.as_bytes() { Route::Metrics } else { Route::NotFound }
}

/// Reads a request head into `buffer` until its blank line, a full buffer or
/// the end of the stream; `None` on an error or after 10 s. A head can arrive
/// in several segments: answering the first one would judge a partial path,
/// and closing with the rest unread resets the connection.
async fn read_head(socket: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> Option<usize> {
    let reading = async {
        let mut filled = 0;
        loop {
            let (seen, free) = buffer.split_at_mut(filled);
            if free.is_empty() || seen.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            match socket.read(free).await {
                Ok(0) => break,
                // `read` returns at most `free.len()` bytes.
                Ok(n) => filled += n,
                Err(_) => return None,
            }
        }
        Some(filled)
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reading).await.ok().flatten()
}

pub async fn render(registry: &Registry) -> String {
    let process = tokio::task::spawn_blocking(ProcessStats::read).await.unwrap_or_default();
    let views = registry.views().await;
    let statuses: Vec<_> = views.iter().map(|v| (v.state, status_of(v))).collect();
    let mut out = String::new();
    let count = |state: JobState| statuses.iter().filter(|(s, _)| *s == state).count();
    let _ = writeln!(out, "# HELP whpg_flow_server_job_failed Number of jobs that have failed.");
    let _ = writeln!(out, "# TYPE whpg_flow_server_job_failed gauge");
    let _ = writeln!(out, "whpg_flow_server_job_failed {}", count(JobState::Error));
    let _ = writeln!(out, "# HELP whpg_flow_server_job_running Number of jobs currently running.");
    let _ = writeln!(out, "# TYPE whpg_flow_server_job_running gauge");
    let _ = writeln!(out, "whpg_flow_server_job_running {}", count(JobState::Running));
    let _ = writeln!(out, "# HELP whpg_flow_server_job_total Total number of jobs known to the server.");
    let _ = writeln!(out, "# TYPE whpg_flow_server_job_total gauge");
    let _ = writeln!(out, "whpg_flow_server_job_total {}", statuses.len());
    process.render(&mut out);
    type Value = fn(&flowserver_proto::v1::JobStatus) -> f64;
    let series: [(&str, &str, &str, Value); 7] = [
        ("flowserver_job_rows_loaded_total", "counter", "Rows written to the target tables.", |s| s.rows_loaded as f64),
        ("flowserver_job_rows_rejected_total", "counter", "Messages kept in flow_errors.", |s| s.rows_rejected as f64),
        ("flowserver_job_messages_read_total", "counter", "Messages read from the source.", |s| s.messages_read as f64),
        ("flowserver_job_bytes_read_total", "counter", "Payload bytes read from the source.", |s| s.bytes_read as f64),
        ("flowserver_job_batches_total", "counter", "Batches committed.", |s| s.batches_committed as f64),
        ("flowserver_job_lag_messages", "gauge", "Messages not yet read (-1 if unknown).", |s| s.lag as f64),
        ("flowserver_job_last_batch_seconds", "gauge", "Duration of the last batch's transaction.", |s| {
            s.last_batch_latency_ms / 1000.0
        }),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (_, status) in &statuses {
            let _ = writeln!(out, "{name}{{job=\"{}\"}} {}", escape(&status.name), value(status));
        }
    }
    let _ = writeln!(out, "# HELP flowserver_job_state 1 for the job's current state.");
    let _ = writeln!(out, "# TYPE flowserver_job_state gauge");
    for (state, status) in &statuses {
        let _ = writeln!(out, "flowserver_job_state{{job=\"{}\",state=\"{}\"}} 1", escape(&status.name), state.word());
    }
    out
}

/// Linux's `USER_HZ`: the unit of the times in `/proc/<pid>/stat`, fixed by
/// the kernel's ABI whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// One reading of the process's counters; `None` where `/proc` did not answer.
#[derive(Debug, Default, Clone, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    resident_memory_bytes: Option<u64>,
    virtual_memory_bytes: Option<u64>,
    virtual_memory_max_bytes: Option<u64>,
    start_time_seconds: Option<f64>,
    network_receive_bytes: Option<u64>,
    network_transmit_bytes: Option<u64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let text = |path: &str| match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(error) => {
                tracing::debug!(path, %error, "process metrics: cannot read");
                None
            }
        };
        let stat = text("/proc/self/stat").and_then(|stat| parse_stat(&stat));
        let boot_time = text("/proc/stat").and_then(|stat| parse_boot_time(&stat));
        let limits = text("/proc/self/limits");
        let network = text("/proc/self/net/dev").and_then(|dev| parse_net_dev(&dev));
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count() as u64);
        ProcessStats {
            cpu_seconds: stat.map(|stat| stat.cpu_ticks as f64 / USER_HZ),
            open_fds,
            max_fds: limits.as_deref().and_then(|limits| parse_soft_limit(limits, "Max open files")),
            resident_memory_bytes: text("/proc/self/status").and_then(|status| parse_resident_bytes(&status)),
            virtual_memory_bytes: stat.map(|stat| stat.virtual_bytes),
            virtual_memory_max_bytes: limits
                .as_deref()
                .and_then(|limits| parse_soft_limit(limits, "Max address space")),
            start_time_seconds: stat.zip(boot_time).map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / USER_HZ),
            network_receive_bytes: network.map(|(received, _)| received),
            network_transmit_bytes: network.map(|(_, sent)| sent),
        }
    }

    fn render(&self, out: &mut String) {
        let float = |value: Option<f64>| value.map(|v| v.to_string());
        let integer = |value: Option<u64>| value.map(|v| v.to_string());
        let series = [
            (
                "cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                float(self.cpu_seconds),
            ),
            ("max_fds", "gauge", "Maximum number of open file descriptors.", integer(self.max_fds)),
            (
                "network_receive_bytes_total",
                "counter",
                "Number of bytes received by the process over the network.",
                integer(self.network_receive_bytes),
            ),
            (
                "network_transmit_bytes_total",
                "counter",
                "Number of bytes sent by the process over the network.",
                integer(self.network_transmit_bytes),
            ),
            ("open_fds", "gauge", "Number of open file descriptors.", integer(self.open_fds)),
            ("resident_memory_bytes", "gauge", "Resident memory size in bytes.", integer(self.resident_memory_bytes)),
            (
                "start_time_seconds",
                "gauge",
                "Start time of the process since Unix epoch in seconds.",
                float(self.start_time_seconds),
            ),
            ("virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", integer(self.virtual_memory_bytes)),
            (
                "virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                integer(self.virtual_memory_max_bytes),
            ),
        ];
        for (name, kind, help, value) in series {
            let Some(value) = value else { continue };
            let _ = writeln!(out, "# HELP whpg_flow_server_process_{name} {help}");
            let _ = writeln!(out, "# TYPE whpg_flow_server_process_{name} {kind}");
            let _ = writeln!(out, "whpg_flow_server_process_{name} {value}");
        }
    }
}

/// The fields of `/proc/<pid>/stat` the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// utime + stime.
    cpu_ticks: u64,
    /// Ticks after boot.
    start_ticks: u64,
    virtual_bytes: u64,
}

/// `pid (comm) state ppid …`: `comm` may hold spaces and parentheses, so the
/// fields are counted after its last `)`; there field 3 (state) is the first.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number.checked_sub(3)?)?.parse().ok() };
    Some(Stat { cpu_ticks: field(14)?.checked_add(field(15)?)?, start_ticks: field(22)?, virtual_bytes: field(23)? })
}

/// `btime <seconds since the epoch>` of `/proc/stat`.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()
}

/// `VmRSS:  1234 kB` of `/proc/<pid>/status`, in bytes.
fn parse_resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of the `/proc/<pid>/limits` line `name`; `unlimited` is 2^64 - 1.
fn parse_soft_limit(limits: &str, name: &str) -> Option<u64> {
    let soft = limits.lines().find_map(|line| line.strip_prefix(name))?.split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// Bytes received and sent, summed over the interfaces of `/proc/<pid>/net/dev`
/// (`name: rx_bytes … (8 receive fields) tx_bytes …`).
fn parse_net_dev(dev: &str) -> Option<(u64, u64)> {
    let mut received: u64 = 0;
    let mut sent: u64 = 0;
    let mut interfaces = 0usize;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else { continue };
        let fields: Vec<u64> = counters.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        received = received.checked_add(*fields.first()?)?;
        sent = sent.checked_add(*fields.get(8)?)?;
        interfaces += 1;
    }
    (interfaces > 0).then_some((received, sent))
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_judged_on_bytes() {
        let path = "/flow_metrics";
        assert_eq!(route(b"GET /flow_metrics HTTP/1.1\r\nHost: x\r\n\r\n", path), Route::Metrics);
        assert_eq!(route(b"GET /flow_metrics?x=1 HTTP/1.0\r\n\r\n", path), Route::Metrics);
        assert_eq!(route(b"GET /flow_metrics HTTP/1.1", path), Route::Metrics, "a head cut after its request line");
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n", path), Route::NotFound);
        assert_eq!(route(b"POST /flow_metrics HTTP/1.1\r\n\r\n", path), Route::MethodNotAllowed);
        assert_eq!(route("GET /flow_m\u{e9}trics HTTP/1.1\r\n".as_bytes(), path), Route::NotFound);
        assert_eq!(route("G\u{20ac}T /flow_metrics HTTP/1.1\r\n".as_bytes(), path), Route::MethodNotAllowed);
        for bad in [&b""[..], b"\r\n", b"GET", b"GET /flow_metrics", b"GET /flow_metrics HTTP/2", b"GET / HTTP/1.1 x"] {
            assert_eq!(route(bad, path), Route::BadRequest, "{bad:?}");
        }
        assert_eq!(route(b"\xff\xfe /flow_metrics HTTP/1.1", path), Route::MethodNotAllowed);
    }

    #[test]
    fn no_input_panics_the_router() {
        let valid = "GET /m\u{e9}trics?\u{1f600} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes();
        for end in 0..=valid.len() {
            let _ = route(&valid[..end], "/m\u{e9}trics");
            for byte in [0u8, b' ', b'\n', 0xc3, 0xff] {
                let mut changed = valid.to_vec();
                changed.insert(end, byte);
                let _ = route(&changed, "/metrics");
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..(state % 64))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            let _ = route(&bytes, "/metrics");
        }
    }

    #[test]
    fn reads_stat_after_the_last_parenthesis() {
        // Field numbers as in proc(5): utime 14 = 7, stime 15 = 3, starttime 22 = 555, vsize 23 = 4096.
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 7 3 0 0 20 0 9 0 555 4096 12 rest";
        assert_eq!(parse_stat(stat), Some(Stat { cpu_ticks: 10, start_ticks: 555, virtual_bytes: 4096 }));
        assert_eq!(parse_stat("42 (cut) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn reads_limits_memory_boot_time_and_network() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(parse_soft_limit(limits, "Max address space"), Some(u64::MAX));
        assert_eq!(parse_soft_limit(limits, "Max locks"), None);
        assert_eq!(parse_resident_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"), Some(2 * 1024 * 1024));
        assert_eq!(parse_boot_time("cpu 1 2\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n\
                   lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
                   eth0: 7 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), Some((107, 105)));
        assert_eq!(parse_net_dev("header\nheader\n"), None);
        assert_eq!(parse_net_dev("h\nh\n lo: 1 2 x\n"), None);
    }

    #[test]
    fn renders_every_series_read_with_help_and_type() {
        let stats = ProcessStats { cpu_seconds: Some(1.5), open_fds: Some(12), ..ProcessStats::default() };
        let mut out = String::new();
        stats.render(&mut out);
        assert_eq!(
            out,
            "# HELP whpg_flow_server_process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE whpg_flow_server_process_cpu_seconds_total counter\n\
             whpg_flow_server_process_cpu_seconds_total 1.5\n\
             # HELP whpg_flow_server_process_open_fds Number of open file descriptors.\n\
             # TYPE whpg_flow_server_process_open_fds gauge\n\
             whpg_flow_server_process_open_fds 12\n"
        );
        let live = ProcessStats::read();
        assert!(live.open_fds.is_some_and(|fds| fds > 0), "{live:?}");
        assert!(live.resident_memory_bytes.is_some_and(|bytes| bytes > 0), "{live:?}");
        assert!(live.start_time_seconds.is_some() && live.network_receive_bytes.is_some(), "{live:?}");
    }
}

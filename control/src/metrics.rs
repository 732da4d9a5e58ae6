//! The Prometheus endpoint (`Prometheus` block of flow_server.json):
//! FlowServer's job counts under its metric names, plus per-job series it
//! lacks (rows, errors, batches, lag, latency, state), in the text format.

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
}

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
            let mut request = [0u8; 2048];
            let Some(read) = read_head(&mut socket, &mut request).await else { return };
            let head = String::from_utf8_lossy(&request[..read]);
            let target = head.split_whitespace().nth(1).unwrap_or("");
            let response = if head.starts_with("GET ") && target.split('?').next() == Some(path.as_str()) {
                let body = render(&registry).await;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = format!("not found; metrics are at {path}\n");
                format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Reads a request head into `buffer` until its blank line, a full buffer or
/// the end of the stream; `None` on an error or after 10 s. A head can arrive
/// in several segments: answering the first one would judge a partial path,
/// and closing with the rest unread resets the connection.
async fn read_head(socket: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> Option<usize> {
    let reading = async {
        let mut filled = 0;
        while filled < buffer.len() && !buffer[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buffer[filled..]).await {
                Ok(0) => break,
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

//! The gRPC API as tools other than flowcli see it (reflection, as grpcurl
//! uses it) and the Prometheus endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flowserver_tests::*;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[test]
fn reflection_lists_the_flowserver_service() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let services = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", server.port))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client.server_reflection_info(tokio_stream_once(request)).await.unwrap().into_inner();
        let response = responses.message().await.unwrap().unwrap();
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    });
    assert!(services.contains(&"flowserver.v1.FlowServer".to_string()), "{services:?}");
}

fn tokio_stream_once(
    request: ServerReflectionRequest,
) -> impl tonic::codegen::tokio_stream::Stream<Item = ServerReflectionRequest> {
    tonic::codegen::tokio_stream::iter(vec![request])
}

#[test]
fn prometheus_endpoint_reports_jobs_under_flowservers_names_and_per_job_series() {
    let topic = unique("metrics");
    let table = unique("metrics_t");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 1, id_messages(0..42));
    let port = free_port();
    let server = Server::start_with(&format!(
        r#""Prometheus": {{"Host": "127.0.0.1", "Port": {port}, "MetricsPath": "/flow_metrics"}}"#
    ));
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 42, Duration::from_secs(60)).unwrap();
    server.wait_for(&table, Duration::from_secs(30), |s| s["rows_loaded"] == 42);

    let body = http_get(port, "/flow_metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("\nwhpg_flow_server_job_running 1\n"), "{body}");
    assert!(body.contains("\nwhpg_flow_server_job_total 1\n"), "{body}");
    assert!(body.contains(&format!("\nflowserver_job_rows_loaded_total{{job=\"{table}\"}} 42\n")), "{body}");
    assert!(body.contains(&format!("\nflowserver_job_state{{job=\"{table}\",state=\"running\"}} 1\n")), "{body}");
    assert!(http_get(port, "/other").starts_with("HTTP/1.1 404"));
    // A request head that arrives in pieces is read whole before it is judged.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /flow").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b"_metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
}

/// The samples of a Prometheus text body, by series name (no labels).
fn samples(body: &str) -> std::collections::HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.contains('{'))
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

/// The soft limit of one line of `/proc/<pid>/limits`, as the metric gives it.
fn soft_limit(pid: u32, name: &str) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft = limits.lines().find_map(|l| l.strip_prefix(name)).unwrap().split_whitespace().next().unwrap();
    if soft == "unlimited" { u64::MAX as f64 } else { soft.parse().unwrap() }
}

#[test]
fn prometheus_endpoint_reports_flowservers_process_metrics() {
    let port = free_port();
    let before_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let server = Server::start_with(&format!(r#""Prometheus": {{"Host": "127.0.0.1", "Port": {port}}}"#));
    let after_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let pid = server.pid().unwrap();
    let body = http_get(port, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let kinds = [
        ("cpu_seconds_total", "counter"),
        ("open_fds", "gauge"),
        ("max_fds", "gauge"),
        ("resident_memory_bytes", "gauge"),
        ("virtual_memory_bytes", "gauge"),
        ("virtual_memory_max_bytes", "gauge"),
        ("start_time_seconds", "gauge"),
        ("network_receive_bytes_total", "counter"),
        ("network_transmit_bytes_total", "counter"),
    ];
    for (name, kind) in kinds {
        let name = format!("whpg_flow_server_process_{name}");
        assert!(body.contains(&format!("\n# HELP {name} ")), "no HELP for {name}:\n{body}");
        assert!(body.contains(&format!("\n# TYPE {name} {kind}\n")), "no TYPE {kind} for {name}:\n{body}");
    }
    let first = samples(&body);
    let value = |name: &str| -> f64 {
        *first.get(&format!("whpg_flow_server_process_{name}")).unwrap_or_else(|| panic!("no {name}:\n{body}"))
    };
    // What the kernel says about the very process.
    let fds_now = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as f64;
    assert!(
        value("open_fds") > 0.0 && (value("open_fds") - fds_now).abs() <= 16.0,
        "{} vs {fds_now}",
        value("open_fds")
    );
    assert_eq!(value("max_fds"), soft_limit(pid, "Max open files"));
    assert_eq!(value("virtual_memory_max_bytes"), soft_limit(pid, "Max address space"));
    let rss = server.rss_bytes().unwrap() as f64;
    let resident = value("resident_memory_bytes");
    assert!(resident > 0.0 && resident < 2.0 * rss && resident > rss / 2.0, "{resident} vs {rss}");
    assert!(value("virtual_memory_bytes") > resident);
    // The start time is the process's, not the scrape's (ticks of 10 ms, boot time in whole seconds).
    let started = value("start_time_seconds");
    assert!(
        started >= before_start.floor() - 1.0 && started <= after_start + 1.0,
        "{before_start} <= {started} <= {after_start}"
    );
    assert!(value("cpu_seconds_total") > 0.0, "starting the shards and the runtime takes CPU");
    assert!(value("network_receive_bytes_total") > 0.0 && value("network_transmit_bytes_total") > 0.0);
    // Counters only grow: this scrape itself was received and answered.
    let second = samples(&http_get(port, "/metrics"));
    for name in ["cpu_seconds_total", "network_receive_bytes_total", "network_transmit_bytes_total"] {
        let name = format!("whpg_flow_server_process_{name}");
        assert!(second[&name] >= first[&name], "{name}: {} then {}", first[&name], second[&name]);
    }
    assert!(second["whpg_flow_server_process_network_receive_bytes_total"] > value("network_receive_bytes_total"));
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

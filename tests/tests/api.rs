//! The gRPC API as tools other than flowcli see it (reflection, as grpcurl
//! uses it) and the Prometheus endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flowserver_proto::v1::flow_server_client::FlowServerClient;
use flowserver_proto::v1::start_options::Reset;
use flowserver_proto::v1::{ListRequest, StartOptions, StartRequest, SubmitRequest};
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
    // CPU time in the kernel's 10 ms ticks: between what /proc showed before and after the scrape.
    let cpu_ticks = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()
    };
    let cpu = value("cpu_seconds_total");
    assert!(cpu >= 0.0 && cpu <= cpu_ticks() / 100.0 + 0.01, "{cpu} vs {} s", cpu_ticks() / 100.0);
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap()
}

async fn client(port: u16) -> FlowServerClient<tonic::transport::Channel> {
    FlowServerClient::new(channel(port).await)
}

/// Sends and receives message bodies as raw bytes, so a test can send what
/// no generated client would (invalid UTF-8 in a string field).
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let len = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, len).to_vec()))
    }
}

/// Calls `method` of flowserver.v1.FlowServer with `body` as the request message.
async fn raw_call(port: u16, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel(port).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
}

/// A length-delimited protobuf field (`field` < 16, `bytes` shorter than 128).
fn field(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![field << 3 | 2, u8::try_from(bytes.len()).unwrap()];
    out.extend_from_slice(bytes);
    out
}

fn server_log(server: &Server) -> String {
    std::fs::read_to_string(server.dir.path().join("logs").join("flowserver.log")).unwrap_or_default()
}

#[test]
fn start_with_the_issues_timestamp_is_invalid_argument_and_the_server_answers_on() {
    let server = Server::start();
    let timestamp = "2026-01-02T03:04:05+\u{20ac}ab";
    runtime().block_on(async {
        let mut client = client(server.port).await;
        let options = StartOptions { reset: Some(Reset::ResetToTimestamp(timestamp.into())), ..Default::default() };
        let status = client
            .start(StartRequest { name: "x".into(), all: false, options: Some(options) })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            format!(
                "invalid --reset-to-timestamp {timestamp:?}: use RFC 3339 (2026-01-02T03:04:05Z) or milliseconds \
                 since the epoch"
            )
        );
        let jobs = client.list(ListRequest {}).await.expect("the server still answers").into_inner().jobs;
        assert!(jobs.is_empty(), "{jobs:?}");
    });
    let log = server_log(&server);
    assert!(!log.contains("panic"), "{log}");
}

#[test]
fn invalid_utf8_in_a_string_field_is_invalid_argument_naming_the_field() {
    let server = Server::start();
    let not_utf8 = b"job\xff\xfe";
    let cases: [(&'static str, Vec<u8>, &str); 4] = [
        ("/flowserver.v1.FlowServer/Submit", [field(1, b"j"), field(2, not_utf8)].concat(), "SubmitRequest.config"),
        ("/flowserver.v1.FlowServer/Submit", [field(1, not_utf8), field(2, b"v")].concat(), "SubmitRequest.name"),
        ("/flowserver.v1.FlowServer/Start", field(1, not_utf8), "StartRequest.name"),
        // StartRequest.options (3) → StartOptions.reset_to_timestamp (4), in the oneof `reset`.
        (
            "/flowserver.v1.FlowServer/Start",
            field(3, &field(4, b"2026\xe2\x82")),
            "StartOptions.reset: StartRequest.options",
        ),
    ];
    runtime().block_on(async {
        for (method, body, named) in cases {
            let status = raw_call(server.port, method, body).await.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{method}: {status:?}");
            assert!(
                status.message().starts_with("invalid request: failed to decode Protobuf message: ")
                    && status.message().ends_with(&format!("{named}: invalid string value: data is not UTF-8 encoded")),
                "{method}: {}",
                status.message()
            );
        }
        // A message cut inside a field names what was being read too.
        let status =
            raw_call(server.port, "/flowserver.v1.FlowServer/Status", vec![0x0a, 10, b'a']).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("StatusRequest.name"), "{}", status.message());
        assert!(client(server.port).await.list(ListRequest {}).await.is_ok(), "the server still answers");
    });
}

fn submit_of(config_len: usize) -> SubmitRequest {
    SubmitRequest { name: "big".into(), config: "#".repeat(config_len), ..Default::default() }
}

#[test]
fn an_over_size_submit_is_invalid_argument_naming_the_limit() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = client(server.port).await;
        let request = submit_of(17 << 20);
        let size = prost::Message::encoded_len(&request);
        let status = client.submit(request).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            format!(
                "request message of {size} bytes exceeds the server's limit of 16777216 bytes (MaxRequestBytes in \
                 flow_server.json)"
            )
        );
        assert!(client.list(ListRequest {}).await.is_ok(), "the server still answers");
    });
    assert!(server_log(&server).contains("gRPC request refused"), "{}", server_log(&server));
}

#[test]
fn max_request_bytes_sets_the_limit_and_a_message_within_it_reaches_the_handler() {
    let server = Server::start_with(r#""MaxRequestBytes": 1048576"#);
    runtime().block_on(async {
        let mut client = client(server.port).await;
        let status = client.submit(submit_of(1 << 20)).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("exceeds the server's limit of 1048576 bytes"), "{}", status.message());
        // Just under the limit: the job file itself is judged (a comment is no job).
        let request = submit_of((1 << 20) - 64);
        assert!(prost::Message::encoded_len(&request) <= 1 << 20);
        let status = client.submit(request).await.expect_err("not a job file");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(!status.message().contains("exceeds"), "{}", status.message());
    });
}

#[test]
fn reflection_v1alpha_lists_the_flowserver_service() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::{ServerReflectionRequest, ServerReflectionResponse};

    let server = Server::start();
    let services = runtime().block_on(async {
        let mut client = ServerReflectionClient::new(channel(server.port).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let requests = tonic::codegen::tokio_stream::iter(vec![request]);
        let mut responses = client.server_reflection_info(requests).await.unwrap().into_inner();
        let response: ServerReflectionResponse = responses.message().await.unwrap().unwrap();
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    });
    assert!(services.contains(&"flowserver.v1.FlowServer".to_string()), "{services:?}");
}

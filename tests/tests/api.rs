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

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

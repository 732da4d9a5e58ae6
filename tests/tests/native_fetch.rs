//! The native fetch path (the shard's own Kafka fetcher, `KafkaFetch:
//! native`, the default for exactly-once jobs): compressed topics,
//! transactional markers, and which path a job takes. Crashes are in
//! exactly_once.rs, run through both paths.

use std::time::Duration;

use flowserver_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

const TIMEOUT: Duration = Duration::from_secs(90);

fn producer_with(settings: &[(&str, &str)]) -> BaseProducer {
    ensure_kafka();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_brokers()).set("linger.ms", "20");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

fn send_ids(producer: &BaseProducer, topic: &str, partitions: i32, ids: std::ops::Range<i64>) {
    produce_with(producer, topic, partitions, id_messages(ids));
}

/// The `fetch` fields of the job's "reading partitions" log lines, each once.
fn fetch_paths(server: &Server, job: &str) -> Vec<String> {
    let log = server.job_log(job);
    let mut paths: Vec<String> = log
        .lines()
        .filter(|line| line.contains("reading partitions"))
        .filter_map(|line| line.split("fetch").nth(1))
        .filter_map(|rest| rest.split('"').nth(1).map(str::to_owned))
        .collect();
    assert!(!paths.is_empty(), "no \"reading partitions\" line in the log of {job}:\n{log}");
    paths.sort();
    paths.dedup();
    paths
}

fn assert_loaded_once(table: &str, topic: &str, total: i64) {
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), total);
    assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), total);
    assert_eq!(query_i64(&format!("SELECT max(id)::bigint FROM {table}")), total - 1);
    let stored: i64 = stored_offsets(table, topic).iter().map(|(_, o)| o).sum();
    assert_eq!(stored, total, "stored offsets of {table}");
}

#[test]
fn every_compression_codec_loads_exactly_once_through_the_native_path() {
    let server = Server::start();
    let total = 3000;
    let mut jobs = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(&format!("codec_{codec}"));
        let table = unique(&format!("codec_{codec}_t"));
        create_topic(&topic, 3);
        sql(&format!("CREATE TABLE {table} (id int, body text)"));
        send_ids(&producer_with(&[("compression.codec", codec)]), &topic, 3, 0..total);
        let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
        assert!(server.submit_yaml(&table, &job, &["--start"]).success);
        jobs.push((codec, topic, table));
    }
    for (codec, topic, table) in &jobs {
        wait_count(&format!("SELECT count(*) FROM {table}"), total, TIMEOUT)
            .unwrap_or_else(|e| panic!("{codec}: {e}\n{}", server.output()));
        assert_loaded_once(table, topic, total);
        assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 0);
    }
    // librdkafka, which fetched nothing, still commits the loaded offsets to the group (for lag tools).
    let (_, topic, table) = &jobs[0];
    let group = format!("flowserver.{table}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while group_committed(&group, topic, 3).iter().sum::<i64>() != total {
        assert!(std::time::Instant::now() < deadline, "group {group}: {:?}", group_committed(&group, topic, 3));
        std::thread::sleep(Duration::from_millis(200));
    }
    for (_, _, table) in &jobs {
        assert_eq!(fetch_paths(&server, table), vec!["native"]);
    }
}

#[test]
fn the_librdkafka_path_stays_available() {
    let server = Server::start_with(r#""KafkaFetch": "librdkafka""#);
    let topic = unique("rdk_path");
    let table = unique("rdk_path_t");
    create_topic(&topic, 3);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    send_ids(&producer_with(&[("compression.codec", "zstd")]), &topic, 3, 0..2000);
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 2000, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    assert_loaded_once(&table, &topic, 2000);
    assert_eq!(fetch_paths(&server, &table), vec!["librdkafka"]);
}

/// Transactional topics carry commit markers (control batches) between the
/// records: they take offsets but are never rows. (tansu, the test broker,
/// does not apply aborts — neither fetch path can see one there — so the
/// read_committed filter of aborted transactions is tested on bytes in
/// `engine/src/kafka/wire.rs`.)
#[test]
fn transactional_records_load_once_and_markers_are_skipped() {
    let topic = unique("txn");
    let table = unique("txn_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    let producer = producer_with(&[("transactional.id", &unique("txn_producer"))]);
    producer.init_transactions(Duration::from_secs(30)).expect("init transactions");
    for range in [0..400, 400..1000] {
        producer.begin_transaction().expect("begin");
        send_ids(&producer, &topic, 2, range);
        producer.commit_transaction(Duration::from_secs(30)).expect("commit");
    }

    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 1000, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    // A marker delivered as a message would become a row (or an error row) by now.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 1000);
    assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), 1000);
    assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 0);
    assert_eq!(fetch_paths(&server, &table), vec!["native"]);
}

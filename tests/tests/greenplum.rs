//! The WarehousePG / Greenplum path against a real cluster: shards serve
//! fs_formatter rows through gpfdist, segments read them through external
//! tables. Needs `FLOW_GP_URL` (see `flowserver_tests::gp_url`) and the
//! fs_formatter extension installed in the cluster (`extension/README.md`);
//! without `FLOW_GP_URL` each test prints that it did not run.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn cluster() -> bool {
    if gp_url().is_none() {
        eprintln!("FLOW_GP_URL is not set: the Greenplum tests did not run");
        return false;
    }
    true
}

fn gp_count(query: &str) -> i64 {
    gp().query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get(0)
}

fn gp_wait_count(query: &str, expected: i64, server: &Server) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let count = gp_count(query);
        if count == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{query}: {count}, expected {expected}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_job(topic: &str, table: &str, batch: &str, extra: &str) -> String {
    gp_job_yaml(
        topic,
        "      json:\n        column:\n          name: value\n          type: json",
        "      consistency: exactly-once",
        batch,
        &format!(
            "    - table: {table}
      schema: public
      mode:
        insert: {{}}
      mapping:
        id: (value->>'id')::int
        body: value->>'body'"
        ),
        extra,
    )
}

#[test]
fn segments_read_the_batches_through_gpfdist_and_offsets_commit_with_them() {
    if !cluster() {
        return;
    }
    let topic = unique("gp");
    let table = unique("gp_t");
    create_topic(&topic, 4);
    gp().batch_execute(&format!("CREATE TABLE {table} (id int, body text) DISTRIBUTED BY (id)")).unwrap();
    produce(&topic, 4, id_messages(0..20_000));
    let server = Server::start_with(r#""Shards": 2"#);
    let job = json_job(&topic, &table, "        interval_ms: 300\n        max_count: 3000", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(gp_count(&format!("SELECT count(*) FROM {table}")), 20_000);
    assert_eq!(gp_count(&format!("SELECT count(DISTINCT id) FROM {table}")), 20_000);
    // Both segments received rows: the segments pulled them in parallel.
    assert_eq!(gp_count(&format!("SELECT count(DISTINCT gp_segment_id) FROM {table}")), 2);
    let stored = gp_count(&format!(
        "SELECT sum(next_offset)::bigint FROM public.flow_offsets WHERE job = '{table}' AND topic = '{topic}'"
    ));
    assert_eq!(stored, 20_000);
    // One external table per shard, each with the shard's own location and the custom formatter.
    let locations = gp()
        .query(
            &format!(
                "SELECT ftoptions::text FROM pg_foreign_table t JOIN pg_class c ON c.oid = t.ftrelid \
                 WHERE c.relname LIKE 'flowserver_ext_{table}_s%' ORDER BY c.relname"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(locations.len(), 2);
    for row in &locations {
        let options: String = row.get(0);
        assert!(options.contains("formatter=fs_formatter_in"), "{options}");
        assert!(options.contains(&format!("/{table}")), "{options}");
    }
}

#[test]
fn a_row_the_target_refuses_is_isolated_and_kept() {
    if !cluster() {
        return;
    }
    let topic = unique("gp_bad");
    let table = unique("gp_bad_t");
    create_topic(&topic, 1);
    gp().batch_execute(&format!(
        "CREATE TABLE {table} (id int NOT NULL CHECK (id <> 13), body text) DISTRIBUTED BY (id)"
    ))
    .unwrap();
    let mut messages: Vec<Vec<u8>> = id_messages(0..50).collect();
    messages.push(br#"{"body": "no id"}"#.to_vec());
    produce(&topic, 1, messages);
    let server = Server::start();
    let job = json_job(&topic, &table, "        interval_ms: 500", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(gp_count(&format!("SELECT count(*) FROM {table}")), 49);
    let errors = gp()
        .query(
            &format!(
                "SELECT \"offset\", reason, raw FROM public.flow_errors WHERE job = '{table}' ORDER BY \"offset\""
            ),
            &[],
        )
        .unwrap();
    let found: Vec<(i64, String, Vec<u8>)> = errors.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, 13);
    assert!(found[0].1.contains("violates check constraint"), "{}", found[0].1);
    assert_eq!(found[0].2, br#"{"id": 13, "body": "message 13"}"#.to_vec());
    assert_eq!(found[1].0, 50);
    assert!(found[1].1.contains("null value in column \"id\""), "{}", found[1].1);
    assert_eq!(server.status(&table)["rows_rejected"], 2);
}

#[test]
fn kill_9_during_a_segment_load_loses_and_duplicates_nothing() {
    if !cluster() {
        return;
    }
    let topic = unique("gp_crash");
    let table = unique("gp_crash_t");
    create_topic(&topic, 2);
    gp().batch_execute(&format!("CREATE TABLE {table} (id int, body text) DISTRIBUTED BY (id)")).unwrap();
    let total = 100_000;
    produce(&topic, 2, id_messages(0..total));
    let mut server = Server::start();
    let job = json_job(&topic, &table, "        interval_ms: 200\n        max_count: 2000", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while gp_count(&format!("SELECT count(*) FROM {table}")) < 10_000 {
        assert!(std::time::Instant::now() < deadline, "no progress:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    server.restart();
    gp_wait_count(&format!("SELECT count(*) FROM {table}"), total, &server);
    assert_eq!(gp_count(&format!("SELECT count(DISTINCT id) FROM {table}")), total);
}

#[test]
fn a_wrong_advertised_host_is_named_in_the_error() {
    if !cluster() {
        return;
    }
    let topic = unique("gp_host");
    let table = unique("gp_host_t");
    create_topic(&topic, 1);
    gp().batch_execute(&format!("CREATE TABLE {table} (id int, body text) DISTRIBUTED BY (id)")).unwrap();
    produce(&topic, 1, id_messages(0..10));
    // The listener is on 127.0.0.1; segments are told to connect to 127.0.0.2.
    let server = Server::start_with(r#""Gpfdist": {"Host": "127.0.0.1", "Port": 0, "AdvertiseHost": "127.0.0.2"}"#);
    let job = json_job(&topic, &table, "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    let status = server.wait_state(&table, "error", TIMEOUT);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("the segments cannot read flowserver's gpfdist at gpfdist://127.0.0.2:"), "{message}");
    assert!(message.contains("Gpfdist.AdvertiseHost"), "{message}");
    assert_eq!(gp_count(&format!("SELECT count(*) FROM {table}")), 0);
    assert_eq!(gp_count(&format!("SELECT count(*) FROM public.flow_offsets WHERE job = '{table}'")), 0);
}

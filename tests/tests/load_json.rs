//! JSON from Kafka into PostgreSQL, end to end through flowserver and flowcli.

use std::time::Duration;

use flowserver_tests::*;

fn event(i: i64) -> Vec<u8> {
    format!(
        r#"{{"id": {i}, "big": {}, "name": "name-{i:015}", "ts": "2026-01-{:02}T10:{:02}:00.{:06}Z", "score": {}.25, "nested": {{"k": "v{i}"}}}}"#,
        i * 1_000_000_007,
        (i % 28) + 1,
        i % 60,
        i % 1_000_000,
        i
    )
    .into_bytes()
}

#[test]
fn pushed_down_and_sql_mappings_load_identical_rows() {
    let topic = unique("json_same");
    let pushed = unique("pushed");
    let by_sql = unique("by_sql");
    create_topic(&topic, 3);
    for table in [&pushed, &by_sql] {
        sql(&format!(
            "CREATE TABLE {table} (id int primary key, big bigint, name text, ts timestamp, score double precision, k text, doc json)"
        ));
    }
    let mut payloads: Vec<Vec<u8>> = (0..2000).map(event).collect();
    // Values that push-down cannot compute exactly go through the database's
    // own SQL in both jobs, and must land the same way.
    payloads.push(br#"{"id": 100001, "big": " 42", "name": null, "ts": "2026-01-01 10:00:00", "score": 1e3}"#.to_vec());
    payloads.push(br#"{"id": 100002, "big": 7, "name": "x", "ts": "Jan 3 2026 04:05", "score": 1}"#.to_vec());
    payloads.push(br#"{"id": 100003, "name": "\u00e9t\u00e9 \"quoted\"", "nested": {"k": [1, 2]}}"#.to_vec());
    let produced = produce(&topic, 3, payloads) as i64;

    let server = Server::start();
    let pushed_job = job_yaml(
        &topic,
        &json_value("json"),
        "      consistency: exactly-once",
        "        interval_ms: 300",
        &insert_table(
            &pushed,
            &[
                ("id", "(value->>'id')::int"),
                ("big", "(value->>'big')::bigint"),
                ("name", "value->>'name'"),
                ("ts", "(value->>'ts')::timestamp"),
                ("score", "(value->>'score')::double precision"),
                ("k", "value#>>'{nested,k}'"),
                ("doc", "value"),
            ],
        ),
        "",
    );
    // The same mapping written so that no expression matches a push-down form.
    let sql_job = job_yaml(
        &topic,
        &json_value("json"),
        "      consistency: exactly-once",
        "        interval_ms: 300",
        &insert_table(
            &by_sql,
            &[
                ("id", "CAST(value->>'id' AS int)"),
                ("big", "CAST(value->>'big' AS bigint)"),
                ("name", "coalesce(value->>'name', NULL)"),
                ("ts", "CAST(value->>'ts' AS timestamp)"),
                ("score", "CAST(value->>'score' AS double precision)"),
                ("k", "coalesce(value#>>'{nested,k}', NULL)"),
                ("doc", "CAST(value::text AS json)"),
            ],
        ),
        "",
    );
    assert!(server.submit_yaml(&pushed, &pushed_job, &["--start"]).success);
    assert!(server.submit_yaml(&by_sql, &sql_job, &["--start"]).success);

    for table in [&pushed, &by_sql] {
        wait_count(&format!("SELECT count(*) FROM {table}"), produced, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    }
    let differences = query_i64(&format!(
        "SELECT count(*) FROM ((SELECT id, big, name, ts, score, k, doc::text FROM {pushed} EXCEPT ALL \
                                SELECT id, big, name, ts, score, k, doc::text FROM {by_sql}) UNION ALL \
                               (SELECT id, big, name, ts, score, k, doc::text FROM {by_sql} EXCEPT ALL \
                                SELECT id, big, name, ts, score, k, doc::text FROM {pushed})) d"
    ));
    assert_eq!(differences, 0, "push-down and SQL loads differ");
    // Spot checks that the values are right, not merely equal.
    assert_eq!(
        query_strings(&format!("SELECT concat_ws('|', big, name, ts, score, k) FROM {pushed} WHERE id = 7")),
        vec!["7000000049|name-000000000000007|2026-01-08 10:07:00.000007|7.25|v7".to_string()]
    );
    assert_eq!(
        query_strings(&format!(
            "SELECT concat_ws('|', big, coalesce(name, 'null'), ts, score) FROM {pushed} WHERE id = 100001"
        )),
        vec!["42|null|2026-01-01 10:00:00|1000".to_string()]
    );
    assert_eq!(
        query_strings(&format!("SELECT concat_ws('|', name, k) FROM {pushed} WHERE id = 100003")),
        vec!["été \"quoted\"|[1, 2]".to_string()]
    );
    // Offsets of every partition are in the database, for both jobs.
    for job in [&pushed, &by_sql] {
        let stored = query_i64(&format!(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM public.flow_offsets WHERE job = '{job}' AND topic = '{topic}'"
        ));
        assert_eq!(stored, produced, "offsets of {job}");
    }
    let status = server.status(&pushed);
    assert_eq!(status["rows_loaded"], produced);
    assert_eq!(status["state"], "running");
    server.ok(&["stop", &pushed]);
    server.ok(&["stop", &by_sql]);
    assert_eq!(server.state(&pushed), "stopped");
}

/// Two shards read their shares ahead of the group join; one drains its
/// share at once, the other is still loading when the join moves partitions
/// between them. `--stop-at-eof` must see every partition of the new split at
/// its end (a shard that had reported its old share drained once never
/// reported the new one, and the job waited forever).
#[test]
fn stop_at_eof_with_two_shards_ends_when_the_group_moves_partitions_after_a_drain() {
    use rdkafka::producer::{BaseRecord, Producer};
    let topic = unique("eof2");
    let table = unique("eof2_t");
    create_topic(&topic, 4);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    // Shard 0 reads partitions 0 and 2 ahead of the join: a few messages;
    // shard 1 reads 1 and 3: many.
    let producer = producer();
    let sizes = [50i64, 20_000, 50, 20_000];
    let mut id = 0i64;
    for (partition, &size) in sizes.iter().enumerate() {
        for _ in 0..size {
            let payload = format!(r#"{{"id": {id}, "body": "m"}}"#);
            let mut record: BaseRecord<'_, (), str> =
                BaseRecord::to(&topic).partition(partition as i32).payload(payload.as_str());
            while let Err((_, returned)) = producer.send(record) {
                producer.poll(Duration::from_millis(10));
                record = returned;
            }
            id += 1;
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let server = Server::start_with(r#""Shards": 2"#);
    // Small batches: shard 1's load outlasts the join.
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 100\n        max_count: 100", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    let port = server.port;
    let name = table.clone();
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(cli_at(port, &["start", &name, "--stop-at-eof"])));
    let out = ended
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("--stop-at-eof never ended: {:#}\n{}", server.status(&table), server.output()));
    assert!(out.success, "{}\n{}", out.stderr, server.output());
    assert_eq!(server.state(&table), "success");
    assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), id);
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), id);
}

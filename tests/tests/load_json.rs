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

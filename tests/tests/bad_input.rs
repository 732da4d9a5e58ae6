//! Bad job files, bad messages and the error limit: clear errors, nothing lost.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn bad_job_files_are_refused_at_submit_with_path_line_and_reason() {
    let server = Server::start();
    let good = simple_json_job("t", "t", "exactly-once", "        interval_ms: 200", "");
    let cases = [
        (
            good.replace("    topic: t\n", "    topic: t\n    topik: t\n"),
            "flowcli: bad1.yaml: source.kafka.topik (line 7): unknown key; expected one of brokers, topic, value, control, task, properties",
        ),
        (
            good.replace("consistency: exactly-once", "consistency: twice"),
            "flowcli: bad2.yaml: source.kafka.control.consistency (line 13): must be one of exactly-once, at-least-once, at-most-once, none; got \"twice\"",
        ),
        (
            good.replace("      json:\n", "      avro:\n"),
            "flowcli: bad3.yaml: source.kafka.value.avro (line 8): not supported yet: source.kafka.value.avro",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let name = format!("bad{}", i + 1);
        let out = server.submit_yaml(&name, text, &[]);
        assert!(!out.success);
        assert_eq!(out.code, 1);
        assert_eq!(out.stderr.trim(), *expected);
    }
    // Nothing was registered.
    assert_eq!(server.ok(&["list", "--name-only"]).trim(), "");
}

#[test]
fn rows_the_database_refuses_go_to_flow_errors_with_the_raw_message() {
    let topic = unique("bad_msg");
    let table = unique("bad_msg_t");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int NOT NULL CHECK (id >= 0), body text)"));
    let messages: Vec<Vec<u8>> = vec![
        br#"{"id": 1, "body": "ok"}"#.to_vec(),
        br#"{"id": "abc", "body": "not a number"}"#.to_vec(),
        b"this is not json".to_vec(),
        br#"{"body": "no id"}"#.to_vec(),
        br#"{"id": -5, "body": "negative"}"#.to_vec(),
        br#"{"id": 2, "body": "ok"}"#.to_vec(),
    ];
    produce(&topic, 1, messages.clone());
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 300", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);

    assert_eq!(
        query_strings(&format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {table}")),
        vec!["1,2".to_string()]
    );
    let rows = pg()
        .query("SELECT \"offset\", reason, raw FROM public.flow_errors WHERE job = $1 ORDER BY \"offset\"", &[&table])
        .unwrap();
    let found: Vec<(i64, String, Vec<u8>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0].0, 1);
    assert_eq!(found[0].1, "invalid input syntax for type integer: \"abc\"");
    assert_eq!(found[0].2, messages[1]);
    assert_eq!(found[1].0, 2);
    assert_eq!(found[1].1, "invalid input syntax for type json (Token \"this\" is invalid.)");
    assert_eq!(found[1].2, messages[2]);
    assert_eq!(found[2].0, 3);
    assert_eq!(
        found[2].1,
        format!(
            "null value in column \"id\" of relation \"{table}\" violates not-null constraint (Failing row contains (null, no id).)"
        )
    );
    assert_eq!(found[3].0, 4);
    assert!(
        found[3].1.starts_with(&format!("new row for relation \"{table}\" violates check constraint")),
        "{}",
        found[3].1
    );
    assert_eq!(found[3].2, messages[4]);
    // Every message is accounted for: the offsets cover all six.
    assert_eq!(stored_offsets(&table, &topic), vec![(0, 6)]);
    let status = server.status(&table);
    assert_eq!(status["rows_loaded"], 2);
    assert_eq!(status["rows_rejected"], 4);
}

#[test]
fn past_error_limit_the_job_loads_up_to_the_message_that_crossed_it_and_stops_in_error() {
    let topic = unique("limit");
    let table = unique("limit_t");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    let mut messages: Vec<Vec<u8>> = (0..10).map(|i| format!(r#"{{"id": {i}}}"#).into_bytes()).collect();
    for bad in ["x", "y", "z"] {
        messages.push(format!(r#"{{"id": "{bad}"}}"#).into_bytes());
    }
    messages.push(br#"{"id": 99}"#.to_vec());
    produce(&topic, 1, messages);
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 1000", "    error_limit: 2");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    let status = server.wait_state(&table, "error", TIMEOUT);
    assert_eq!(
        status["message"],
        "error_limit exceeded: 3 of 13 messages rejected since the job's offsets were last reset (limit 2); \
         loaded up to partition 0 offset 12, rejected there: invalid input syntax for type integer: \"z\"; \
         rejected messages are in \"public\".flow_errors"
    );
    // Loaded up to the message that crossed the limit; the one after it waits.
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 10);
    assert_eq!(stored_offsets(&table, &topic), vec![(0, 13)]);
    assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 3);
}

#[test]
fn a_mapping_that_smuggles_a_second_statement_runs_nothing_and_fails_the_start() {
    let topic = unique("inject");
    let table = unique("inject_t");
    let victim = unique("victim");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int, body text); CREATE TABLE {victim} (x int)"));
    let server = Server::start();
    let mapping = format!(
        "1) FROM (SELECT 1 AS \"__fs_t0_c0\", '{{}}'::json AS value) s; COMMIT; drop table if exists public.{victim}; --"
    );
    let job = job_yaml(
        &topic,
        &json_value("json"),
        "      consistency: exactly-once",
        "        interval_ms: 200",
        &insert_table(&table, &[("id", &mapping), ("body", "value->>'body'")]),
        "",
    );
    assert!(server.submit_yaml(&table, &job, &[]).success, "{}", server.output());
    let out = server.cli(&["start", &table]);
    assert!(!out.success);
    assert!(
        out.stderr.starts_with(
            "flowcli: the generated SQL does not fit the target: cannot insert multiple commands into a prepared \
             statement: a mapping, filter or filter_expression of the job ends the statement and starts another; \
             each must be one SQL expression"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(query_i64(&format!("SELECT count(*) FROM pg_tables WHERE tablename = '{victim}'")), 1);

    // Without the check the first batch fails the same way, and still runs nothing.
    produce(&topic, 1, id_messages(0..3));
    server.ok(&["start", &table, "--skip-explain"]);
    let status = server.wait_state(&table, "error", TIMEOUT);
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot insert multiple commands into a prepared statement"),
        "{status}"
    );
    assert_eq!(query_i64(&format!("SELECT count(*) FROM pg_tables WHERE tablename = '{victim}'")), 1);
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 0);
    assert!(stored_offsets(&table, &topic).is_empty());
}

#[test]
fn a_missing_target_table_or_column_fails_the_start_with_the_reason() {
    let topic = unique("nt");
    create_topic(&topic, 1);
    let server = Server::start();
    let table = unique("absent");
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    let out = server.cli(&["start", &table]);
    assert!(!out.success);
    assert_eq!(
        out.stderr.trim(),
        format!("flowcli: target.database.tables[0]: table \"public\".\"{table}\" does not exist")
    );
    assert_eq!(server.state(&table), "submitted");

    sql(&format!("CREATE TABLE {table} (id int)"));
    let out = server.cli(&["start", &table]);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "flowcli: target.database.tables[0].mapping.body: column \"body\" does not exist in table \"public\".\"{table}\""
        )
    );

    // A mapping PostgreSQL cannot assign is caught by the EXPLAIN check...
    sql(&format!("ALTER TABLE {table} ADD COLUMN body int"));
    let out = server.cli(&["start", &table]);
    assert!(
        out.stderr.starts_with(
            "flowcli: the generated SQL does not fit the target: column \"body\" is of type integer but expression is of type text"
        ),
        "{}",
        out.stderr
    );
    // ...unless skipped.
    let out = server.cli(&["start", &table, "--skip-explain"]);
    assert!(out.success, "{}", out.stderr);
}

#[test]
fn what_no_single_row_can_cause_stops_the_job_without_error_rows() {
    let topic = unique("dropped");
    let table = unique("dropped_t");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 1, id_messages(0..10));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "    error_limit: 1000");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 10, TIMEOUT).unwrap();
    // The target is dropped under the job: every row would fail, none is to blame.
    sql(&format!("DROP TABLE {table}"));
    produce(&topic, 1, id_messages(10..20));
    let status = server.wait_state(&table, "error", TIMEOUT);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("loading failed: relation") && message.contains("does not exist"), "{message}");
    assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 0);
    assert_eq!(stored_offsets(&table, &topic), vec![(0, 10)]);
}

/// A flow_offsets table made by something else, with a NULL offset: the start
/// fails with a reason naming the table (it once panicked the server's thread).
#[test]
fn a_null_stored_offset_fails_the_start_with_a_clear_reason() {
    let topic = unique("null_offset");
    let table = unique("null_offset_t");
    let schema = unique("null_offset_s");
    create_topic(&topic, 1);
    produce(&topic, 1, id_messages(0..3));
    sql(&format!(
        "CREATE TABLE {table} (id int, body text); CREATE SCHEMA {schema};
         CREATE TABLE {schema}.flow_offsets (job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL,
           next_offset bigint, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, topic, \"partition\"));
         INSERT INTO {schema}.flow_offsets (job, topic, \"partition\", next_offset) VALUES ('{table}', '{topic}', 0, NULL)"
    ));
    let server = Server::start();
    let job = simple_json_job(
        &topic,
        &table,
        "exactly-once",
        "        interval_ms: 200",
        &format!("    staging_schema: {schema}"),
    );
    assert!(server.submit_yaml(&table, &job, &[]).success);
    let out = server.cli(&["start", &table]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with(
            "flowcli: cannot read flow_offsets (\"partition\" must be integer, next_offset bigint, neither NULL): "
        ),
        "{}",
        out.stderr
    );
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 0);
    // The server is unharmed.
    assert!(server.cli(&["list"]).success);
    assert!(!server.output().contains("panicked"), "{}", server.output());
}

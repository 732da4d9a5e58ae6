//! Where a job starts reading: stored offsets, reset flags, offset gaps, EOF.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn count(table: &str) -> i64 {
    query_i64(&format!("SELECT count(*) FROM {table}"))
}

fn setup(partitions: i32) -> (String, String) {
    let topic = unique("off");
    let table = unique("off_t");
    create_topic(&topic, partitions);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    (topic, table)
}

#[test]
fn stop_at_eof_ends_in_success_with_every_message_loaded() {
    let (topic, table) = setup(3);
    produce(&topic, 3, id_messages(0..3000));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 500", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    // Blocks until the job ends, like FlowServer's start --stop-at-eof.
    let output = server.ok(&["start", &table, "--stop-at-eof"]);
    assert!(output.contains("success"), "{output}");
    assert_eq!(count(&table), 3000);
    assert_eq!(server.state(&table), "success");
}

#[test]
fn reset_flags_move_the_start() {
    let (topic, table) = setup(1);
    produce(&topic, 1, id_messages(0..100));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(count(&table), 100);

    // Earliest: everything again.
    server.ok(&["start", &table, "--stop-at-eof", "--reset-to-earliest"]);
    assert_eq!(count(&table), 200);

    // Latest: what was produced before the start is skipped.
    produce(&topic, 1, id_messages(100..150));
    server.ok(&["start", &table, "--reset-to-latest"]);
    produce(&topic, 1, id_messages(150..160));
    wait_count(&format!("SELECT count(*) FROM {table}"), 210, TIMEOUT).unwrap();
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table} WHERE id BETWEEN 100 AND 149")), 0);
    server.ok(&["stop", &table]);
    assert_eq!(stored_offsets(&table, &topic), vec![(0, 160)]);
}

#[test]
fn reset_to_timestamp_starts_at_the_first_message_at_or_after_it() {
    let (topic, table) = setup(1);
    let base = 1_700_000_000_000i64;
    for i in 0..20 {
        produce_at(&topic, 0, format!(r#"{{"id": {i}, "body": "t"}}"#).as_bytes(), base + i * 1000);
    }
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    // 2023-11-14T22:13:32.500Z is between messages 12 and 13.
    server.ok(&["start", &table, "--stop-at-eof", "--reset-to-timestamp", "2023-11-14T22:13:32.500Z"]);
    assert_eq!(
        query_strings(&format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {table}")),
        vec!["13,14,15,16,17,18,19".to_string()]
    );
    // Epoch milliseconds work too.
    sql(&format!("TRUNCATE {table}"));
    server.ok(&["start", &table, "--stop-at-eof", "--reset-to-timestamp", &(base + 18_000).to_string()]);
    assert_eq!(
        query_strings(&format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {table}")),
        vec!["18,19".to_string()]
    );
}

#[test]
fn an_offset_gap_is_an_error_unless_fallback_offset_says_where_to_go() {
    let (topic, table) = setup(1);
    produce(&topic, 1, id_messages(0..50));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    // As if the topic had been recreated: the stored offset is past the log's end.
    sql(&format!(
        "INSERT INTO public.flow_offsets (job, topic, partition, next_offset) VALUES ('{table}', '{topic}', 0, 5000)"
    ));
    let out = server.cli(&["start", &table]);
    assert!(!out.success);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "flowcli: offset gap on partition 0 of topic \"{topic}\": the stored offset 5000 is outside the available \
             offsets 0 to 50; set source.kafka.control.fallback_offset (earliest or latest) or start with \
             --reset-to-earliest or --reset-to-latest"
        )
    );
    assert_eq!(count(&table), 0);

    // With fallback_offset: earliest the job starts over from the log's start.
    let with_fallback = job
        .replace("      consistency: exactly-once", "      consistency: exactly-once\n      fallback_offset: earliest");
    let fallback_job = format!("{table}_fb");
    sql(&format!(
        "INSERT INTO public.flow_offsets (job, topic, partition, next_offset) VALUES ('{fallback_job}', '{topic}', 0, 5000)"
    ));
    assert!(server.submit_yaml(&fallback_job, &with_fallback, &[]).success);
    server.ok(&["start", &fallback_job, "--stop-at-eof"]);
    assert_eq!(count(&table), 50);
    assert_eq!(stored_offsets(&fallback_job, &topic), vec![(0, 50)]);

    // And latest: nothing old, only what comes next.
    let latest = job
        .replace("      consistency: exactly-once", "      consistency: exactly-once\n      fallback_offset: latest");
    let latest_job = format!("{table}_lt");
    sql(&format!(
        "INSERT INTO public.flow_offsets (job, topic, partition, next_offset) VALUES ('{latest_job}', '{topic}', 0, 5000)"
    ));
    assert!(server.submit_yaml(&latest_job, &latest, &[]).success);
    server.ok(&["start", &latest_job]);
    produce(&topic, 1, id_messages(1000..1005));
    wait_count(&format!("SELECT count(*) FROM {table} WHERE id >= 1000"), 5, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{:#}\n{}", server.status(&latest_job), server.output()));
    server.ok(&["stop", &latest_job]);
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table} WHERE id < 1000")), 50);
}

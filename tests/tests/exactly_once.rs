//! Exactly-once through crashes, stops and restarts, and the other consistency modes.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn kill_9_in_the_middle_of_a_load_loses_and_duplicates_nothing() {
    kill_9_in_the_middle_of_a_load("");
}

#[test]
fn kill_9_in_the_middle_of_a_load_loses_and_duplicates_nothing_through_librdkafka() {
    kill_9_in_the_middle_of_a_load(r#""KafkaFetch": "librdkafka""#);
}

fn kill_9_in_the_middle_of_a_load(server_config: &str) {
    let topic = unique("crash");
    let table = unique("crash_t");
    create_topic(&topic, 4);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    let total = 200_000;
    produce(&topic, 4, id_messages(0..total));

    let mut server = Server::start_with(server_config);
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200\n        max_count: 4000", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    // Kill while the load is under way: some batches committed, others not.
    wait_until("20k rows", TIMEOUT, || query_i64(&format!("SELECT count(*) FROM {table}")) >= 20_000);
    let before_kill = query_i64(&format!("SELECT count(*) FROM {table}"));
    assert!(before_kill < total, "the load finished before the kill; make it bigger");
    server.kill();

    // More messages arrive while flowserver is down.
    produce(&topic, 4, id_messages(total..total + 10_000));
    server.restart();
    // The job was running: it resumes by itself from the database's offsets.
    wait_count(&format!("SELECT count(*) FROM {table}"), total + 10_000, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), total + 10_000);
    assert_eq!(query_i64(&format!("SELECT min(id)::bigint FROM {table}")), 0);
    assert_eq!(query_i64(&format!("SELECT max(id)::bigint FROM {table}")), total + 10_000 - 1);
    let stored: i64 = stored_offsets(&table, &topic).iter().map(|(_, o)| o).sum();
    assert_eq!(stored, total + 10_000);
    assert_eq!(server.state(&table), "running");
    assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 0);
}

#[test]
fn stop_and_start_resume_where_the_last_batch_ended() {
    let topic = unique("resume");
    let table = unique("resume_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 2, id_messages(0..1000));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 1000, TIMEOUT).unwrap();
    server.ok(&["stop", &table]);
    assert_eq!(server.state(&table), "stopped");
    produce(&topic, 2, id_messages(1000..1500));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 1000, "a stopped job loads nothing");
    server.ok(&["start", &table]);
    wait_count(&format!("SELECT count(*) FROM {table}"), 1500, TIMEOUT).unwrap();
    assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), 1500);
}

#[test]
fn other_consistency_modes_keep_offsets_in_the_consumer_group() {
    for (mode, group_commits) in [("at-least-once", true), ("at-most-once", true), ("none", false)] {
        let topic = unique("mode");
        let table = unique("mode_t");
        create_topic(&topic, 2);
        sql(&format!("CREATE TABLE {table} (id int, body text)"));
        produce(&topic, 2, id_messages(0..600));
        let server = Server::start();
        let job = simple_json_job(&topic, &table, mode, "        interval_ms: 200", "");
        assert!(server.submit_yaml(&table, &job, &["--start"]).success, "{mode}");
        wait_count(&format!("SELECT count(*) FROM {table}"), 600, TIMEOUT).unwrap_or_else(|e| panic!("{mode}: {e}"));
        // The database records what was loaded (and counts it for error_limit)...
        wait_until(mode, TIMEOUT, || stored_offsets(&table, &topic) == vec![(0, 300), (1, 300)]);
        let group = format!("flowserver.{table}");
        if group_commits {
            wait_until(mode, TIMEOUT, || group_committed(&group, &topic, 2) == vec![300, 300]);
        }
        // Stop, produce more, start: the group's offsets decide where reading resumes.
        server.ok(&["stop", &table]);
        if !group_commits {
            // Auto-commit happens on a timer and on close; the close commits.
            wait_until(mode, TIMEOUT, || group_committed(&group, &topic, 2) == vec![300, 300]);
        }
        // ...but does not decide where these modes read.
        sql(&format!("UPDATE public.flow_offsets SET next_offset = 0 WHERE job = '{table}'"));
        produce(&topic, 2, id_messages(600..800));
        server.ok(&["start", &table]);
        wait_count(&format!("SELECT count(*) FROM {table}"), 800, TIMEOUT).unwrap_or_else(|e| panic!("{mode}: {e}"));
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 800, "{mode}");
        assert_eq!(query_i64(&format!("SELECT count(DISTINCT id) FROM {table}")), 800, "{mode}");
        server.ok(&["stop", &table]);
    }
}

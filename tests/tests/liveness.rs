//! A job that cannot read says why, and starts reading without waiting for
//! the consumer group: losing the broker (a private tansu, killed and
//! started again empty), the group join, reading ahead of it, two servers
//! sharing one exactly-once job, and a restart after kill -9.

use std::time::{Duration, Instant};

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn count(query: &str) -> i64 {
    query_i64(query)
}

fn wait_until(what: &str, timeout: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of `text` at level WARN or ERROR (the job log's format and the server's, colored).
fn warning_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains(" WARN") || l.contains("ERROR")).collect()
}

fn offset_gap(topic: &str, partition: i32, stored: i64, end: i64) -> String {
    format!(
        "offset gap on partition {partition} of topic \"{topic}\": the stored offset {stored} is outside the available \
         offsets 0 to {end}; set source.kafka.control.fallback_offset (earliest or latest) or start with \
         --reset-to-earliest or --reset-to-latest"
    )
}

/// Two exactly-once jobs read one topic of a private broker; the broker is
/// killed while they load, and comes back empty, where the topic is created
/// again with fewer messages. The job without `fallback_offset` stops with
/// the offset-gap error of a start; the one with `fallback_offset: earliest`
/// loads the new topic from its start, exactly once.
#[test]
fn losing_the_broker_is_reported_and_a_recreated_topic_is_an_offset_gap_or_the_fallback() {
    losing_the_broker("");
}

/// The same through librdkafka's fetch path (which must not fetch while the
/// broker is away: librdkafka 2.12 crashes on the answer of a broker that
/// came back without the topic).
#[test]
fn losing_the_broker_is_reported_and_a_recreated_topic_is_an_offset_gap_or_the_fallback_through_librdkafka() {
    losing_the_broker(r#""KafkaFetch": "librdkafka", "#);
}

fn losing_the_broker(server_config: &str) {
    let mut broker = PrivateBroker::start();
    let brokers = broker.address();
    let topic = unique("lost");
    create_topic_on(&brokers, &topic, 2);
    let total = 200_000;
    produce_with(&producer_on(&brokers), &topic, 2, id_messages(0..total));

    // Small fetches and batches: the load is under way, not over, when the broker goes.
    let server = Server::start_with(&format!(r#"{server_config}"FetchQueueMaxBytes": 4194304"#));
    let plain = unique("lost_t");
    let fallback = unique("lost_fb_t");
    for (table, control) in [(&plain, ""), (&fallback, "\n      fallback_offset: earliest")] {
        sql(&format!("CREATE TABLE {table} (id int, body text)"));
        let job =
            simple_json_job(&topic, table, "exactly-once", "        interval_ms: 100\n        max_count: 500", "")
                .replace(&kafka_brokers(), &brokers)
                .replace("      consistency: exactly-once", &format!("      consistency: exactly-once{control}"));
        assert!(server.submit_yaml(table, &job, &["--start"]).success);
    }
    wait_until("rows loaded by both jobs", TIMEOUT, || {
        [&plain, &fallback].iter().all(|t| count(&format!("SELECT count(*) FROM {t}")) >= 4000)
    });
    let log_at_kill = [server.job_log(&plain).len(), server.job_log(&fallback).len()];
    let output_at_kill = server.output().len();
    broker.kill();
    let killed = Instant::now();
    for table in [&plain, &fallback] {
        assert!(count(&format!("SELECT count(*) FROM {table}")) < total, "{table} loaded everything before the kill");
    }

    // Within 10 s both say so, in status and in its text form.
    let expected_start = "broker unreachable since ";
    for table in [&plain, &fallback] {
        let status = server.wait_for(table, Duration::from_secs(10), |s| {
            s["message"].as_str().is_some_and(|m| m.starts_with(expected_start))
        });
        assert!(killed.elapsed() <= Duration::from_secs(10), "{:?} to notice", killed.elapsed());
        assert_eq!(status["state"], "running");
        assert_eq!(status["waiting"], status["message"]);
        let message = status["message"].as_str().unwrap_or_default();
        // broker unreachable since 2026-12-04T19:31:47.377Z: <reason>
        let time = &message[expected_start.len()..];
        assert!(time.len() > 26 && &time[4..5] == "-" && &time[10..11] == "T" && &time[23..26] == "Z: ", "{message}");
        assert!(message.contains(&brokers), "the reason names the broker: {message}");
        let text = server.ok(&["status", table]);
        assert!(text.contains(&format!("\nwaiting: {expected_start}")), "{text}");
        let list = server.ok(&["list"]);
        assert!(list.lines().any(|l| l.starts_with(table.as_str()) && l.contains(" waiting ")), "{list}");
    }
    // Stay down a while: librdkafka and the fetcher retry many times a second.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(killed.elapsed()));
    let loaded_before: Vec<i64> =
        [&plain, &fallback].iter().map(|t| count(&format!("SELECT count(*) FROM {t}"))).collect();
    for (table, at_kill) in [&plain, &fallback].iter().zip(log_at_kill) {
        let log = server.job_log(table);
        let during = warning_lines(&log[at_kill..]);
        // The outage's start, and one line for the warnings (the next may come 30 s later).
        assert!(
            !during.is_empty() && during.len() <= 2,
            "{table}: {} warnings while down:\n{}",
            during.len(),
            during.join("\n")
        );
    }
    let output = server.output();
    let during = warning_lines(&output[output_at_kill..]);
    assert!(during.len() <= 4, "{} warnings in the server log while down:\n{}", during.len(), during.join("\n"));
    let stored = [stored_offsets(&plain, &topic), stored_offsets(&fallback, &topic)];
    for offsets in &stored {
        assert!(!offsets.is_empty() && offsets.iter().all(|&(_, o)| o > 10), "{offsets:?}");
    }

    // Back, empty; the topic again, with ten messages a partition.
    broker.restart();
    create_topic_on(&brokers, &topic, 2);
    produce_with(&producer_on(&brokers), &topic, 2, id_messages(1_000_000..1_000_020));

    let status = server.wait_state(&plain, "error", TIMEOUT);
    // The first partition with a stored offset is the one named; the job may
    // look before or after the ten messages are in.
    let (partition, offset) = stored[0][0];
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        [offset_gap(&topic, partition, offset, 10), offset_gap(&topic, partition, offset, 0)]
            .iter()
            .any(|m| m == message),
        "{message}"
    );
    assert_eq!(count(&format!("SELECT count(*) FROM {plain}")), loaded_before[0], "nothing loaded after the gap");
    assert_eq!(stored_offsets(&plain, &topic), stored[0]);

    wait_count(&format!("SELECT count(*) FROM {fallback} WHERE id >= 1000000"), 20, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.job_log(&fallback)));
    assert_eq!(server.state(&fallback), "running");
    assert_eq!(stored_offsets(&fallback, &topic), vec![(0, 10), (1, 10)]);
    // More of the new topic: loaded once, from where the fallback went on.
    produce_with(&producer_on(&brokers), &topic, 2, id_messages(2_000_000..2_000_020));
    wait_count(&format!("SELECT count(*) FROM {fallback} WHERE id >= 1000000"), 40, TIMEOUT).unwrap();
    assert_eq!(count(&format!("SELECT count(*) - count(DISTINCT id) FROM {fallback}")), 0, "no duplicates");
    assert_eq!(stored_offsets(&fallback, &topic), vec![(0, 20), (1, 20)]);
    let status = server.wait_for(&fallback, TIMEOUT, |s| s["waiting"] == "");
    assert_eq!(status["message"], "");
}

/// A job that is not exactly-once starts from the group's committed offsets:
/// it waits for the join (half of `session.timeout.ms` on tansu) and says so.
#[test]
fn a_job_waiting_for_the_group_join_says_so() {
    let topic = unique("join");
    let table = unique("join_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 2, id_messages(0..100));
    let server = Server::start();
    let job = simple_json_job(&topic, &table, "at-least-once", "        interval_ms: 100", "")
        .replace("session.timeout.ms: 2000", "session.timeout.ms: 10000");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    let group = format!("flowserver.{table}");
    let status = server.wait_for(&table, TIMEOUT, |s| s["waiting"] != "" || s["rows_loaded"] != 0);
    assert_eq!(status["waiting"], format!("waiting: joining consumer group {group}"));
    assert_eq!(status["message"], status["waiting"]);
    assert_eq!(status["rows_loaded"], 0);
    assert!(server.ok(&["list"]).lines().any(|l| l.starts_with(table.as_str()) && l.contains(" waiting ")));
    wait_count(&format!("SELECT count(*) FROM {table}"), 100, TIMEOUT).unwrap();
    let status = server.wait_for(&table, TIMEOUT, |s| s["waiting"] == "");
    assert_eq!(status["state"], "running");
    // The recent rate, sampled once a second.
    server.wait_for(&table, Duration::from_secs(5), |s| s["rows_per_second"].as_f64().is_some_and(|r| r > 0.0));
    server.ok(&["stop", &table]);
    let status = server.status(&table);
    assert!(status["rows_per_second"].as_f64().is_some_and(|r| r > 0.0), "the run's rate after it: {status}");
}

/// The commits the job's batches made, and the "joined the consumer group"
/// line, in the order the job log has them.
fn commits_before_join(log: &str) -> usize {
    log.lines()
        .take_while(|l| !l.contains("joined the consumer group"))
        .filter(|l| l.contains("batch committed"))
        .count()
}

/// An exactly-once job reads at once, before the (slow) group join; once it
/// is a member, the group holds the offsets the database holds, though
/// nothing was loaded after the join.
#[test]
fn an_exactly_once_job_loads_before_the_group_join_and_the_group_then_gets_its_offsets() {
    let topic = unique("ahead");
    let table = unique("ahead_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 2, id_messages(0..1000));
    let server = Server::start();
    // tansu answers a join after half of session.timeout.ms: 5 s.
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 100", "")
        .replace("session.timeout.ms: 2000", "session.timeout.ms: 10000");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), 1000, TIMEOUT).unwrap();
    let group = format!("flowserver.{table}");
    wait_until("the group's offsets", TIMEOUT, || group_committed(&group, &topic, 2) == vec![500, 500]);
    let log = server.job_log(&table);
    assert!(log.contains("joined the consumer group"), "{log}");
    assert!(commits_before_join(&log) > 0, "nothing loaded before the join:\n{log}");
    assert_eq!(stored_offsets(&table, &topic), vec![(0, 500), (1, 500)]);
    assert_eq!(count(&format!("SELECT count(DISTINCT id) FROM {table}")), 1000);
    // Partitions kept through the join go on: more messages load once.
    produce(&topic, 2, id_messages(1000..1200));
    wait_count(&format!("SELECT count(*) FROM {table}"), 1200, TIMEOUT).unwrap();
    assert_eq!(count(&format!("SELECT count(DISTINCT id) FROM {table}")), 1200);
    wait_until("the group's offsets", TIMEOUT, || group_committed(&group, &topic, 2) == vec![600, 600]);
}

/// Two flowserver processes run the same exactly-once job (same name,
/// database and consumer group) and start at the same moment: both read
/// every partition ahead of the join, the offsets' compare-and-set settles
/// each race, and the group then splits the partitions.
#[test]
fn two_servers_sharing_one_exactly_once_job_load_every_message_once() {
    let topic = unique("shared");
    let table = unique("shared_t");
    create_topic(&topic, 4);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 4, id_messages(0..40_000));
    let servers = [Server::start(), Server::start()];
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 100\n        max_count: 1000", "");
    for server in &servers {
        assert!(server.submit_yaml(&table, &job, &[]).success);
    }
    std::thread::scope(|scope| {
        for server in &servers {
            let table = &table;
            scope.spawn(move || server.ok(&["start", table]));
        }
    });
    produce(&topic, 4, id_messages(40_000..60_000));
    wait_count(&format!("SELECT count(*) FROM {table}"), 60_000, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", servers[0].job_log(&table), servers[1].job_log(&table)));
    assert_eq!(count(&format!("SELECT count(DISTINCT id) FROM {table}")), 60_000);
    assert_eq!(count(&format!("SELECT min(id)::bigint FROM {table}")), 0);
    assert_eq!(count(&format!("SELECT max(id)::bigint FROM {table}")), 59_999);
    assert_eq!(stored_offsets(&table, &topic), (0..4).map(|p| (p, 15_000)).collect::<Vec<_>>());
    // Each server ends up reading part of the topic, and the group has what the database has.
    for server in &servers {
        let status = server.wait_for(&table, TIMEOUT, |s| {
            s["partitions"].as_array().is_some_and(|p| p.iter().filter(|p| p["end_offset"] != -1).count() == 2)
        });
        assert_eq!(status["state"], "running");
    }
    let group = format!("flowserver.{table}");
    wait_until("the group's offsets", TIMEOUT, || group_committed(&group, &topic, 4) == vec![15_000; 4]);
    assert_eq!(count(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 0);
    // Still exactly once: one more round after the group settled.
    produce(&topic, 4, id_messages(60_000..64_000));
    wait_count(&format!("SELECT count(*) FROM {table}"), 64_000, TIMEOUT).unwrap();
    assert_eq!(count(&format!("SELECT count(DISTINCT id) FROM {table}")), 64_000);
}

/// After kill -9 the dead member stays in the group until its session times
/// out, so the restarted job reads ahead of a slow join: what it commits
/// then is neither lost nor loaded twice.
#[test]
fn after_kill_9_the_restarted_job_reads_ahead_of_the_join_and_loads_exactly_once() {
    let topic = unique("rekill");
    let table = unique("rekill_t");
    create_topic(&topic, 4);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    let total = 200_000;
    produce(&topic, 4, id_messages(0..total));
    let mut server = Server::start();
    let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200\n        max_count: 4000", "")
        .replace("session.timeout.ms: 2000", "session.timeout.ms: 10000");
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_until("20k rows", TIMEOUT, || count(&format!("SELECT count(*) FROM {table}")) >= 20_000);
    assert!(
        count(&format!("SELECT count(*) FROM {table}")) < total,
        "the load finished before the kill; make it bigger"
    );
    server.kill();
    let log_before = server.job_log(&table).len();
    produce(&topic, 4, id_messages(total..total + 10_000));
    server.restart();
    wait_count(&format!("SELECT count(*) FROM {table}"), total + 10_000, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    assert_eq!(count(&format!("SELECT count(DISTINCT id) FROM {table}")), total + 10_000);
    let stored: i64 = stored_offsets(&table, &topic).iter().map(|(_, o)| o).sum();
    assert_eq!(stored, total + 10_000);
    let log = server.job_log(&table);
    let after_restart = &log[log_before..];
    assert!(after_restart.contains("reading partitions ahead of the consumer group join"), "{after_restart}");
    assert!(
        commits_before_join(after_restart) > 0,
        "the restarted job loaded nothing before the join:\n{after_restart}"
    );
}

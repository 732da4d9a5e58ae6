//! `error_limit` is judged over the job's whole span (every message since its
//! offsets were last reset), so the same messages give the same loaded rows,
//! error rows and final state whatever the batch boundaries and restarts.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// What a run left behind, for comparing runs of the same messages.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    ids: Vec<i32>,
    error_offsets: Vec<(i32, i64)>,
    stored: Vec<(i32, i64)>,
    state: String,
}

fn outcome(server: &Server, job: &str, topic: &str, table: &str) -> Outcome {
    let ids =
        pg().query(&format!("SELECT id FROM {table} ORDER BY id"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let error_offsets = pg()
        .query("SELECT \"partition\", \"offset\" FROM public.flow_errors WHERE job = $1 ORDER BY 1, 2", &[&job])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Outcome { ids, error_offsets, stored: stored_offsets(job, topic), state: server.state(job) }
}

/// `{"id": i}`, or a value the integer column refuses at each of `bad`.
fn messages(count: i64, bad: impl Fn(i64) -> bool) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            if bad(i) { format!(r#"{{"id": "bad {i}"}}"#) } else { format!(r#"{{"id": {i}, "body": "m{i}"}}"#) }
                .into_bytes()
        })
        .collect()
}

fn prepare(prefix: &str, partitions: i32) -> (String, String) {
    let topic = unique(prefix);
    let table = unique(&format!("{prefix}_t"));
    create_topic(&topic, partitions);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    (topic, table)
}

#[test]
fn a_percentage_counts_over_the_job_so_a_bad_message_alone_in_a_batch_does_not_stop_it() {
    let (topic, table) = prepare("pct", 4);
    let total = 20_000;
    let bad = [3_001, 7_502, 11_003, 15_004, 19_999];
    produce(&topic, 4, messages(total, |i| bad.contains(&i)));
    let server = Server::start();
    let job = simple_json_job(
        &topic,
        &table,
        "exactly-once",
        "        interval_ms: 500\n        max_count: 5000",
        "    error_limit: \"1%\"",
    );
    assert!(server.submit_yaml(&table, &job, &["--start"]).success);
    wait_count(&format!("SELECT count(*) FROM {table}"), total - 5, TIMEOUT).unwrap();
    wait_count(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'"), 5, TIMEOUT).unwrap();

    // A quiet topic: one bad message arrives alone, so it is all of its batch.
    produce_at(&topic, 2, br#"{"id": "alone"}"#, 1_700_000_000_000);
    wait_count(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'"), 6, TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.state(&table), "running", "{}", server.status(&table));
    produce_at(&topic, 1, br#"{"id": 123456}"#, 1_700_000_000_000);
    wait_count(&format!("SELECT count(*) FROM {table} WHERE id = 123456"), 1, TIMEOUT).unwrap();
    let stored: i64 = stored_offsets(&table, &topic).iter().map(|(_, o)| o).sum();
    assert_eq!(stored, total + 2);
    // The counts behind the limit are the job's: every message, every rejection.
    assert_eq!(
        query_i64(&format!("SELECT sum(messages)::bigint FROM public.flow_offsets WHERE job = '{table}'")),
        total + 2
    );
    assert_eq!(query_i64(&format!("SELECT sum(rejected)::bigint FROM public.flow_offsets WHERE job = '{table}'")), 6);
    assert_eq!(server.state(&table), "running");
}

/// One partition, rejections at offsets 100, 700, 1300, 1900 and 2500, limit
/// 3: the fourth crosses it, at offset 1900, however the messages are batched.
const COUNT_TOTAL: i64 = 3000;
const COUNT_BAD: [i64; 5] = [100, 700, 1300, 1900, 2500];

fn count_limit_job(topic: &str, table: &str, batch: &str) -> String {
    simple_json_job(topic, table, "exactly-once", batch, "    error_limit: 3")
}

fn expected_count_outcome() -> Outcome {
    Outcome {
        ids: (0..1900).filter(|i| !COUNT_BAD.contains(&(*i as i64))).collect(),
        error_offsets: vec![(0, 100), (0, 700), (0, 1300), (0, 1900)],
        stored: vec![(0, 1901)],
        state: "error".into(),
    }
}

fn expected_count_message() -> String {
    "error_limit exceeded: 4 of 1901 messages rejected since the job's offsets were last reset (limit 3); \
     loaded up to partition 0 offset 1900, rejected there: invalid input syntax for type integer: \"bad 1900\"; \
     rejected messages are in \"public\".flow_errors"
        .to_string()
}

#[test]
fn a_count_is_crossed_at_the_same_message_at_any_interval_ms_and_max_count() {
    let server = Server::start();
    for batch in
        ["        interval_ms: 2000", "        interval_ms: 20", "        interval_ms: 300\n        max_count: 37"]
    {
        let (topic, table) = prepare("cnt", 1);
        produce(&topic, 1, messages(COUNT_TOTAL, |i| COUNT_BAD.contains(&i)));
        assert!(server.submit_yaml(&table, &count_limit_job(&topic, &table, batch), &["--start"]).success);
        let status = server.wait_state(&table, "error", TIMEOUT);
        assert_eq!(status["message"], expected_count_message(), "batch {batch:?}");
        assert_eq!(outcome(&server, &table, &topic, &table), expected_count_outcome(), "batch {batch:?}");
    }
}

#[test]
fn a_count_is_crossed_at_the_same_message_across_a_stop_and_a_kill() {
    let (topic, table) = prepare("cnt_restart", 1);
    let all = messages(COUNT_TOTAL, |i| COUNT_BAD.contains(&i));
    // The first thousand, loaded by a run that ends at the end of the topic.
    produce(&topic, 1, all[..1000].to_vec());
    let mut server = Server::start();
    let job = count_limit_job(&topic, &table, "        interval_ms: 200\n        max_count: 10");
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(server.state(&table), "success");
    assert_eq!(query_i64(&format!("SELECT count(*) FROM public.flow_errors WHERE job = '{table}'")), 2);

    // The rest, with flowserver killed in the middle of the next run.
    produce(&topic, 1, all[1000..].to_vec());
    server.ok(&["start", &table]);
    wait_until("rows past 1100", TIMEOUT, || query_i64(&format!("SELECT count(*) FROM {table}")) > 1100);
    server.kill();
    server.restart();
    let status = server.wait_state(&table, "error", TIMEOUT);
    assert_eq!(status["message"], expected_count_message());
    assert_eq!(outcome(&server, &table, &topic, &table), expected_count_outcome());
}

#[test]
fn a_percentage_is_crossed_at_the_same_message_whatever_the_batches() {
    // Healthy for 2000 messages, then every fourth is bad: 5 % is crossed
    // where the rejections first exceed 5 % of max(messages read, 1000).
    let total = 4000;
    let bad = |i: i64| i >= 2000 && i % 4 == 0;
    let mut rejected = 0;
    let mut crossing = None;
    for i in 0..total {
        if bad(i) {
            rejected += 1;
            if rejected * 100 > 5 * (i + 1).max(1000) {
                crossing = Some(i);
                break;
            }
        }
    }
    let crossing = crossing.expect("the data crosses the limit");
    let expected = Outcome {
        ids: (0..crossing).filter(|&i| !bad(i)).map(|i| i as i32).collect(),
        error_offsets: (0..=crossing).filter(|&i| bad(i)).map(|i| (0, i)).collect(),
        stored: vec![(0, crossing + 1)],
        state: "error".into(),
    };
    let server = Server::start();
    for batch in ["        interval_ms: 1500", "        interval_ms: 20\n        max_count: 53"] {
        let (topic, table) = prepare("pct_cross", 1);
        produce(&topic, 1, messages(total, bad));
        let job = simple_json_job(&topic, &table, "exactly-once", batch, "    error_limit: \"5%\"");
        assert!(server.submit_yaml(&table, &job, &["--start"]).success);
        server.wait_state(&table, "error", TIMEOUT);
        assert_eq!(outcome(&server, &table, &topic, &table), expected, "batch {batch:?}");
    }
}

#[test]
fn offsets_tables_of_an_older_flowserver_are_upgraded_in_place_and_resume() {
    let (topic, table) = prepare("upgrade", 1);
    let schema = unique("old_schema");
    // flow_offsets as flowserver wrote it before it counted messages.
    sql(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.flow_offsets (job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL,
           next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (job, topic, \"partition\"));
         INSERT INTO {schema}.flow_offsets (job, topic, \"partition\", next_offset) VALUES ('{table}', '{topic}', 0, 40);"
    ));
    produce(&topic, 1, id_messages(0..100));
    let server = Server::start();
    let job = simple_json_job(
        &topic,
        &table,
        "exactly-once",
        "        interval_ms: 200",
        &format!("    staging_schema: {schema}\n    error_limit: 3"),
    );
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(server.state(&table), "success");
    assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), 60);
    assert_eq!(query_i64(&format!("SELECT min(id)::bigint FROM {table}")), 40);
    assert_eq!(query_i64(&format!("SELECT next_offset FROM {schema}.flow_offsets WHERE job = '{table}'")), 100);
    assert_eq!(query_i64(&format!("SELECT messages FROM {schema}.flow_offsets WHERE job = '{table}'")), 60);
}

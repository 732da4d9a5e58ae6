//! Poison messages: whatever one message holds, it becomes an error row with
//! its raw bytes and the reason, and the rest of its batch loads.

use flowserver_tests::*;

#[test]
fn a_corpus_of_poison_messages_in_one_batch_becomes_error_rows_and_the_rest_loads() {
    let topic = unique("poison");
    let table = unique("poison_t");
    create_topic(&topic, 1);
    sql(&format!(
        "CREATE TABLE {table} (id int, b boolean, d date, ts timestamptz, u uuid, n numeric(6,2), f float8,
           j jsonb, body text)"
    ));
    let good = |id: i64| format!(r#"{{"id": {id}, "b": true, "d": "2026-01-02", "body": "good {id}"}}"#).into_bytes();
    let deep_open = "[".repeat(100_000).into_bytes();
    let deep_balanced = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let deep_object = format!("{{\"id\": 1, \"j\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let big_body = "x".repeat(10 << 20);
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("100k nested [", deep_open),
        ("100k nested [] balanced", deep_balanced),
        ("100k nested array in a jsonb field", deep_object),
        ("not an int", br#"{"id": "abc"}"#.to_vec()),
        ("int overflow", br#"{"id": 99999999999}"#.to_vec()),
        ("fraction into int", br#"{"id": 1.5}"#.to_vec()),
        ("not a bool", br#"{"id": 1, "b": "maybe"}"#.to_vec()),
        ("bad date", br#"{"id": 1, "d": "2026-13-45"}"#.to_vec()),
        ("bad timestamp", br#"{"id": 1, "ts": "yesterday at noon"}"#.to_vec()),
        ("bad uuid", br#"{"id": 1, "u": "zzz"}"#.to_vec()),
        ("numeric overflow", br#"{"id": 1, "n": 123456789}"#.to_vec()),
        ("float out of range", br#"{"id": 1, "f": 1e400}"#.to_vec()),
        ("NUL escape in text", br#"{"id": 1, "body": "a\u0000b"}"#.to_vec()),
        ("NUL escape into jsonb", br#"{"id": 1, "j": {"k": "a\u0000b"}}"#.to_vec()),
        ("raw NUL byte", b"{\"id\": 1, \"body\": \"a\x00b\"}".to_vec()),
        ("invalid UTF-8", b"{\"id\": 1, \"body\": \"\xff\xfe\"}".to_vec()),
        ("truncated", br#"{"id": 1, "body": "#.to_vec()),
        ("empty", Vec::new()),
    ];
    let mut messages = Vec::new();
    let mut poison_offsets = Vec::new();
    for (i, (_, payload)) in poison.iter().enumerate() {
        messages.push(good(i as i64 * 2));
        poison_offsets.push(messages.len() as i64);
        messages.push(payload.clone());
    }
    let big_id = 1_000_000;
    messages.push(format!(r#"{{"id": {big_id}, "body": "{big_body}"}}"#).into_bytes());
    messages.push(good(1_000_001));
    let total = messages.len() as i64;
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", "20000000")
        .set("linger.ms", "50")
        .create()
        .expect("producer");
    produce_with(&producer, &topic, 1, messages.clone());

    let server = Server::start();
    let mapping = [
        ("id", "(value->>'id')::int"),
        ("b", "(value->>'b')::boolean"),
        ("d", "(value->>'d')::date"),
        ("ts", "(value->>'ts')::timestamptz"),
        ("u", "(value->>'u')::uuid"),
        ("n", "(value->>'n')::numeric(6,2)"),
        ("f", "(value->>'f')::float8"),
        ("j", "(value->'j')::jsonb"),
        ("body", "value->>'body'"),
    ];
    for (kind, batch) in
        [("json", "        interval_ms: 2000\n        max_count: 100000"), ("jsonb", "        interval_ms: 200")]
    {
        let job_name = format!("{table}_{kind}");
        sql(&format!("TRUNCATE {table}"));
        let job = job_yaml(
            &topic,
            &json_value(kind),
            "      consistency: exactly-once",
            batch,
            &insert_table(&table, &mapping),
            "",
        );
        assert!(server.submit_yaml(&job_name, &job, &[]).success);
        let out = server.cli(&["start", &job_name, "--stop-at-eof"]);
        assert!(out.success, "{kind}: {}\n{}", out.stderr, server.output());
        let status = server.status(&job_name);
        assert_eq!(status["state"], "success", "{kind}: {status:#}");

        // Every good message loaded, the 10 MB one whole.
        let good_rows = total - poison.len() as i64;
        assert_eq!(query_i64(&format!("SELECT count(*) FROM {table}")), good_rows, "{kind}");
        assert_eq!(
            query_i64(&format!("SELECT length(body)::bigint FROM {table} WHERE id = {big_id}")),
            big_body.len() as i64,
            "{kind}"
        );
        // Every poison message kept with its raw bytes and a reason.
        let rows = pg()
            .query(
                "SELECT \"offset\", reason, raw FROM public.flow_errors WHERE job = $1 ORDER BY \"offset\"",
                &[&job_name],
            )
            .unwrap();
        let kept: Vec<(i64, String, Option<Vec<u8>>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(kept.iter().map(|k| k.0).collect::<Vec<_>>(), poison_offsets, "{kind}: {kept:?}");
        for ((name, payload), (offset, reason, raw)) in poison.iter().zip(&kept) {
            assert!(!reason.is_empty(), "{kind} {name} at {offset}: no reason");
            if payload.is_empty() {
                assert!(raw.as_deref().is_none_or(<[u8]>::is_empty), "{kind} {name}");
            } else {
                assert_eq!(raw.as_deref(), Some(payload.as_slice()), "{kind} {name}: raw bytes");
            }
        }
        let reason_of = |name: &str| {
            let index = poison.iter().position(|(n, _)| *n == name).unwrap();
            kept[index].1.clone()
        };
        assert_eq!(reason_of("100k nested ["), "stack depth limit exceeded", "{kind}");
        assert_eq!(reason_of("not an int"), "invalid input syntax for type integer: \"abc\"", "{kind}");
        assert_eq!(stored_offsets(&job_name, &topic), vec![(0, total)], "{kind}");
        assert_eq!(status["rows_rejected"], poison.len(), "{kind}");
    }
    // Nothing of the corpus stopped the server.
    assert!(server.cli(&["list"]).success);
}

#[test]
fn poison_csv_messages_become_error_rows_and_the_rest_loads() {
    let topic = unique("poison_csv");
    let table = unique("poison_csv_t");
    create_topic(&topic, 1);
    sql(&format!("CREATE TABLE {table} (id int, note text, amount numeric(8,2))"));
    let many_fields = format!("4,x{}", ",".repeat(100_000)).into_bytes();
    let messages: Vec<(bool, Vec<u8>)> = vec![
        (true, b"1,first,1.50".to_vec()),
        (false, b"\xff\xfe,x,1".to_vec()),
        (false, b"2,a\x00b,1".to_vec()),
        (false, b"3,\"unterminated,1".to_vec()),
        (false, b"99999999999,x,1".to_vec()),
        (false, b"5,x,1e999".to_vec()),
        (false, many_fields),
        (false, b"6,\xc3\x28,1".to_vec()),
        (true, b"7,last,2".to_vec()),
    ];
    produce(&topic, 1, messages.iter().map(|(_, m)| m.clone()));
    let job = job_yaml(
        &topic,
        "      csv:
        columns:
          - name: id
            type: int
          - name: note
            type: text
          - name: amount
            type: numeric(8,2)",
        "      consistency: exactly-once",
        "        interval_ms: 1000",
        &insert_table(&table, &[("id", "id"), ("note", "note"), ("amount", "amount")]),
        "",
    );
    let server = Server::start();
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    assert_eq!(server.state(&table), "success");
    assert_eq!(query_strings(&format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {table}")), vec!["1,7"]);
    let kept: Vec<(i64, Vec<u8>)> = pg()
        .query("SELECT \"offset\", raw FROM public.flow_errors WHERE job = $1 ORDER BY \"offset\"", &[&table])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i64, Vec<u8>)> =
        messages.iter().enumerate().filter(|(_, (good, _))| !good).map(|(i, (_, m))| (i as i64, m.clone())).collect();
    assert_eq!(kept, expected);
    assert_eq!(stored_offsets(&table, &topic), vec![(0, messages.len() as i64)]);
}

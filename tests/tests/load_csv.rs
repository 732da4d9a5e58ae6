//! CSV from Kafka: FlowServer's documented example, with PostgreSQL's CSV rules.

use flowserver_tests::*;

#[test]
fn csv_messages_load_with_the_documented_options() {
    let topic = unique("csv");
    let table = unique("csv_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (customer int, month int, cost decimal(9,2), tax decimal(7,2), note text)"));
    let messages: Vec<Vec<u8>> = vec![
        b"1&2&10.50&hello".to_vec(),
        b"2&3&'1000.00'&'quoted & delimited'\r\n".to_vec(),
        b"3&4&NULL&'NULL'".to_vec(),
        b"4&5&7&".to_vec(),
        b"5&6&1.005&x&extra".to_vec(),
        b"6&13&1&x".to_vec(),
    ];
    produce(&topic, 2, messages.clone());
    let job = job_yaml(
        &topic,
        "      csv:
        columns:
          - name: cust_id
            type: int
          - name: month
            type: int
          - name: expense
            type: decimal(9,2)
          - name: note
            type: text
        delimiter: '&'
        quote: \"'\"
        null_string: 'NULL'",
        "      consistency: exactly-once",
        "        interval_ms: 300",
        &insert_table(
            &table,
            &[
                ("customer", "cust_id"),
                ("month", "month"),
                ("cost", "expense"),
                ("tax", "expense * .25"),
                ("note", "note"),
            ],
        ),
        "",
    );
    let server = Server::start();
    assert!(server.submit_yaml(&table, &job, &[]).success);
    server.ok(&["start", &table, "--stop-at-eof"]);
    let rows = query_strings(&format!(
        "SELECT concat_ws('|', customer, month, coalesce(cost::text, 'null'), coalesce(tax::text, 'null'), coalesce(note, 'null')) \
         FROM {table} ORDER BY customer"
    ));
    assert_eq!(
        rows,
        vec![
            "1|2|10.50|2.63|hello",
            "2|3|1000.00|250.00|quoted & delimited",
            "3|4|null|null|NULL",
            "4|5|7.00|1.75|",
            "6|13|1.00|0.25|x",
        ]
    );
    let errors = query_strings(&format!(
        "SELECT concat_ws('|', partition, \"offset\", reason, encode(raw, 'escape')) FROM public.flow_errors WHERE job = '{table}'"
    ));
    assert_eq!(
        errors,
        vec![format!("0|2|extra data after last expected column: 5 fields, 4 columns|5&6&1.005&x&extra")]
    );
}

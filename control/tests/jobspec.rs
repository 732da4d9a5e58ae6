//! Job files end to end: the documentation's examples, full valid jobs, and one
//! test per error form, each asserting the whole message.

use std::num::NonZeroU64;
use std::time::Duration;

use flowserver_control::jobspec::{
    BatchLimits, Consistency, CsvColumn, CsvSpec, ErrorLimit, FallbackOffset, JobConfig, JobFileError, JsonColumnType,
    MappingExpr, Newline, SourceFormatSpec, TargetTable, WriteMode, parse_job_bytes, parse_job_file,
};

fn parse(name: &str, text: &str) -> JobConfig {
    match parse_job_file(name, text) {
        Ok(config) => config,
        Err(error) => panic!("{name} should be valid: {error}"),
    }
}

fn error(text: &str) -> String {
    match parse_job_file("job.yaml", text) {
        Ok(config) => panic!("should be invalid: {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn json_cast(path: &[&str], path_operator: bool, cast: &str) -> MappingExpr {
    MappingExpr::JsonCast { column: "value".to_owned(), path: strings(path), path_operator, cast: cast.to_owned() }
}

/// A valid job laid out so that the keys the error tests change sit on known
/// lines: `kafka` 3, `value` 7, `json` 8, `consistency` 12, `interval_ms` 15,
/// `error_limit` 22.
const BASE: &str = "\
version: v1.0
source:
  kafka:
    brokers:
      - kafka_host:9092
    topic: orders
    value:
      json:
        column: {name: value, type: json}
    control:
      fallback_offset: earliest
      consistency: exactly-once
    task:
      batch_size:
        interval_ms: 1000
target:
  database:
    host: localhost
    port: 5432
    user: gpadmin
    dbname: testdb
    error_limit: 5
    tables:
    - table: orders_detail
      schema: public
      mapping:
        name: (value->>'name')::text
        qty: (value->>'qty')::int
";

/// `BASE` with one line replaced (1-based); an empty replacement removes it.
fn base_with(line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    assert!(line >= 1 && line <= lines.len(), "line {line} out of range");
    if replacement.is_empty() {
        lines.remove(line - 1);
    } else {
        lines[line - 1] = replacement;
    }
    lines.join("\n") + "\n"
}

// The documentation's examples.

#[test]
fn example_a_rabbitmq_is_not_supported_yet() {
    let message = parse_job_file("rabbitmq_data.yaml", include_str!("jobfiles/example_a_rabbitmq.yaml"))
        .expect_err("rabbitmq")
        .to_string();
    assert_eq!(message, "rabbitmq_data.yaml: source.rabbitmq (line 3): not supported yet: source.rabbitmq");
}

#[test]
fn example_b_avro_is_not_supported_yet() {
    let message =
        parse_job_file("kafka_data.yaml", include_str!("jobfiles/example_b_avro.yaml")).expect_err("avro").to_string();
    assert_eq!(
        message,
        "kafka_data.yaml: source.kafka.value.avro (line 8): not supported yet: source.kafka.value.avro"
    );
}

#[test]
fn example_c_merge_is_not_supported_yet() {
    let error = parse_job_file("orders.yaml", include_str!("jobfiles/example_c_two_tables.yaml")).expect_err("merge");
    assert_eq!(
        error,
        JobFileError {
            file: "orders.yaml".to_owned(),
            path: "target.database.tables[1].mode.merge".to_owned(),
            line: Some(34),
            reason: "not supported yet: target.database.tables[1].mode.merge".to_owned(),
        }
    );
    assert_eq!(
        error.to_string(),
        "orders.yaml: target.database.tables[1].mode.merge (line 34): \
         not supported yet: target.database.tables[1].mode.merge"
    );
}

#[test]
fn example_b_as_json_with_insert() {
    let config = parse("kafka_data.yaml", include_str!("jobfiles/example_b_json_insert.yaml"));
    assert_eq!(config.source.format, SourceFormatSpec::Json { column: "value".to_owned(), kind: JsonColumnType::Json });
    assert_eq!(config.source.brokers, ["kafka_host:9092"]);
    assert_eq!(config.source.consistency, Consistency::ExactlyOnce);
    assert_eq!(config.source.batch, BatchLimits { interval: Duration::from_secs(1), max_count: None });
    assert_eq!(config.target.port, 15432);
    assert_eq!(config.target.error_limit, ErrorLimit::Count(5));
    assert_eq!(config.target.staging_schema, "public");
    assert_eq!(
        config.target.tables,
        [TargetTable {
            schema: Some("public".to_owned()),
            table: "data_from_kafka".to_owned(),
            mode: WriteMode::Insert,
            mapping: vec![
                ("name".to_owned(), json_cast(&["name"], false, "text")),
                ("qty".to_owned(), json_cast(&["qty"], false, "int")),
            ],
            filter: None,
        }]
    );
}

#[test]
fn example_c_with_two_inserts() {
    let config = parse("orders.yaml", include_str!("jobfiles/example_c_inserts.yaml"));
    let tables: Vec<(&str, WriteMode, usize)> =
        config.target.tables.iter().map(|table| (table.table.as_str(), table.mode, table.mapping.len())).collect();
    assert_eq!(tables, [("orders_detail", WriteMode::Insert, 2), ("orders_summary", WriteMode::Insert, 2)]);
}

// Full valid jobs.

#[test]
fn full_json_job() {
    let config = parse("full_json.yaml", include_str!("jobfiles/full_json.yaml"));
    let source = &config.source;
    assert_eq!(source.brokers, ["kafka1:9092", "[::1]:9093"]);
    assert_eq!(source.topic, "orders.v2");
    assert_eq!(source.format, SourceFormatSpec::Json { column: "value".to_owned(), kind: JsonColumnType::Jsonb });
    assert_eq!(source.consistency, Consistency::AtLeastOnce);
    assert_eq!(source.fallback_offset, Some(FallbackOffset::Latest));
    assert_eq!(source.batch, BatchLimits { interval: Duration::from_millis(250), max_count: NonZeroU64::new(10_000) });
    assert_eq!(
        source.properties,
        [
            ("group.id".to_owned(), "orders-loader".to_owned()),
            ("fetch.min.bytes".to_owned(), "1".to_owned()),
            ("enable.partition.eof".to_owned(), "false".to_owned()),
        ]
    );

    let target = &config.target;
    assert_eq!(target.host, "whpg-coordinator");
    assert_eq!(target.port, 15432);
    assert_eq!(target.user, "loader");
    assert_eq!(target.password.as_deref(), Some("0123"));
    assert_eq!(target.dbname, "sales");
    assert_eq!(target.staging_schema, "flow");
    assert_eq!(target.error_limit, ErrorLimit::Percent(10));
    assert_eq!(target.filter_expression.as_deref(), Some("(value->>'qty')::int > 0"));
    let table = &target.tables[0];
    assert_eq!(table.schema.as_deref(), Some("public"));
    assert_eq!(table.filter.as_deref(), Some("value->>'name' <> 'test'"));
    assert_eq!(
        table.mapping,
        [
            ("id".to_owned(), json_cast(&["order", "id"], true, "bigint")),
            (
                "name".to_owned(),
                MappingExpr::JsonText { column: "value".to_owned(), path: strings(&["name"]), path_operator: false }
            ),
            ("qty".to_owned(), json_cast(&["qty"], false, "int")),
            ("price".to_owned(), json_cast(&["price"], false, "numeric(9,2)")),
            ("raw".to_owned(), MappingExpr::SourceColumn("value".to_owned())),
            ("tax".to_owned(), MappingExpr::Sql("0".to_owned())),
            ("loaded_at".to_owned(), MappingExpr::Sql("now()".to_owned())),
        ]
    );
}

#[test]
fn full_csv_job() {
    let config = parse("full_csv.yaml", include_str!("jobfiles/full_csv.yaml"));
    let column = |name: &str, sql_type: &str| CsvColumn { name: name.to_owned(), sql_type: sql_type.to_owned() };
    assert_eq!(
        config.source.format,
        SourceFormatSpec::Csv(CsvSpec {
            columns: vec![
                column("cust_id", "int"),
                column("month", "int"),
                column("expense", "decimal (9,2)"),
                column("note", "text"),
                column("extra", "jsonb"),
            ],
            delimiter: b'&',
            quote: b'\'',
            escape: b',',
            null_string: "\\N".to_owned(),
            newline: Newline::CrLf,
            force_not_null: strings(&["note", "month"]),
            fill_missing_fields: true,
            force_quote_ignored: true,
        })
    );
    assert_eq!(config.source.consistency, Consistency::AtMostOnce);
    assert_eq!(config.source.fallback_offset, None);
    assert_eq!(config.source.batch.max_count, None);
    assert!(config.source.properties.is_empty());
    assert_eq!(config.target.port, 5432);
    let table = &config.target.tables[0];
    assert_eq!(table.schema, None);
    assert_eq!(table.mode, WriteMode::Insert);
    assert_eq!(
        table.mapping,
        [
            ("customer".to_owned(), MappingExpr::SourceColumn("cust_id".to_owned())),
            ("month".to_owned(), MappingExpr::SourceColumn("month".to_owned())),
            ("cost".to_owned(), MappingExpr::SourceColumn("expense".to_owned())),
            ("tax".to_owned(), MappingExpr::Sql("expense * .25".to_owned())),
            (
                "source".to_owned(),
                MappingExpr::JsonCast {
                    column: "extra".to_owned(),
                    path: strings(&["source"]),
                    path_operator: false,
                    cast: "varchar(20)".to_owned(),
                }
            ),
        ]
    );
}

#[test]
fn base_is_valid() {
    let config = parse("job.yaml", BASE);
    assert_eq!(config.source.fallback_offset, Some(FallbackOffset::Earliest));
    assert_eq!(config.target.tables[0].mapping.len(), 2);
}

// One test per error form.

#[test]
fn unknown_key() {
    assert_eq!(
        error(&base_with(7, "    valu:")),
        "job.yaml: source.kafka.valu (line 7): unknown key; expected one of brokers, topic, value, control, task, properties"
    );
}

#[test]
fn later_key_not_supported_yet() {
    let text = base_with(8, "      avro:")
        .replace("        column: {name: value, type: json}\n", "        column: {name: value, type: JSON}\n");
    assert_eq!(error(&text), "job.yaml: source.kafka.value.avro (line 8): not supported yet: source.kafka.value.avro");
}

#[test]
fn missing_required_key() {
    assert_eq!(error(&base_with(6, "")), "job.yaml: source.kafka (line 3): missing required key \"topic\"");
}

#[test]
fn bad_enum_value() {
    assert_eq!(
        error(&base_with(12, "      consistency: twice")),
        "job.yaml: source.kafka.control.consistency (line 12): \
         must be one of exactly-once, at-least-once, at-most-once, none; got \"twice\""
    );
}

#[test]
fn bad_integer() {
    assert_eq!(
        error(&base_with(15, "        interval_ms: fast")),
        "job.yaml: source.kafka.task.batch_size.interval_ms (line 15): expected an integer, got \"fast\""
    );
}

#[test]
fn bad_error_limit() {
    assert_eq!(
        error(&base_with(22, "    error_limit: lots")),
        "job.yaml: target.database.error_limit (line 22): must be a count or a percentage like \"5%\"; got \"lots\""
    );
}

#[test]
fn bad_version() {
    assert_eq!(error(&base_with(1, "version: v2")), "job.yaml: version (line 1): must be v1.0; got \"v2\"");
}

#[test]
fn invalid_yaml() {
    assert_eq!(
        error(&base_with(4, "    brokers: a: b")),
        "job.yaml (line 4): invalid YAML: mapping values are not allowed in this context"
    );
}

// More of the same forms, on other keys.

#[test]
fn other_shape_errors() {
    assert_eq!(error(""), "job.yaml: empty job file");
    assert_eq!(error(&base_with(1, "")), "job.yaml: missing required key \"version\"");
    assert_eq!(
        error(&base_with(5, "      - kafka_host")),
        "job.yaml: source.kafka.brokers[0] (line 5): must be host:port; got \"kafka_host\""
    );
    assert_eq!(
        error(&BASE.replace("    brokers:\n      - kafka_host:9092\n", "    brokers: kafka_host:9092\n")),
        "job.yaml: source.kafka.brokers (line 4): expected a list, got \"kafka_host:9092\""
    );
    assert_eq!(
        error(&base_with(21, "    dbname: testdb\n    host: other")),
        "job.yaml: target.database.host (line 22): duplicate key"
    );
    assert_eq!(
        error(&format!("{BASE}---\nversion: v1.0\n")),
        "job.yaml (line 29): invalid YAML: more than one document"
    );
    assert_eq!(error("- a\n- b\n"), "job.yaml (line 1): expected a mapping, got a list");
    assert_eq!(
        error(&base_with(26, "      mode: {insert: {truncate: true}}\n      mapping:")),
        "job.yaml: target.database.tables[0].mode.insert.truncate (line 26): unknown key; expected no keys"
    );
}

#[test]
fn other_validation_errors() {
    assert_eq!(
        error(&base_with(2, "source:\n  rabbitmq: {}")),
        "job.yaml: source (line 2): must contain only one of kafka, rabbitmq; got kafka and rabbitmq"
    );
    assert_eq!(
        error(
            &base_with(8, "      json: {column: {name: value, type: json}}\n      csv:")
                .replace("        column: {name: value, type: json}\n", "        columns: [{name: a, type: text}]\n")
        ),
        "job.yaml: source.kafka.value (line 7): must contain only one of json, csv, avro; got json and csv"
    );
    assert_eq!(
        error(&base_with(9, "        column: {name: value, type: text}")),
        "job.yaml: source.kafka.value.json.column.type (line 9): must be one of json, jsonb; got \"text\""
    );
    assert_eq!(
        error(&base_with(15, "        interval_ms: 0")),
        "job.yaml: source.kafka.task.batch_size.interval_ms (line 15): must be greater than 0; got 0"
    );
    assert_eq!(
        error(&base_with(15, "        interval_ms: -5")),
        "job.yaml: source.kafka.task.batch_size.interval_ms (line 15): must not be negative; got -5"
    );
    assert_eq!(
        error(&base_with(15, "        interval_ms: 1000\n      window_size: 10")),
        "job.yaml: source.kafka.task.window_size (line 16): not supported yet: source.kafka.task.window_size"
    );
    assert_eq!(
        error(&base_with(6, "    topic: orders\n    tls:")),
        "job.yaml: source.kafka.tls (line 7): not supported yet: source.kafka.tls"
    );
    assert_eq!(
        error(&base_with(19, "    port: 70000")),
        "job.yaml: target.database.port (line 19): must be between 1 and 65535; got 70000"
    );
    assert_eq!(
        error(&base_with(22, "    error_limit: 150%")),
        "job.yaml: target.database.error_limit (line 22): must be a percentage from 1% to 100%; got \"150%\""
    );
    assert_eq!(
        error(&base_with(26, "      mode: {}\n      mapping:")),
        "job.yaml: target.database.tables[0].mode (line 26): must contain one of insert, update, merge"
    );
    assert_eq!(
        error(&base_with(26, "      mode:\n        update: {match_columns: [name]}\n      mapping:")),
        "job.yaml: target.database.tables[0].mode.update (line 27): not supported yet: target.database.tables[0].mode.update"
    );
    assert_eq!(
        error(&base_with(28, "        qty:")),
        "job.yaml: target.database.tables[0].mapping.qty (line 28): expected an expression, got nothing"
    );
    assert_eq!(
        error(&base_with(23, "    tables: []").lines().take(23).collect::<Vec<_>>().join("\n")),
        "job.yaml: target.database.tables (line 23): must list at least one table"
    );
    assert_eq!(
        error(&format!("{BASE}option:\n  schedule:\n    running_duration: 1h\n")),
        "job.yaml: option.schedule (line 30): not supported yet: option.schedule"
    );
}

#[test]
fn csv_errors() {
    let csv = |options: &str| {
        base_with(
            8,
            &format!("      csv:\n        columns:\n        - {{name: a, type: int}}\n        - {{name: b, type: text}}\n{options}"),
        )
        .replace("        column: {name: value, type: json}\n", "")
    };
    assert_eq!(
        error(&csv("        delimiter: ab")),
        "job.yaml: source.kafka.value.csv.delimiter (line 12): must be a single ASCII character; got \"ab\""
    );
    assert_eq!(
        error(&csv("        delimiter: \"'\"\n        quote: \"'\"")),
        "job.yaml: source.kafka.value.csv.quote (line 13): must differ from the delimiter; both are \"'\""
    );
    assert_eq!(
        error(&csv("        newline: LFCR")),
        "job.yaml: source.kafka.value.csv.newline (line 12): must be one of LF, CR, CRLF; got \"LFCR\""
    );
    assert_eq!(
        error(&csv("        force_not_null: [a, c]")),
        "job.yaml: source.kafka.value.csv.force_not_null (line 12): unknown column \"c\"; declared columns are a, b"
    );
    assert_eq!(
        error(&csv("        fill_missing_fields: yes")),
        "job.yaml: source.kafka.value.csv.fill_missing_fields (line 12): expected true or false, got \"yes\""
    );
    assert_eq!(
        error(&csv("        null_string: 'a,b'")),
        "job.yaml: source.kafka.value.csv.null_string (line 12): must not contain the delimiter \",\""
    );
    assert_eq!(
        error(&csv("        - {name: a, type: text}")),
        "job.yaml: source.kafka.value.csv.columns[2].name (line 12): duplicate column name \"a\""
    );
    // The CSV job itself, with defaults.
    let config = parse("job.yaml", &csv(""));
    let SourceFormatSpec::Csv(spec) = config.source.format else { panic!("csv") };
    assert_eq!((spec.delimiter, spec.quote, spec.escape), (b',', b'"', b'"'));
    assert_eq!((spec.null_string.as_str(), spec.newline, spec.fill_missing_fields), ("", Newline::Lf, false));
    assert!(!spec.force_quote_ignored);
}

#[test]
fn error_limits_in_the_files_terms() {
    let limit = |value: &str| error(&base_with(22, &format!("    error_limit: {value}")));
    let at = "job.yaml: target.database.error_limit (line 22)";
    // Beyond 64 bits (2^128, 2^64): integers that no YAML value of serde_yaml holds.
    assert_eq!(
        limit("340282366920938463463374607431768211456"),
        format!(
            "{at}: must be at most 18446744073709551615 (or a percentage like \"5%\"); \
             got 340282366920938463463374607431768211456"
        )
    );
    assert_eq!(
        limit("18446744073709551616"),
        format!("{at}: must be at most 18446744073709551615 (or a percentage like \"5%\"); got 18446744073709551616")
    );
    let config = parse("job.yaml", &base_with(22, "    error_limit: 18446744073709551615"));
    assert_eq!(config.target.error_limit, ErrorLimit::Count(u64::MAX));
    assert_eq!(limit("-5"), format!("{at}: must not be negative; got -5"));
    assert_eq!(
        limit("-170141183460469231731687303715884105729"),
        format!("{at}: must not be negative; got -170141183460469231731687303715884105729")
    );
    assert_eq!(limit("\"abc%\""), format!("{at}: must be a percentage from 1% to 100%; got \"abc%\""));
    assert_eq!(limit("\"150%\""), format!("{at}: must be a percentage from 1% to 100%; got \"150%\""));
    assert_eq!(limit("\"-5%\""), format!("{at}: must be a percentage from 1% to 100%; got \"-5%\""));
    assert_eq!(limit("\"99999999999%\""), format!("{at}: must be a percentage from 1% to 100%; got \"99999999999%\""));
    assert_eq!(limit("1.5"), format!("{at}: must be a count or a percentage like \"5%\"; got \"1.5\""));
}

#[test]
fn other_integers_beyond_64_bits() {
    assert_eq!(
        error(&base_with(19, "    port: 340282366920938463463374607431768211456")),
        "job.yaml: target.database.port (line 19): must be between 1 and 65535; got 340282366920938463463374607431768211456"
    );
    assert_eq!(
        error(&base_with(15, "        interval_ms: 18446744073709551616")),
        "job.yaml: source.kafka.task.batch_size.interval_ms (line 15): \
         must be at most 18446744073709551615; got 18446744073709551616"
    );
    // A key refused by name is refused whatever its value.
    assert_eq!(
        error(&base_with(6, "    topic: orders\n    tls: 18446744073709551616")),
        "job.yaml: source.kafka.tls (line 7): not supported yet: source.kafka.tls"
    );
}

#[test]
fn binary_files_are_not_yaml_text() {
    assert_eq!(error(&"\0".repeat(4096)), "job.yaml (line 1): not a YAML text file: a NUL byte at column 1");
    assert_eq!(
        error(&base_with(6, "    topic: ord\0ers")),
        "job.yaml (line 6): not a YAML text file: a NUL byte at column 15"
    );
    assert_eq!(
        error("\x01\x02\x03junk\x7f"),
        "job.yaml (line 1): not a YAML text file: the control character U+0001 at column 1"
    );
    assert_eq!(
        error(&base_with(2, "source:\x1b")),
        "job.yaml (line 2): not a YAML text file: the control character U+001B at column 8"
    );
    let bytes_error = |bytes: &[u8]| parse_job_bytes("job.yaml", bytes).expect_err("not text").to_string();
    assert_eq!(
        bytes_error(b"version: v1.0\nsource:\n  k\xffafka: {}\n"),
        "job.yaml (line 3): not a YAML text file: invalid UTF-8 (byte 0xff) at column 4"
    );
    assert_eq!(
        bytes_error(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        "job.yaml (line 1): not a YAML text file: invalid UTF-8 (byte 0x89) at column 1"
    );
    assert_eq!(parse_job_bytes("job.yaml", BASE.as_bytes()), Ok(parse("job.yaml", BASE)));
    // A byte order mark is text.
    assert_eq!(parse("job.yaml", &format!("\u{feff}{BASE}")), parse("job.yaml", BASE));
}

#[test]
fn files_that_are_not_a_mapping_at_the_top() {
    assert_eq!(error("just text\n"), "job.yaml (line 1): expected a mapping, got \"just text\"");
    assert_eq!(error("42\n"), "job.yaml (line 1): expected a mapping, got 42");
    assert_eq!(error("18446744073709551616\n"), "job.yaml (line 1): expected a mapping, got 18446744073709551616");
    assert_eq!(error("[version, source]\n"), "job.yaml (line 1): expected a mapping, got a list");
    assert_eq!(error("# nothing but a comment\n\n"), "job.yaml: empty job file");
    assert_eq!(error("~\n"), "job.yaml: empty job file");
}

/// `BASE` with `entries` more mapping entries, half of them pushed down.
fn with_mapping_entries(entries: usize) -> String {
    let mut text = BASE.to_owned();
    for i in 0..entries {
        if i % 2 == 0 {
            text.push_str(&format!("        c{i}: (value->>'k{i}')::int\n"));
        } else {
            text.push_str(&format!("        c{i}: upper(value->>'k{i}')\n"));
        }
    }
    text
}

/// Big mappings are read whole and checked as small ones are (their cost is
/// measured by `benches/benches/jobspec.rs`).
#[test]
fn a_mapping_of_20000_entries() {
    let config = parse("job.yaml", &with_mapping_entries(20_000));
    let mapping = &config.target.tables[0].mapping;
    assert_eq!(mapping.len(), 20_002);
    assert_eq!(mapping[2], ("c0".to_owned(), json_cast(&["k0"], false, "int")));
    assert_eq!(mapping[20_001], ("c19999".to_owned(), MappingExpr::Sql("upper(value->>'k19999')".to_owned())));
    // A duplicate among them is still found, at its own line.
    let duplicated = with_mapping_entries(20_000) + "        c5: value\n";
    assert_eq!(error(&duplicated), "job.yaml: target.database.tables[0].mapping.c5 (line 20029): duplicate key");
}

#[test]
fn display_without_path_or_line() {
    let error = JobFileError { file: "f.yaml".to_owned(), path: String::new(), line: None, reason: "r".to_owned() };
    assert_eq!(error.to_string(), "f.yaml: r");
    let error = JobFileError { line: Some(3), ..error };
    assert_eq!(error.to_string(), "f.yaml (line 3): r");
    let error = JobFileError { path: "a.b".to_owned(), ..error };
    assert_eq!(error.to_string(), "f.yaml: a.b (line 3): r");
}

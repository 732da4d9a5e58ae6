//! Layer two: the raw structs into a typed [`JobConfig`].
//!
//! Guarantees of a successful [`job`]: `version` is `v1.0`; the source is Kafka
//! with at least one `host:port` broker, a legal topic name and exactly one of
//! the supported formats; enums are enums (case-insensitive in the file),
//! numbers are in range, CSV characters are single ASCII bytes that COPY would
//! accept together, durations are [`Duration`]s; the target has at least one
//! table, each with exactly one supported mode and a classified mapping; and no
//! key that belongs to later work is set (they are refused as `not supported
//! yet: <key path>`).
//!
//! Keys are checked in the template's order and the first problem is returned,
//! as a [`Problem`] at the key's path (for a missing key, at its parent's).
//!
//! Validation is linear in the file: names are checked against hashed sets
//! (duplicate CSV columns, `force_not_null`, the columns a mapping names), so a
//! file with 100,000 columns or mapping entries costs 100,000 steps, not their
//! square.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::time::Duration;

use super::locate::{KeyPath, Problem};
use super::mapping::{SourceColumns, classify_among};
use super::raw::{
    BatchSizeRaw, ControlRaw, CsvRaw, DatabaseRaw, JobFileRaw, JsonRaw, KafkaRaw, ModeRaw, OrderedMap, SourceRaw,
    TableRaw, TaskRaw, ValueRaw,
};
use super::{
    BatchLimits, Consistency, CsvColumn, CsvSpec, DatabaseTarget, ErrorLimit, FallbackOffset, JobConfig,
    JsonColumnType, KafkaSource, Newline, SourceFormatSpec, TargetTable, WriteMode,
};

/// The only job file version.
const VERSION: &str = "v1.0";
const DEFAULT_INTERVAL_MS: u64 = 1000;
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_STAGING_SCHEMA: &str = "public";
/// Kafka's limit on topic name length.
const MAX_TOPIC_LENGTH: usize = 249;

type Result<T> = std::result::Result<T, Problem>;

/// Validates a whole job file.
pub(crate) fn job(raw: &JobFileRaw) -> Result<JobConfig> {
    let root = KeyPath::root();
    let version_path = root.key("version");
    if raw.version.trim() != VERSION {
        return Err(Problem::at(version_path, format!("must be {VERSION}; got {:?}", raw.version)));
    }
    let source = source(&root.key("source"), &raw.source)?;
    let target = database(&root.key("target").key("database"), &raw.target.database, &source.format)?;
    if let Some(option) = &raw.option
        && option.schedule.is_some()
    {
        return Err(not_supported(root.key("option").key("schedule")));
    }
    Ok(JobConfig { source, target })
}

fn not_supported(path: KeyPath) -> Problem {
    let reason = format!("not supported yet: {path}");
    Problem::at(path, reason)
}

/// The index of the one key of `names` that is present.
fn exactly_one(path: &KeyPath, names: &[&str], present: &[bool]) -> Result<usize> {
    let given: Vec<&str> = names.iter().zip(present).filter(|(_, present)| **present).map(|(name, _)| *name).collect();
    match given.as_slice() {
        [one] => Ok(names.iter().position(|name| name == one).unwrap_or_default()),
        [] => Err(Problem::at(path.clone(), format!("must contain one of {}", names.join(", ")))),
        many => Err(Problem::at(
            path.clone(),
            format!("must contain only one of {}; got {}", names.join(", "), many.join(" and ")),
        )),
    }
}

fn source(path: &KeyPath, raw: &SourceRaw) -> Result<KafkaSource> {
    let chosen = exactly_one(path, &["kafka", "rabbitmq"], &[raw.kafka.is_some(), raw.rabbitmq.is_some()])?;
    match (&raw.kafka, chosen) {
        (Some(kafka_raw), 0) => kafka(&path.key("kafka"), kafka_raw),
        _ => Err(not_supported(path.key("rabbitmq"))),
    }
}

fn kafka(path: &KeyPath, raw: &KafkaRaw) -> Result<KafkaSource> {
    let brokers_path = path.key("brokers");
    if raw.brokers.is_empty() {
        return Err(Problem::at(brokers_path, "must list at least one broker"));
    }
    let brokers = raw
        .brokers
        .iter()
        .enumerate()
        .map(|(index, text)| broker(&brokers_path.index(index), text))
        .collect::<Result<Vec<_>>>()?;
    let topic = topic(&path.key("topic"), &raw.topic)?;
    let format = format(&path.key("value"), &raw.value)?;
    let (consistency, fallback_offset) = control(&path.key("control"), raw.control.as_ref())?;
    let batch = task(&path.key("task"), raw.task.as_ref())?;
    let properties = match &raw.properties {
        Some(map) => properties(&path.key("properties"), map)?,
        None => Vec::new(),
    };
    let later = [
        ("partitions", raw.partitions.is_some()),
        ("read_workers", raw.read_workers.is_some()),
        ("read_buffer", raw.read_buffer.is_some()),
        ("tls", raw.tls.is_some()),
        ("metadata", raw.metadata.is_some()),
    ];
    if let Some((key, _)) = later.iter().find(|(_, given)| *given) {
        return Err(not_supported(path.key(key)));
    }
    Ok(KafkaSource { brokers, topic, format, consistency, fallback_offset, batch, properties })
}

/// `host:port`, the host non-empty (an IPv6 address in brackets), the port 1 to 65535.
fn broker(path: &KeyPath, text: &str) -> Result<String> {
    let invalid = || Problem::at(path.clone(), format!("must be host:port; got {text:?}"));
    let trimmed = text.trim();
    let (host, port) = match trimmed.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed.split_once(']').ok_or_else(invalid)?;
            (host, rest.strip_prefix(':').ok_or_else(invalid)?)
        }
        None => trimmed.rsplit_once(':').ok_or_else(invalid)?,
    };
    let host_is_valid = !host.is_empty()
        && !host.chars().any(|c| c.is_whitespace() || matches!(c, ',' | '/' | '[' | ']'))
        && (trimmed.starts_with('[') || !host.contains(':'));
    let port_is_valid = digits(port).is_some_and(|port| (1..=u64::from(u16::MAX)).contains(&port));
    if host_is_valid && port_is_valid { Ok(trimmed.to_owned()) } else { Err(invalid()) }
}

fn topic(path: &KeyPath, text: &str) -> Result<String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() {
        return Err(Problem::at(path.clone(), "must not be empty"));
    }
    if !text.chars().all(legal) || text == "." || text == ".." || text.len() > MAX_TOPIC_LENGTH {
        return Err(Problem::at(
            path.clone(),
            format!(
                "must be a Kafka topic name: at most {MAX_TOPIC_LENGTH} letters, digits, '.', '_' or '-'; got {text:?}"
            ),
        ));
    }
    Ok(text.to_owned())
}

fn format(path: &KeyPath, raw: &ValueRaw) -> Result<SourceFormatSpec> {
    let present = [raw.json.is_some(), raw.csv.is_some(), raw.avro.is_some()];
    let chosen = exactly_one(path, &["json", "csv", "avro"], &present)?;
    match (chosen, &raw.json, &raw.csv) {
        (0, Some(json_raw), _) => json(&path.key("json"), json_raw),
        (1, _, Some(csv_raw)) => Ok(SourceFormatSpec::Csv(csv(&path.key("csv"), csv_raw)?)),
        _ => Err(not_supported(path.key("avro"))),
    }
}

fn json(path: &KeyPath, raw: &JsonRaw) -> Result<SourceFormatSpec> {
    let column_path = path.key("column");
    let column = non_empty(&column_path.key("name"), &raw.column.name)?;
    let kind = one_of(
        &column_path.key("type"),
        &raw.column.kind,
        &[("json", JsonColumnType::Json), ("jsonb", JsonColumnType::Jsonb)],
    )?;
    Ok(SourceFormatSpec::Json { column, kind })
}

fn csv(path: &KeyPath, raw: &CsvRaw) -> Result<CsvSpec> {
    let columns_path = path.key("columns");
    if raw.columns.is_empty() {
        return Err(Problem::at(columns_path, "must list at least one column"));
    }
    let mut columns: Vec<CsvColumn> = Vec::with_capacity(raw.columns.len());
    let mut names: HashSet<&str> = HashSet::with_capacity(raw.columns.len());
    for (index, column) in raw.columns.iter().enumerate() {
        let column_path = columns_path.index(index);
        let name = non_empty(&column_path.key("name"), &column.name)?;
        if !names.insert(column.name.as_str()) {
            return Err(Problem::at(column_path.key("name"), format!("duplicate column name {name:?}")));
        }
        let sql_type = non_empty(&column_path.key("type"), &column.sql_type)?.trim().to_owned();
        columns.push(CsvColumn { name, sql_type });
    }

    let delimiter = match &raw.delimiter {
        Some(text) => single_byte(&path.key("delimiter"), text)?,
        None => b',',
    };
    let quote = match &raw.quote {
        Some(text) => single_byte(&path.key("quote"), text)?,
        None => b'"',
    };
    let escape = match &raw.escape {
        Some(text) => single_byte(&path.key("escape"), text)?,
        None => quote,
    };
    let null_string = raw.null_string.clone().unwrap_or_default();
    // The rules of PostgreSQL's COPY … CSV, which the database side may use.
    let shown = |byte: u8| char::from(byte).to_string();
    if quote == delimiter {
        return Err(Problem::at(
            path.key("quote"),
            format!("must differ from the delimiter; both are {:?}", shown(quote)),
        ));
    }
    if null_string.contains(['\r', '\n']) {
        return Err(Problem::at(path.key("null_string"), "must not contain a line break"));
    }
    if null_string.contains(char::from(delimiter)) {
        return Err(Problem::at(
            path.key("null_string"),
            format!("must not contain the delimiter {:?}", shown(delimiter)),
        ));
    }
    if null_string.contains(char::from(quote)) {
        return Err(Problem::at(path.key("null_string"), format!("must not contain the quote {:?}", shown(quote))));
    }

    let newline = match &raw.newline {
        Some(text) => {
            one_of(&path.key("newline"), text, &[("LF", Newline::Lf), ("CR", Newline::Cr), ("CRLF", Newline::CrLf)])?
        }
        None => Newline::Lf,
    };
    let mut force_not_null = Vec::new();
    if let Some(forced) = &raw.force_not_null {
        let names_path = path.key("force_not_null");
        let mut seen: HashSet<&str> = HashSet::with_capacity(forced.0.len());
        for name in &forced.0 {
            let name = name.trim();
            if !names.contains(name) {
                let declared: Vec<&str> = columns.iter().map(|column| column.name.as_str()).collect();
                return Err(Problem::at(
                    names_path,
                    format!("unknown column {name:?}; declared columns are {}", declared.join(", ")),
                ));
            }
            if seen.insert(name) {
                force_not_null.push(name.to_owned());
            }
        }
    }
    let fill_missing_fields = match &raw.fill_missing_fields {
        Some(text) => boolean(&path.key("fill_missing_fields"), text)?,
        None => false,
    };
    Ok(CsvSpec {
        columns,
        delimiter,
        quote,
        escape,
        null_string,
        newline,
        force_not_null,
        fill_missing_fields,
        force_quote_ignored: raw.force_quote.is_some(),
    })
}

fn control(path: &KeyPath, raw: Option<&ControlRaw>) -> Result<(Consistency, Option<FallbackOffset>)> {
    let Some(raw) = raw else {
        return Ok((Consistency::ExactlyOnce, None));
    };
    let consistency = match &raw.consistency {
        Some(text) => one_of(
            &path.key("consistency"),
            text,
            &[
                ("exactly-once", Consistency::ExactlyOnce),
                ("at-least-once", Consistency::AtLeastOnce),
                ("at-most-once", Consistency::AtMostOnce),
                ("none", Consistency::None),
            ],
        )?,
        None => Consistency::ExactlyOnce,
    };
    let fallback_offset = match &raw.fallback_offset {
        Some(text) => Some(one_of(
            &path.key("fallback_offset"),
            text,
            &[("earliest", FallbackOffset::Earliest), ("latest", FallbackOffset::Latest)],
        )?),
        None => None,
    };
    Ok((consistency, fallback_offset))
}

fn task(path: &KeyPath, raw: Option<&TaskRaw>) -> Result<BatchLimits> {
    let Some(raw) = raw else {
        return batch_size(&path.key("batch_size"), None);
    };
    let batch = batch_size(&path.key("batch_size"), raw.batch_size.as_ref())?;
    let later = [
        ("window_size", raw.window_size.is_some()),
        ("window_statement", raw.window_statement.is_some()),
        ("prepare_statement", raw.prepare_statement.is_some()),
        ("teardown_statement", raw.teardown_statement.is_some()),
    ];
    if let Some((key, _)) = later.iter().find(|(_, given)| *given) {
        return Err(not_supported(path.key(key)));
    }
    Ok(batch)
}

fn batch_size(path: &KeyPath, raw: Option<&BatchSizeRaw>) -> Result<BatchLimits> {
    let interval_ms = match raw.and_then(|raw| raw.interval_ms.as_deref()) {
        Some(text) => {
            let interval_path = path.key("interval_ms");
            let millis = integer(&interval_path, text)?;
            if millis == 0 {
                return Err(Problem::at(interval_path, "must be greater than 0; got 0"));
            }
            millis
        }
        None => DEFAULT_INTERVAL_MS,
    };
    let max_count = match raw.and_then(|raw| raw.max_count.as_deref()) {
        Some(text) => NonZeroU64::new(integer(&path.key("max_count"), text)?),
        None => None,
    };
    Ok(BatchLimits { interval: Duration::from_millis(interval_ms), max_count })
}

fn properties(path: &KeyPath, map: &OrderedMap) -> Result<Vec<(String, String)>> {
    map.0
        .iter()
        .map(|(name, value)| {
            if name.trim().is_empty() {
                return Err(Problem::at(path.clone(), "property names must not be empty"));
            }
            match value {
                Some(value) => Ok((name.clone(), value.clone())),
                None => Err(Problem::at(path.key(name), "expected a value, got nothing")),
            }
        })
        .collect()
}

fn database(path: &KeyPath, raw: &DatabaseRaw, format: &SourceFormatSpec) -> Result<DatabaseTarget> {
    let host = non_empty(&path.key("host"), &raw.host)?;
    let port = match &raw.port {
        Some(text) => {
            let port_path = path.key("port");
            let out_of_range =
                || Problem::at(port_path.clone(), format!("must be between 1 and 65535; got {}", text.trim()));
            let port = match integer(&port_path, text) {
                Ok(port) => port,
                Err(_) if matches!(integer_form(text.trim()), Some(IntegerForm::TooLarge)) => {
                    return Err(out_of_range());
                }
                Err(problem) => return Err(problem),
            };
            match u16::try_from(port) {
                Ok(port) if port > 0 => port,
                _ => return Err(out_of_range()),
            }
        }
        None => DEFAULT_PORT,
    };
    let user = non_empty(&path.key("user"), &raw.user)?;
    let dbname = non_empty(&path.key("dbname"), &raw.dbname)?;
    let staging_schema = match &raw.staging_schema {
        Some(text) => non_empty(&path.key("staging_schema"), text)?,
        None => DEFAULT_STAGING_SCHEMA.to_owned(),
    };
    let error_limit = match &raw.error_limit {
        Some(text) => error_limit(&path.key("error_limit"), text)?,
        None => ErrorLimit::Unlimited,
    };
    let filter_expression = raw.filter_expression.as_deref().and_then(sql_text);

    let columns = source_columns(format);
    let tables_path = path.key("tables");
    if raw.tables.is_empty() {
        return Err(Problem::at(tables_path, "must list at least one table"));
    }
    let tables = raw
        .tables
        .iter()
        .enumerate()
        .map(|(index, table_raw)| table(&tables_path.index(index), table_raw, &columns))
        .collect::<Result<Vec<_>>>()?;
    Ok(DatabaseTarget {
        host,
        port,
        user,
        password: raw.password.clone(),
        dbname,
        staging_schema,
        error_limit,
        filter_expression,
        tables,
    })
}

/// The source columns a mapping can name, and those of them holding JSON.
fn source_columns(format: &SourceFormatSpec) -> SourceColumns {
    match format {
        SourceFormatSpec::Json { column, .. } => SourceColumns::new([column.as_str()], [column.as_str()]),
        SourceFormatSpec::Csv(csv) => {
            let names = csv.columns.iter().map(|column| column.name.as_str());
            let json = csv
                .columns
                .iter()
                .filter(|column| {
                    column.sql_type.eq_ignore_ascii_case("json") || column.sql_type.eq_ignore_ascii_case("jsonb")
                })
                .map(|column| column.name.as_str());
            SourceColumns::new(names, json)
        }
    }
}

fn table(path: &KeyPath, raw: &TableRaw, columns: &SourceColumns) -> Result<TargetTable> {
    let table = non_empty(&path.key("table"), &raw.table)?;
    let schema = match &raw.schema {
        Some(text) => Some(non_empty(&path.key("schema"), text)?),
        None => None,
    };
    let mode = match &raw.mode {
        Some(mode_raw) => mode(&path.key("mode"), mode_raw)?,
        None => WriteMode::Insert,
    };
    let mut mapping = Vec::with_capacity(raw.mapping.as_ref().map_or(0, |map| map.0.len()));
    if let Some(map) = &raw.mapping {
        let mapping_path = path.key("mapping");
        for (target_column, expr) in &map.0 {
            if target_column.trim().is_empty() {
                return Err(Problem::at(mapping_path, "target column names must not be empty"));
            }
            let expr = expr
                .as_deref()
                .filter(|expr| !expr.trim().is_empty())
                .ok_or_else(|| Problem::at(mapping_path.key(target_column), "expected an expression, got nothing"))?;
            mapping.push((target_column.clone(), classify_among(expr, columns)));
        }
    }
    let filter = raw.filter.as_deref().and_then(sql_text);
    Ok(TargetTable { schema, table, mode, mapping, filter })
}

fn mode(path: &KeyPath, raw: &ModeRaw) -> Result<WriteMode> {
    let present = [raw.insert.is_some(), raw.update.is_some(), raw.merge.is_some()];
    match exactly_one(path, &["insert", "update", "merge"], &present)? {
        0 => Ok(WriteMode::Insert),
        1 => Err(not_supported(path.key("update"))),
        _ => Err(not_supported(path.key("merge"))),
    }
}

/// `5`, `"5"` or `"5%"`.
fn error_limit(path: &KeyPath, text: &str) -> Result<ErrorLimit> {
    let trimmed = text.trim();
    if let Some(number) = trimmed.strip_suffix('%') {
        return match digits(number.trim_end()).and_then(|percent| u32::try_from(percent).ok()) {
            Some(percent @ 1..=100) => Ok(ErrorLimit::Percent(percent)),
            _ => Err(Problem::at(path.clone(), format!("must be a percentage from 1% to 100%; got {text:?}"))),
        };
    }
    if let Some(count) = digits(trimmed) {
        return Ok(ErrorLimit::Count(count));
    }
    let reason = match integer_form(trimmed) {
        Some(IntegerForm::Negative) => format!("must not be negative; got {trimmed}"),
        Some(IntegerForm::TooLarge) => {
            format!("must be at most {} (or a percentage like \"5%\"); got {trimmed}", u64::MAX)
        }
        None => format!("must be a count or a percentage like \"5%\"; got {text:?}"),
    };
    Err(Problem::at(path.clone(), reason))
}

/// SQL text, or `None` when blank.
fn sql_text(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// A non-negative decimal integer: optional `+`, ASCII digits only.
fn digits(text: &str) -> Option<u64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if unsigned.is_empty() || !unsigned.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    unsigned.parse().ok()
}

/// Why a text that [`digits`] refuses still reads as an integer.
enum IntegerForm {
    Negative,
    /// More than a `u64` holds.
    TooLarge,
}

/// `None` when `trimmed` is not an optionally signed run of ASCII digits.
fn integer_form(trimmed: &str) -> Option<IntegerForm> {
    let (negative, magnitude) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if magnitude.is_empty() || !magnitude.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(if negative { IntegerForm::Negative } else { IntegerForm::TooLarge })
}

fn integer(path: &KeyPath, text: &str) -> Result<u64> {
    let trimmed = text.trim();
    if let Some(value) = digits(trimmed) {
        return Ok(value);
    }
    let reason = match integer_form(trimmed) {
        Some(IntegerForm::Negative) => format!("must not be negative; got {trimmed}"),
        Some(IntegerForm::TooLarge) => format!("must be at most {}; got {trimmed}", u64::MAX),
        None => format!("expected an integer, got {text:?}"),
    };
    Err(Problem::at(path.clone(), reason))
}

fn boolean(path: &KeyPath, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Problem::at(path.clone(), format!("expected true or false, got {text:?}"))),
    }
}

fn non_empty(path: &KeyPath, text: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Err(Problem::at(path.clone(), "must not be empty"));
    }
    Ok(text.to_owned())
}

/// One ASCII character other than a line break.
fn single_byte(path: &KeyPath, text: &str) -> Result<u8> {
    match text.as_bytes() {
        [b'\r' | b'\n'] => Err(Problem::at(path.clone(), format!("must not be a line break; got {text:?}"))),
        [byte] if byte.is_ascii() => Ok(*byte),
        _ => Err(Problem::at(path.clone(), format!("must be a single ASCII character; got {text:?}"))),
    }
}

/// A case-insensitive choice among `choices`.
fn one_of<T: Copy>(path: &KeyPath, text: &str, choices: &[(&str, T)]) -> Result<T> {
    let trimmed = text.trim();
    if let Some((_, value)) = choices.iter().find(|(name, _)| name.eq_ignore_ascii_case(trimmed)) {
        return Ok(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    Err(Problem::at(path.clone(), format!("must be one of {}; got {text:?}", names.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> KeyPath {
        KeyPath::root().key("k")
    }

    #[test]
    fn parses_integers() {
        assert_eq!(integer(&path(), " 1000 ").ok(), Some(1000));
        assert_eq!(integer(&path(), "+5").ok(), Some(5));
        assert_eq!(integer(&path(), "fast").map_err(|p| p.reason), Err("expected an integer, got \"fast\"".to_owned()));
        assert_eq!(integer(&path(), "-5").map_err(|p| p.reason), Err("must not be negative; got -5".to_owned()));
        assert_eq!(integer(&path(), "1.5").map_err(|p| p.reason), Err("expected an integer, got \"1.5\"".to_owned()));
        assert!(integer(&path(), "99999999999999999999").is_err());
    }

    #[test]
    fn parses_error_limits() {
        assert_eq!(error_limit(&path(), "5").ok(), Some(ErrorLimit::Count(5)));
        assert_eq!(error_limit(&path(), "0").ok(), Some(ErrorLimit::Count(0)));
        assert_eq!(error_limit(&path(), "10%").ok(), Some(ErrorLimit::Percent(10)));
        assert_eq!(error_limit(&path(), " 100 %").ok(), Some(ErrorLimit::Percent(100)));
        assert!(error_limit(&path(), "0%").is_err());
        assert!(error_limit(&path(), "101%").is_err());
        assert!(error_limit(&path(), "2.5%").is_err());
        assert!(error_limit(&path(), "-1").is_err());
    }

    #[test]
    fn parses_brokers() {
        for good in ["kafka:9092", "10.0.0.1:9092", "[::1]:9092", " host:1 "] {
            assert!(broker(&path(), good).is_ok(), "{good}");
        }
        for bad in ["kafka", ":9092", "kafka:", "kafka:0", "kafka:65536", "::1:9092", "a b:1", "a:1,b:2", "kafka:x"] {
            assert!(broker(&path(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_single_bytes() {
        assert_eq!(single_byte(&path(), "&").ok(), Some(b'&'));
        assert!(single_byte(&path(), "").is_err());
        assert!(single_byte(&path(), "ab").is_err());
        assert!(single_byte(&path(), "é").is_err());
        assert!(single_byte(&path(), "\n").is_err());
    }
}

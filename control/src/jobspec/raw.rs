//! Layer one: the job file's YAML as serde structs, key for key.
//!
//! Guarantees after [`from_str`]: no key outside the documented `v1.0` template
//! (plus FlowServer 1.1's additions), every required key present, and every value
//! the right kind of node (mapping, list or scalar). Scalars stay the text that
//! was written — serde_yaml hands any plain scalar to a `String` as written, so
//! `0123`, `1e3` and `true` arrive unchanged — and mean nothing yet: the
//! [`validate`](super::validate) layer gives them types.
//!
//! Keys that belong to later work are parsed as `Option<Later>` (their content
//! read and dropped, whatever it is: a value needs no type to be refused) so
//! that validation can refuse them by name ("not supported yet: …"). They use
//! [`present`], so that a key written with an empty value still counts as given.
//!
//! Serde's errors are turned into [`Problem`]s here: the key path comes from
//! serde_path_to_error, the reason is reworded in the file's terms (keys, lists,
//! mappings), and serde_yaml's location is kept as the fallback line.

use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::locate::{KeyPath, Problem, Segment};

/// The value of a key that is refused by name: any YAML at all, numbers beyond
/// 64 bits included (a `serde_yaml::Value` cannot hold those).
pub(crate) type Later = IgnoredAny;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobFileRaw {
    pub(crate) version: String,
    pub(crate) source: SourceRaw,
    pub(crate) target: TargetRaw,
    #[serde(default)]
    pub(crate) option: Option<OptionRaw>,
}

/// `source`: exactly one of the two, checked by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceRaw {
    #[serde(default, deserialize_with = "present")]
    pub(crate) kafka: Option<KafkaRaw>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) rabbitmq: Option<Later>,
}

/// `source.kafka`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaRaw {
    pub(crate) brokers: Vec<String>,
    pub(crate) topic: String,
    pub(crate) value: ValueRaw,
    #[serde(default)]
    pub(crate) control: Option<ControlRaw>,
    #[serde(default)]
    pub(crate) task: Option<TaskRaw>,
    #[serde(default)]
    pub(crate) properties: Option<OrderedMap>,
    /// FlowServer 1.1, refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) partitions: Option<Later>,
    /// FlowServer 1.1, refused.
    #[serde(default, deserialize_with = "present")]
    pub(crate) read_workers: Option<Later>,
    /// FlowServer 1.1, refused.
    #[serde(default, deserialize_with = "present")]
    pub(crate) read_buffer: Option<Later>,
    /// FlowServer 1.1, refused.
    #[serde(default, deserialize_with = "present")]
    pub(crate) tls: Option<Later>,
    /// FlowServer 1.1, refused.
    #[serde(default, deserialize_with = "present")]
    pub(crate) metadata: Option<Later>,
}

/// `source.kafka.value`: exactly one format, checked by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueRaw {
    #[serde(default, deserialize_with = "present")]
    pub(crate) json: Option<JsonRaw>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) csv: Option<CsvRaw>,
    /// Refused: not supported yet. Any content is accepted here, including
    /// FlowServer 1.1's `bytes_to_base64`.
    #[serde(default, deserialize_with = "present")]
    pub(crate) avro: Option<Later>,
}

/// `value.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonRaw {
    pub(crate) column: JsonColumnRaw,
}

/// `value.json.column`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonColumnRaw {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

/// `value.csv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsvRaw {
    pub(crate) columns: Vec<CsvColumnRaw>,
    #[serde(default)]
    pub(crate) delimiter: Option<String>,
    #[serde(default)]
    pub(crate) quote: Option<String>,
    #[serde(default)]
    pub(crate) null_string: Option<String>,
    #[serde(default)]
    pub(crate) escape: Option<String>,
    #[serde(default)]
    pub(crate) newline: Option<String>,
    #[serde(default)]
    pub(crate) force_not_null: Option<NameList>,
    #[serde(default)]
    pub(crate) force_quote: Option<NameList>,
    #[serde(default)]
    pub(crate) fill_missing_fields: Option<String>,
}

/// `value.csv.columns[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsvColumnRaw {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) sql_type: String,
}

/// `source.kafka.control`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlRaw {
    #[serde(default)]
    pub(crate) consistency: Option<String>,
    #[serde(default)]
    pub(crate) fallback_offset: Option<String>,
}

/// `source.kafka.task`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskRaw {
    #[serde(default)]
    pub(crate) batch_size: Option<BatchSizeRaw>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) window_size: Option<Later>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) window_statement: Option<Later>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) prepare_statement: Option<Later>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) teardown_statement: Option<Later>,
}

/// `source.kafka.task.batch_size`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSizeRaw {
    #[serde(default)]
    pub(crate) interval_ms: Option<String>,
    #[serde(default)]
    pub(crate) max_count: Option<String>,
}

/// `target`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetRaw {
    pub(crate) database: DatabaseRaw,
}

/// `target.database`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseRaw {
    pub(crate) host: String,
    #[serde(default)]
    pub(crate) port: Option<String>,
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) password: Option<String>,
    pub(crate) dbname: String,
    #[serde(default)]
    pub(crate) staging_schema: Option<String>,
    #[serde(default)]
    pub(crate) error_limit: Option<String>,
    #[serde(default)]
    pub(crate) filter_expression: Option<String>,
    pub(crate) tables: Vec<TableRaw>,
}

/// `target.database.tables[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableRaw {
    pub(crate) table: String,
    #[serde(default)]
    pub(crate) schema: Option<String>,
    #[serde(default)]
    pub(crate) mode: Option<ModeRaw>,
    #[serde(default)]
    pub(crate) mapping: Option<OrderedMap>,
    #[serde(default)]
    pub(crate) filter: Option<String>,
}

/// `tables[i].mode`: exactly one mode, checked by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeRaw {
    /// Outer `Some`: the key is there; inner `None`: written empty (`insert:`).
    #[serde(default, deserialize_with = "present")]
    pub(crate) insert: Option<Option<InsertRaw>>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) update: Option<Later>,
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) merge: Option<Later>,
}

/// `mode.insert`: `{}`, no keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InsertRaw {}

/// `option`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionRaw {
    /// Refused: not supported yet.
    #[serde(default, deserialize_with = "present")]
    pub(crate) schedule: Option<Later>,
}

/// A mapping of names to scalars, in file order (`properties`, `mapping`).
/// A value written empty is `None`.
#[derive(Debug, Default)]
pub(crate) struct OrderedMap(pub(crate) Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedMapVisitor;
        impl<'de> Visitor<'de> for OrderedMapVisitor {
            type Value = OrderedMap;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Option<String>>()? {
                    entries.push(entry);
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(OrderedMapVisitor)
    }
}

/// Column names as a YAML list or as one comma-separated string
/// (`force_not_null`, `force_quote`).
#[derive(Debug, Default)]
pub(crate) struct NameList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameListVisitor;
        impl<'de> Visitor<'de> for NameListVisitor {
            type Value = NameList;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a list of column names or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, names: &str) -> Result<NameList, E> {
                let names = names.split(',').map(str::trim).filter(|name| !name.is_empty());
                Ok(NameList(names.map(str::to_owned).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(NameList(names))
            }
        }
        deserializer.deserialize_any(NameListVisitor)
    }
}

/// For `#[serde(default, deserialize_with = "present")]`: the key is there, even
/// with an empty value. Without it, serde reads `key:` (null) as an absent key.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The keys of the `v1.0` template for each kind of mapping, named by its path
/// without list indexes, for "unknown key" errors. FlowServer 1.1's keys and
/// later-work keys are accepted by the structs above but not offered here unless
/// the `v1.0` template has them.
fn documented_keys(shape: &str) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match shape {
        "" => &["version", "source", "target", "option"],
        "source" => &["kafka", "rabbitmq"],
        "source.kafka" => &["brokers", "topic", "value", "control", "task", "properties"],
        "source.kafka.value" => &["json", "csv", "avro"],
        "source.kafka.value.json" => &["column"],
        "source.kafka.value.json.column" | "source.kafka.value.csv.columns" => &["name", "type"],
        "source.kafka.value.csv" => &[
            "columns",
            "delimiter",
            "quote",
            "null_string",
            "escape",
            "newline",
            "force_not_null",
            "force_quote",
            "fill_missing_fields",
        ],
        "source.kafka.control" => &["consistency", "fallback_offset"],
        "source.kafka.task" => {
            &["batch_size", "window_size", "window_statement", "prepare_statement", "teardown_statement"]
        }
        "source.kafka.task.batch_size" => &["interval_ms", "max_count"],
        "target" => &["database"],
        "target.database" => &[
            "host",
            "port",
            "user",
            "password",
            "dbname",
            "staging_schema",
            "error_limit",
            "filter_expression",
            "tables",
        ],
        "target.database.tables" => &["table", "schema", "mode", "mapping", "filter"],
        "target.database.tables.mode" => &["insert", "update", "merge"],
        "target.database.tables.mode.insert" => &[],
        "option" => &["schedule"],
        _ => return None,
    };
    Some(keys)
}

/// Checks that libyaml, which serde_yaml reads with, accepts `text` as YAML.
///
/// yaml-rust2 ([`locate`](super::locate)) reads first, for lines; where the two
/// parsers disagree, this one decides. The document is read and dropped
/// ([`IgnoredAny`]): only syntax counts here, and any scalar is fine, even an
/// integer no Rust type holds.
pub(crate) fn check_yaml(text: &str) -> Result<(), Problem> {
    let Err(error) = serde_yaml::from_str::<IgnoredAny>(text) else {
        return Ok(());
    };
    Err(Problem {
        path: KeyPath::root(),
        reason: format!("invalid YAML: {}", without_locations(&error.to_string())),
        line: error.location().map(|location| location.line()),
        fallback_line: None,
    })
}

/// `message` without serde_yaml's " at line L column C" parts.
fn without_locations(message: &str) -> String {
    let mut rest = message;
    let mut cleaned = String::new();
    while let Some(start) = rest.find(" at line ") {
        cleaned.push_str(&rest[..start]);
        let after = &rest[start + " at line ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &after[digits..];
        match tail.strip_prefix(" column ") {
            Some(column) if digits > 0 => {
                let column_digits = column.bytes().take_while(u8::is_ascii_digit).count();
                rest = &column[column_digits..];
            }
            _ => {
                cleaned.push_str(" at line ");
                rest = after;
            }
        }
    }
    cleaned.push_str(rest);
    cleaned
}

/// Deserializes the file's shape; errors carry the key path and a reason in the
/// file's terms.
pub(crate) fn from_str(text: &str) -> Result<JobFileRaw, Problem> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| translate(&error))
}

fn translate(error: &serde_path_to_error::Error<serde_yaml::Error>) -> Problem {
    let mut path = KeyPath::root();
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => path.push(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => path.push(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => path.push(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    let inner = error.inner();
    let location = inner.location();
    let mut message = inner.to_string();
    if let Some(location) = &location {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    let fallback_line = location.map(|location| location.line());

    if let Some(name) = quoted_after(&message, "unknown field `") {
        if path.segments().last() != Some(&Segment::Key(name.clone())) {
            path.push(Segment::Key(name.clone()));
        }
        let expected = match documented_keys(&path.parent().shape()) {
            Some(keys) => keys.iter().map(|key| (*key).to_owned()).collect(),
            None => serde_field_list(&message),
        };
        let reason = if expected.is_empty() {
            "unknown key; expected no keys".to_owned()
        } else {
            format!("unknown key; expected one of {}", expected.join(", "))
        };
        return Problem { path, reason, line: None, fallback_line };
    }
    if let Some(name) = quoted_after(&message, "missing field `") {
        // The path is the mapping that lacks the key; the root has no line.
        let fallback_line = if path.is_root() { None } else { fallback_line };
        return Problem { path, reason: format!("missing required key {name:?}"), line: None, fallback_line };
    }
    if message.contains("duplicate field `") || message.contains("duplicate entry") {
        return Problem { path, reason: "duplicate key".to_owned(), line: None, fallback_line };
    }
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let detail = &message[start + marker.len()..];
            if let Some((unexpected, expected)) = detail.rsplit_once(", expected ") {
                let reason =
                    format!("expected {}, got {}", expected_in_file_terms(expected), got_in_file_terms(unexpected));
                return Problem { path, reason, line: None, fallback_line };
            }
        }
    }
    // Anything else: serde_yaml's own words, without its path prefix.
    let reason = [path.to_string(), path.parent().to_string()]
        .iter()
        .find_map(|prefix| message.strip_prefix(&format!("{prefix}: ")).map(str::to_owned))
        .unwrap_or(message);
    Problem { path, reason, line: None, fallback_line }
}

/// The name between backticks after `marker`: "unknown field `topc`, …" → `topc`.
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let start = message.find(marker)? + marker.len();
    let rest = &message[start..];
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

/// The field names of serde's "expected one of `a`, `b`" / "expected `a` or `b`".
fn serde_field_list(message: &str) -> Vec<String> {
    let Some(start) = message.find("expected ") else {
        return Vec::new();
    };
    message[start..].split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// serde's name for what it expected, in the file's terms.
fn expected_in_file_terms(expected: &str) -> String {
    match expected {
        "a sequence" => "a list".to_owned(),
        "a string" => "a single value".to_owned(),
        "a map" | "a YAML mapping" => "a mapping".to_owned(),
        "field identifier" => "a key name".to_owned(),
        other if other.starts_with("struct ") => "a mapping".to_owned(),
        other => other.to_owned(),
    }
}

/// serde's name for what it found, in the file's terms.
fn got_in_file_terms(unexpected: &str) -> String {
    if let Some(text) = unexpected.strip_prefix("string ") {
        return text.to_owned();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(value) = unexpected.strip_prefix(prefix) {
            // "`5`", or "`18446744073709551616` as u128" for integers beyond 64 bits.
            return match value.strip_prefix('`').and_then(|rest| rest.split_once('`')) {
                Some((number, _)) => number.to_owned(),
                None => value.to_owned(),
            };
        }
    }
    match unexpected {
        "unit value" => "nothing".to_owned(),
        "sequence" => "a list".to_owned(),
        "map" => "a mapping".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> Problem {
        from_str(text).expect_err("invalid shape")
    }

    #[test]
    fn keeps_scalars_as_written() {
        let text = "version: v1.0\nsource:\n  kafka:\n    brokers: [a:1]\n    topic: 0123\n    value: {json: {column: {name: value, type: json}}}\n    properties:\n      b: 1e3\n      a: true\n      c:\ntarget:\n  database: {host: h, user: u, dbname: d, tables: [{table: t}]}\n";
        let raw = from_str(text).expect("valid shape");
        let kafka = raw.source.kafka.expect("kafka");
        assert_eq!(kafka.topic, "0123");
        let properties = kafka.properties.expect("properties").0;
        assert_eq!(
            properties,
            vec![
                ("b".to_owned(), Some("1e3".to_owned())),
                ("a".to_owned(), Some("true".to_owned())),
                ("c".to_owned(), None)
            ]
        );
    }

    #[test]
    fn reports_unknown_keys_with_the_template_keys() {
        let found = problem("version: v1.0\nsource:\n  kafka:\n    topc: x\n");
        assert_eq!(found.path.to_string(), "source.kafka.topc");
        assert_eq!(found.reason, "unknown key; expected one of brokers, topic, value, control, task, properties");
        let found = problem(
            "version: v1.0\nsource: {}\ntarget:\n  database:\n    tables:\n    - table: t\n      mode:\n        insert: {x: 1}\n",
        );
        assert_eq!(found.path.to_string(), "target.database.tables[0].mode.insert.x");
        assert_eq!(found.reason, "unknown key; expected no keys");
    }

    #[test]
    fn rewords_type_errors() {
        let found = problem("version: v1.0\nsource:\n  kafka:\n    brokers: 5\n");
        assert_eq!(found.path.to_string(), "source.kafka.brokers");
        assert_eq!(found.reason, "expected a list, got 5");
        let found = problem("version: [v1.0]\n");
        assert_eq!(found.reason, "expected a single value, got a list");
        let found = problem("version: v1.0\nsource:\n  kafka:\n");
        // serde_yaml reads an empty value as an empty mapping.
        assert_eq!(found.path.to_string(), "source.kafka");
        assert_eq!(found.reason, "missing required key \"brokers\"");
        let found = problem("version: v1.0\nsource:\n  kafka: 5\n");
        assert_eq!(found.reason, "expected a mapping, got 5");
        let found = problem("just text\n");
        assert!(found.path.is_root());
        assert_eq!(found.reason, "expected a mapping, got \"just text\"");
        assert_eq!(found.fallback_line, Some(1));
    }

    #[test]
    fn reports_missing_keys_at_the_parent() {
        let found = problem("source: {}\n");
        assert!(found.path.is_root());
        assert_eq!(found.reason, "missing required key \"version\"");
        assert_eq!(found.fallback_line, None);
    }

    #[test]
    fn checks_yaml_with_libyaml() {
        assert_eq!(check_yaml("a: 1\n"), Ok(()));
        let found = check_yaml("a:\n  b: 1\n c: 2\n").expect_err("bad indentation");
        assert_eq!(found.line, Some(3));
        assert!(!found.reason.contains(" at line "), "{}", found.reason);
        assert_eq!(
            without_locations(
                "did not find expected key at line 11 column 8, while parsing a block mapping at line 10 column 7"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(without_locations("x at line y"), "x at line y");
    }

    #[test]
    fn accepts_name_lists_in_both_spellings() {
        let list: NameList = serde_yaml::from_str("[a, b]").expect("list");
        assert_eq!(list.0, ["a", "b"]);
        let list: NameList = serde_yaml::from_str("\"a, b,\"").expect("string");
        assert_eq!(list.0, ["a", "b"]);
    }
}

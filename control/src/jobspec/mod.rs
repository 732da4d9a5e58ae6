//! Job files: FlowServer's `version: v1.0` YAML, read into a validated [`JobConfig`].
//!
//! A job file goes through two layers, in the style of quickwit's source configs:
//!
//! 1. **Raw** (`raw.rs`): serde structs that mirror the YAML key for key, with
//!    `deny_unknown_fields` everywhere and `Option` for optional keys. This layer
//!    guarantees the *shape* of the file: every key is one FlowServer documents (or
//!    one we accept only to refuse it by name, like `window_statement` or
//!    `mode.merge`), every required key is there, and every value is a mapping, a
//!    list or a scalar where one is expected. Scalars are kept as the text that was
//!    written (`0123` stays `0123`).
//! 2. **Validated** (`validate.rs`): turns the raw structs into [`JobConfig`]. This
//!    layer guarantees the *meaning*: enums are enums, numbers are in range,
//!    characters are single ASCII bytes, durations are [`Duration`]s, broker
//!    addresses are `host:port`, CSV options are consistent, mapping expressions are
//!    classified ([`mapping::classify`]), and every key that belongs to later work
//!    is refused with "not supported yet". Nothing after this layer sees a raw
//!    string for an enum, a number, a character or a duration.
//!
//! Every error, from either layer, is one [`JobFileError`]: the file name, the key
//! path in dotted form with list indexes (`target.database.tables[0].mapping`), the
//! 1-based line of that key (`locate.rs` finds it from yaml-rust2's marked events),
//! and a lowercase reason. Before either layer runs, the file is read as plain
//! YAML, so characters YAML does not allow (a NUL byte, other control
//! characters: a binary file), syntax errors, duplicate keys, empty files and
//! multi-document files are reported first, with their line. serde_yaml (libyaml) decides what is
//! YAML: where yaml-rust2 alone rejects a file, it is still loaded, and only its
//! validation errors lose their line.

use std::num::NonZeroU64;
use std::time::Duration;

mod locate;
pub mod mapping;
mod raw;
mod validate;

pub use mapping::{SourceColumns, classify, classify_among};

/// Reads a job file: checks the YAML, then its shape, then its meaning.
///
/// `file_name` only labels errors. The first problem is returned: a character
/// YAML does not allow, then YAML syntax, duplicate keys and empty files, then
/// the keys in file-template order (`version`, `source`, `target`, `option`).
/// Linear in the size of the file.
pub fn parse_job_file(file_name: &str, text: &str) -> Result<JobConfig, JobFileError> {
    // A byte order mark (editors on Windows write one) is not content, and
    // libyaml, given a string, reads it as some: leave it out.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    locate::check_printable(text).map_err(|problem| problem.into_error(file_name, None))?;
    let document = match locate::Document::parse(text) {
        Ok(document) => Some(document),
        Err(locate::ParseError::Invalid(problem)) => {
            return Err(problem.into_error(file_name, None));
        }
        // Only libyaml's verdict counts: when it reads the file, go on without lines.
        Err(locate::ParseError::Syntax(problem)) => match raw::check_yaml(text) {
            Ok(()) => None,
            Err(_) => return Err(problem.into_error(file_name, None)),
        },
    };
    let raw = match raw::from_str(text) {
        Ok(raw) => raw,
        Err(problem) => {
            // A file libyaml cannot read is reported as such, wherever the
            // syntax error is: a shape error before it would be beside the point.
            // (Checked only now: a file serde read whole is YAML to libyaml.)
            raw::check_yaml(text).map_err(|syntax| syntax.into_error(file_name, None))?;
            return Err(problem.into_error(file_name, document.as_ref()));
        }
    };
    validate::job(&raw).map_err(|problem| problem.into_error(file_name, document.as_ref()))
}

/// [`parse_job_file`] for a file's bytes, as read from disk: bytes that are not
/// UTF-8 are refused with their line and column.
pub fn parse_job_bytes(file_name: &str, bytes: &[u8]) -> Result<JobConfig, JobFileError> {
    let text = locate::text_of(bytes).map_err(|problem| problem.into_error(file_name, None))?;
    parse_job_file(file_name, text)
}

/// A job file that cannot be loaded, and where.
///
/// Displays as `job.yaml: source.kafka.topic (line 4): reason`; without a key path
/// as `job.yaml (line 4): reason`; the line part is left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{location}: {reason}", location = display_location(path, *line))]
pub struct JobFileError {
    /// The file name as given to [`parse_job_file`].
    pub file: String,
    /// Dotted key path with list indexes; empty for the whole file.
    pub path: String,
    /// 1-based line of the key (of its parent for a missing key).
    pub line: Option<usize>,
    /// Lowercase, no trailing period.
    pub reason: String,
}

fn display_location(path: &str, line: Option<usize>) -> String {
    let line = line.map(|line| format!(" (line {line})")).unwrap_or_default();
    if path.is_empty() { line } else { format!(": {path}{line}") }
}

/// A validated job: where the messages come from and where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    pub source: KafkaSource,
    pub target: DatabaseTarget,
}

/// `source.kafka`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSource {
    /// Each `host:port` (an IPv6 host in brackets), as written.
    pub brokers: Vec<String>,
    pub topic: String,
    pub format: SourceFormatSpec,
    /// `control.consistency`, default [`Consistency::ExactlyOnce`].
    pub consistency: Consistency,
    /// `control.fallback_offset`; `None` makes an offset gap an error.
    pub fallback_offset: Option<FallbackOffset>,
    pub batch: BatchLimits,
    /// `properties`, in file order; numbers and booleans as written.
    pub properties: Vec<(String, String)>,
}

/// `source.kafka.control.consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// `exactly-once`: offsets commit in the database with the rows.
    ExactlyOnce,
    /// `at-least-once`: offsets commit to Kafka after the database commit.
    AtLeastOnce,
    /// `at-most-once`: offsets commit to Kafka before the database commit.
    AtMostOnce,
    /// `none`: the Kafka client auto-commits.
    None,
}

/// `source.kafka.control.fallback_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackOffset {
    Earliest,
    Latest,
}

/// `source.kafka.task.batch_size`: a batch ends at whichever limit comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// `interval_ms`, default 1000 ms, never zero.
    pub interval: Duration,
    /// `max_count`; `0` or absent is `None` (no row limit).
    pub max_count: Option<NonZeroU64>,
}

/// `source.kafka.value.<format>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormatSpec {
    /// The whole message is one JSON column.
    Json { column: String, kind: JsonColumnType },
    /// One message is one CSV row.
    Csv(CsvSpec),
}

/// `json.column.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumnType {
    Json,
    Jsonb,
}

/// `value.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSpec {
    /// At least one; names are unique.
    pub columns: Vec<CsvColumn>,
    /// Default `,`.
    pub delimiter: u8,
    /// Default `"`.
    pub quote: u8,
    /// Default: the quote character.
    pub escape: u8,
    /// Default empty.
    pub null_string: String,
    /// Default [`Newline::Lf`].
    pub newline: Newline,
    /// Column names, each one of `columns`.
    pub force_not_null: Vec<String>,
    pub fill_missing_fields: bool,
    /// `force_quote` was given: accepted for compatibility, it means nothing when loading.
    pub force_quote_ignored: bool,
}

/// `csv.columns[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumn {
    pub name: String,
    /// As written, trimmed, non-empty (`decimal (9,2)`).
    pub sql_type: String,
}

/// `csv.newline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newline {
    Lf,
    Cr,
    CrLf,
}

/// `target.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTarget {
    pub host: String,
    /// Default 5432.
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// Default `public`.
    pub staging_schema: String,
    pub error_limit: ErrorLimit,
    /// A `WHERE` clause without `WHERE`, applied before every table.
    pub filter_expression: Option<String>,
    /// At least one.
    pub tables: Vec<TargetTable>,
}

/// `target.database.error_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLimit {
    /// The key is absent.
    Unlimited,
    /// `5` or `"5"`: more than this many rejected messages stops the job.
    Count(u64),
    /// `"5%"`: 1 to 100.
    Percent(u32),
}

/// `target.database.tables[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub schema: Option<String>,
    pub table: String,
    pub mode: WriteMode,
    /// Target column → expression, in file order; empty when the key is absent.
    pub mapping: Vec<(String, MappingExpr)>,
    /// A `WHERE` clause without `WHERE`, for this table only.
    pub filter: Option<String>,
}

/// `tables[i].mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// `insert: {}`, also when `mode` is absent.
    Insert,
}

/// A mapping value, sorted by what the shards can compute themselves.
///
/// `Sql` is always correct; the other variants are guaranteed to mean exactly
/// what the SQL text would mean in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingExpr {
    /// A bare or double-quoted identifier naming a source column; holds the
    /// declared source column name.
    SourceColumn(String),
    /// `col->>'k'` (`path_operator: false`, one element) or `col#>>'{a,b}'`
    /// (`path_operator: true`, PostgreSQL `#>>` semantics: an integer element
    /// indexes an array). Elements as written, unquoted.
    JsonText { column: String, path: Vec<String>, path_operator: bool },
    /// `(col->>'k')::type` or `(col#>>'{a,b}')::type`; `cast` is the type as
    /// written, lowercased, whitespace normalized (`numeric(9,2)`, `double precision`).
    JsonCast { column: String, path: Vec<String>, path_operator: bool, cast: String },
    /// Anything else, passed to the database verbatim.
    Sql(String),
}

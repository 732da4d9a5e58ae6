//! The per-message encoder: one message in, one fast row, slow row or
//! rejection out (see the [module contract](super)).
//!
//! # Contract
//!
//! - JSON: a message that is valid JSON (for the source column's kind) and
//!   whose every fast column is computed exactly is a **fast row**; any other
//!   message, a tombstone included, is a **slow row** holding one field, the
//!   payload as text (NULL for a tombstone). JSON messages are never rejected.
//! - CSV: a message is split with PostgreSQL's CSV rules; one that is not
//!   exactly one record of `columns` fields (or a tombstone) is **rejected**.
//!   Otherwise it is a fast row if every fast column is computed exactly, else
//!   a slow row of one text field per column (NULL where NULL).
//!
//! A failed fast attempt leaves nothing in the fast buffer. Rows are binary
//! COPY tuples without header or trailer ([`super::pgcopy`]).

use std::fmt;

use super::csv::{CsvOptions, CsvSplitter};
use super::json::{JsonExtractor, JsonKind, JsonPath};
use super::pgcopy::{begin_row, put_field, put_null};
use super::pgtype::{Conversion, EncodeContext, NotFast};

/// What each shard computes for a job.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodePlan {
    pub format: SourceFormat,
    /// The fast row's fields, in order.
    pub fast_columns: Vec<FastColumn>,
    pub context: EncodeContext,
}

/// How messages are parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceFormat {
    /// The message is one document, the single source column of this type.
    Json(JsonKind),
    /// The message is one CSV record of `columns` source columns.
    Csv(CsvOptions),
}

/// One field of the fast row.
#[derive(Debug, Clone, PartialEq)]
pub enum FastColumn {
    /// `(col->>'k')::cast`, `col#>>'{a,b}'`.
    JsonPath { path: JsonPath, conversion: Conversion },
    /// The whole message (cast = json or jsonb).
    JsonDocument { conversion: Conversion },
    /// A CSV field converted from its declared type.
    CsvField { index: usize, conversion: Conversion },
    /// A source column as text (NULL stays NULL), for SQL evaluated later.
    SourceText { source_index: usize },
}

/// What [`RowEncoder::encode`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// One tuple appended to the fast buffer.
    Fast,
    /// One tuple appended to the slow buffer.
    Slow,
    /// Nothing appended: the message has no source-column form.
    Rejected(RejectReason),
}

/// Why a message was rejected. Display gives PostgreSQL's wording where it
/// has one; [`RejectReason::describe`] also names columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    EmptyMessage,
    /// More fields than columns.
    CsvExtraData {
        fields: u32,
    },
    /// Fewer fields than columns: `column` (0-based) is the first missing one.
    CsvMissingData {
        column: u32,
    },
    CsvUnterminatedQuote,
    /// An unquoted line break inside the message: it would hold more than one record.
    CsvUnquotedLineBreak,
    /// A message without value, in a format that needs one.
    Tombstone,
    /// The plan declares more CSV columns than a COPY tuple holds (65535;
    /// PostgreSQL tables hold at most 1600, so the job cannot start either).
    CsvTooManyColumns {
        columns: u32,
    },
}

impl RejectReason {
    /// The reason for a person, naming the column when there is one.
    pub fn describe(&self, column_names: &[String]) -> String {
        match *self {
            // u32 → usize: widening.
            RejectReason::CsvMissingData { column } => match column_names.get(column as usize) {
                Some(name) => format!("missing data for column \"{name}\""),
                None => self.to_string(),
            },
            RejectReason::CsvExtraData { fields } => {
                format!("extra data after last expected column: {fields} fields, {} columns", column_names.len())
            }
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RejectReason::EmptyMessage => f.write_str("empty message: a CSV message must hold one record"),
            RejectReason::CsvExtraData { fields } => {
                write!(f, "extra data after last expected column ({fields} fields)")
            }
            RejectReason::CsvMissingData { column } => write!(f, "missing data for column {}", column + 1),
            RejectReason::CsvUnterminatedQuote => f.write_str("unterminated CSV quoted field"),
            RejectReason::CsvUnquotedLineBreak => f.write_str(
                "unquoted newline or carriage return found in data: a message must hold exactly one CSV record",
            ),
            RejectReason::Tombstone => f.write_str("message without value (tombstone)"),
            RejectReason::CsvTooManyColumns { columns } => {
                write!(f, "a CSV record of {columns} columns exceeds the 65535 fields of a row")
            }
        }
    }
}

impl std::error::Error for RejectReason {}

#[derive(Debug, Clone)]
enum Source {
    Json(JsonExtractor),
    Csv(CsvSplitter),
}

/// A fast column with its extraction slot resolved.
#[derive(Debug, Clone)]
enum Column {
    JsonPath { slot: usize, conversion: Conversion },
    JsonDocument { conversion: Conversion },
    CsvField { index: usize, conversion: Conversion },
    SourceText { source_index: usize },
}

/// Encodes messages of one job into binary COPY tuples; reuses its scratch
/// space, so a warm encoder allocates nothing per message.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    source: Source,
    columns: Vec<Column>,
    context: EncodeContext,
    /// The plan cannot be computed on the shard (a column does not fit the
    /// format, or there are more columns than a tuple holds): every message
    /// is slow.
    always_slow: bool,
}

impl RowEncoder {
    /// Prepares the encoder of `plan`. A fast column that does not fit the
    /// format (a CSV field in a JSON plan, an index beyond the source
    /// columns) makes every message slow rather than failing: the control
    /// plane never builds such a plan, and slow rows are always correct.
    pub fn new(plan: &DecodePlan) -> RowEncoder {
        let mut always_slow = u16::try_from(plan.fast_columns.len()).is_err();
        let mut source = match &plan.format {
            SourceFormat::Json(kind) => Source::Json(JsonExtractor::new(*kind)),
            SourceFormat::Csv(options) => Source::Csv(CsvSplitter::new(options.clone())),
        };
        let columns = plan
            .fast_columns
            .iter()
            .map(|column| match (column, &mut source) {
                (FastColumn::JsonPath { path, conversion }, Source::Json(extractor)) => {
                    Column::JsonPath { slot: extractor.add_path(path), conversion: *conversion }
                }
                (FastColumn::JsonDocument { conversion }, Source::Json(_)) => {
                    Column::JsonDocument { conversion: *conversion }
                }
                (FastColumn::CsvField { index, conversion }, Source::Csv(splitter))
                    if *index < splitter.options().columns =>
                {
                    Column::CsvField { index: *index, conversion: *conversion }
                }
                (FastColumn::SourceText { source_index }, Source::Json(_)) if *source_index == 0 => {
                    Column::SourceText { source_index: 0 }
                }
                (FastColumn::SourceText { source_index }, Source::Csv(splitter))
                    if *source_index < splitter.options().columns =>
                {
                    Column::SourceText { source_index: *source_index }
                }
                _ => {
                    always_slow = true;
                    Column::SourceText { source_index: 0 }
                }
            })
            .collect();
        RowEncoder { source, columns, context: plan.context, always_slow }
    }

    /// Number of fields in a slow row: 1 for JSON, the column count for CSV.
    pub fn slow_width(&self) -> usize {
        match &self.source {
            Source::Json(_) => 1,
            Source::Csv(splitter) => splitter.options().columns,
        }
    }

    /// Encodes one message. `payload` `None` is a Kafka tombstone. Appends
    /// one binary COPY tuple (field-count word + fields, no header/trailer)
    /// to `fast` or to `slow`, or to neither.
    pub fn encode(&mut self, payload: Option<&[u8]>, fast: &mut Vec<u8>, slow: &mut Vec<u8>) -> Encoded {
        let RowEncoder { source, columns, context, always_slow } = self;
        let start = fast.len();
        match source {
            Source::Json(extractor) => {
                let Some(payload) = payload else {
                    begin_row(slow, 1);
                    put_null(slow);
                    return Encoded::Slow;
                };
                if !*always_slow && encode_json(extractor, columns, context, payload, fast).is_ok() {
                    return Encoded::Fast;
                }
                fast.truncate(start);
                begin_row(slow, 1);
                put_field(slow, payload);
                Encoded::Slow
            }
            Source::Csv(splitter) => {
                let Some(payload) = payload else {
                    return Encoded::Rejected(RejectReason::Tombstone);
                };
                if let Err(reason) = splitter.split(payload) {
                    return Encoded::Rejected(reason);
                }
                if !*always_slow && encode_csv(splitter, columns, context, fast).is_ok() {
                    return Encoded::Fast;
                }
                fast.truncate(start);
                let Ok(width) = u16::try_from(splitter.len()) else {
                    return Encoded::Rejected(RejectReason::CsvTooManyColumns {
                        columns: u32::try_from(splitter.len()).unwrap_or(u32::MAX),
                    });
                };
                begin_row(slow, width);
                for i in 0..splitter.len() {
                    match splitter.field(i) {
                        Some(text) => put_field(slow, text),
                        None => put_null(slow),
                    }
                }
                Encoded::Slow
            }
        }
    }
}

fn encode_json(
    extractor: &mut JsonExtractor,
    columns: &[Column],
    context: &EncodeContext,
    payload: &[u8],
    fast: &mut Vec<u8>,
) -> Result<(), NotFast> {
    let doc = std::str::from_utf8(payload).map_err(|_| NotFast)?;
    // Also checks that the source column's type (json or jsonb) accepts the
    // document, whatever is extracted.
    let facts = extractor.extract(doc)?;
    // `RowEncoder::new` makes a plan with more than u16::MAX columns always slow.
    begin_row(fast, u16::try_from(columns.len()).map_err(|_| NotFast)?);
    for column in columns {
        match column {
            Column::JsonPath { slot, conversion } => match extractor.value(doc, *slot) {
                Some(text) => conversion.encode(text, context, fast)?,
                None => put_null(fast),
            },
            Column::JsonDocument { conversion } => conversion.encode_validated_json(doc, facts, fast)?,
            Column::SourceText { .. } => put_field(fast, payload),
            Column::CsvField { .. } => return Err(NotFast),
        }
    }
    Ok(())
}

fn encode_csv(
    splitter: &CsvSplitter,
    columns: &[Column],
    context: &EncodeContext,
    fast: &mut Vec<u8>,
) -> Result<(), NotFast> {
    // `RowEncoder::new` makes a plan with more than u16::MAX columns always slow.
    begin_row(fast, u16::try_from(columns.len()).map_err(|_| NotFast)?);
    for column in columns {
        match column {
            Column::CsvField { index, conversion } => match splitter.field(*index) {
                Some(bytes) => {
                    let text = std::str::from_utf8(bytes).map_err(|_| NotFast)?;
                    conversion.encode(text, context, fast)?;
                }
                None => put_null(fast),
            },
            Column::SourceText { source_index } => match splitter.field(*source_index) {
                // The database would reject these as text; let it say so.
                Some(bytes) if bytes.contains(&0) || std::str::from_utf8(bytes).is_err() => {
                    return Err(NotFast);
                }
                Some(bytes) => put_field(fast, bytes),
                None => put_null(fast),
            },
            Column::JsonPath { .. } | Column::JsonDocument { .. } => return Err(NotFast),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::pgtype::PgType;

    const UTC: EncodeContext = EncodeContext { session_time_zone_is_utc: true };

    fn conv(cast: PgType, target: PgType) -> Conversion {
        Conversion::new(cast, target).expect("supported pair")
    }

    fn json_plan(kind: JsonKind, fast_columns: Vec<FastColumn>) -> DecodePlan {
        DecodePlan { format: SourceFormat::Json(kind), fast_columns, context: UTC }
    }

    fn path(k: &str, cast: PgType, target: PgType) -> FastColumn {
        FastColumn::JsonPath { path: JsonPath::key(k), conversion: conv(cast, target) }
    }

    /// Splits encoded tuples back into fields (None = NULL).
    fn tuples(mut buf: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut rows = Vec::new();
        while !buf.is_empty() {
            let n = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            buf = &buf[2..];
            let mut row = Vec::new();
            for _ in 0..n {
                let len = i32::from_be_bytes(buf[..4].try_into().unwrap());
                buf = &buf[4..];
                if len < 0 {
                    row.push(None);
                } else {
                    row.push(Some(buf[..len as usize].to_vec()));
                    buf = &buf[len as usize..];
                }
            }
            rows.push(row);
        }
        rows
    }

    fn encode(encoder: &mut RowEncoder, payload: Option<&[u8]>) -> (Encoded, Vec<u8>, Vec<u8>) {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let encoded = encoder.encode(payload, &mut fast, &mut slow);
        (encoded, fast, slow)
    }

    fn five_columns() -> DecodePlan {
        use PgType::*;
        json_plan(
            JsonKind::Json,
            vec![
                path("i", Int4, Int4),
                path("b", Int8, Int8),
                path("t", Text, Varchar(Some(20))),
                path("ts", Timestamp, Timestamp),
                path("d", Float8, Float8),
            ],
        )
    }

    #[test]
    fn json_fast_row() {
        let mut encoder = RowEncoder::new(&five_columns());
        assert_eq!(encoder.slow_width(), 1);
        let doc = br#"{"i":12,"b":-1,"t":"h\u00e9llo","ts":"2000-01-01T00:00:00Z","d":1.1,"other":[1,{"x":null}]}"#;
        let (encoded, fast, slow) = encode(&mut encoder, Some(doc));
        assert_eq!(encoded, Encoded::Fast);
        assert!(slow.is_empty());
        // int4send('12'), int8send('-1'), varcharsend('héllo'), timestamp_send('2000-01-01'),
        // float8send('1.1')
        let expected: Vec<u8> = [
            &[0, 5][..],
            &[0, 0, 0, 4, 0, 0, 0, 12],
            &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 6, 0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f],
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 8, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
        ]
        .concat();
        assert_eq!(fast, expected);
        // Missing keys and JSON nulls are SQL NULLs; a number as text for `text`.
        let (encoded, fast, _) = encode(&mut encoder, Some(br#"{"i":null,"t":5}"#));
        assert_eq!(encoded, Encoded::Fast);
        assert_eq!(tuples(&fast), [vec![None, None, Some(b"5".to_vec()), None, None]]);
    }

    #[test]
    fn json_slow_rows_leave_no_partial_fast_row() {
        let mut encoder = RowEncoder::new(&five_columns());
        let (mut fast, mut slow) = (vec![0xaa], vec![0xbb]);
        // "d" is not a JSON-syntax number: the first four columns were already written.
        let doc = br#"{"i":1,"b":2,"t":"x","ts":"2000-01-01 00:00:00","d":"NaN"}"#;
        assert_eq!(encoder.encode(Some(doc), &mut fast, &mut slow), Encoded::Slow);
        assert_eq!(fast, [0xaa]);
        let mut expected = vec![0xbb, 0, 1];
        expected.extend((doc.len() as i32).to_be_bytes());
        expected.extend_from_slice(doc);
        assert_eq!(slow, expected);
        for payload in [
            &br#"{"i":"1"}"#[..],                // a JSON string is text, "1" is fine...
            br#"{"t":"012345678901234567890"}"#, // ...but 21 characters do not fit varchar(20)
            br#"{"i":1"#,                        // not JSON
            b"\xff",                             // not UTF-8
            br#"{"i":1,"i":2}"#,                 // duplicate key on a path
            br#"{"x":"\u0000"}"#,                // the extraction functions would raise an error
            b"",
        ] {
            let (encoded, fast, slow) = encode(&mut encoder, Some(payload));
            let text = String::from_utf8_lossy(payload);
            if payload == br#"{"i":"1"}"# {
                assert_eq!(encoded, Encoded::Fast, "{text}");
                continue;
            }
            assert_eq!(encoded, Encoded::Slow, "{text}");
            assert!(fast.is_empty());
            assert_eq!(tuples(&slow), [vec![Some(payload.to_vec())]], "{text}");
        }
        // A tombstone is a slow row with a NULL document.
        let (encoded, fast, slow) = encode(&mut encoder, None);
        assert_eq!((encoded, fast.is_empty()), (Encoded::Slow, true));
        assert_eq!(tuples(&slow), [vec![None]]);
    }

    #[test]
    fn json_documents_and_source_text() {
        use PgType::*;
        let doc = br#"{"a": 1, "s": "\u0000"}"#;
        let mut json = RowEncoder::new(&json_plan(
            JsonKind::Json,
            vec![FastColumn::JsonDocument { conversion: conv(Json, Json) }, FastColumn::SourceText { source_index: 0 }],
        ));
        // json_in keeps \u0000 as written: fine without extraction.
        let (encoded, fast, _) = encode(&mut json, Some(doc));
        assert_eq!(encoded, Encoded::Fast);
        assert_eq!(tuples(&fast), [vec![Some(doc.to_vec()), Some(doc.to_vec())]]);

        let mut jsonb = RowEncoder::new(&json_plan(
            JsonKind::Jsonb,
            vec![FastColumn::JsonDocument { conversion: conv(Jsonb, Jsonb) }],
        ));
        let (encoded, fast, _) = encode(&mut jsonb, Some(br#"{"a": 1}"#));
        assert_eq!(encoded, Encoded::Fast);
        // jsonb_send('{"a": 1}') = \x01 + text; jsonb_recv parses the text.
        assert_eq!(tuples(&fast), [vec![Some(b"\x01{\"a\": 1}".to_vec())]]);
        // '{"s":"\u0000"}'::jsonb fails: the source column could not hold it.
        assert_eq!(encode(&mut jsonb, Some(doc)).0, Encoded::Slow);
        let mut jsonb_text =
            RowEncoder::new(&json_plan(JsonKind::Jsonb, vec![FastColumn::SourceText { source_index: 0 }]));
        assert_eq!(encode(&mut jsonb_text, Some(doc)).0, Encoded::Slow);
        assert_eq!(encode(&mut jsonb_text, Some(b"[1e999999]")).0, Encoded::Slow);
        assert_eq!(encode(&mut jsonb_text, Some(b"[1e9]")).0, Encoded::Fast);

        // A nested value cast to jsonb is validated as a document of its own.
        let mut nested = RowEncoder::new(&json_plan(JsonKind::Json, vec![path("o", Jsonb, Jsonb)]));
        let (encoded, fast, _) = encode(&mut nested, Some(br#"{"o":{"x" : [1]}}"#));
        assert_eq!(encoded, Encoded::Fast);
        assert_eq!(tuples(&fast), [vec![Some(b"\x01{\"x\" : [1]}".to_vec())]]);
        assert_eq!(encode(&mut nested, Some(br#"{"o":"{bad"}"#)).0, Encoded::Slow);
        assert_eq!(encode(&mut nested, Some(br#"{"o":"[1, 2]"}"#)).0, Encoded::Fast);
    }

    #[test]
    fn timestamptz_needs_a_utc_session_without_a_zone() {
        use PgType::*;
        let mut plan = json_plan(JsonKind::Json, vec![path("t", Timestamptz, Timestamptz)]);
        let zoneless = br#"{"t":"2024-01-01 00:00:00"}"#;
        assert_eq!(encode(&mut RowEncoder::new(&plan), Some(zoneless)).0, Encoded::Fast);
        plan.context.session_time_zone_is_utc = false;
        let mut encoder = RowEncoder::new(&plan);
        assert_eq!(encode(&mut encoder, Some(zoneless)).0, Encoded::Slow);
        assert_eq!(encode(&mut encoder, Some(br#"{"t":"2024-01-01 00:00:00+02"}"#)).0, Encoded::Fast);
    }

    fn csv_plan(columns: usize, fast_columns: Vec<FastColumn>) -> DecodePlan {
        DecodePlan { format: SourceFormat::Csv(CsvOptions::new(columns)), fast_columns, context: UTC }
    }

    #[test]
    fn csv_rows() {
        use PgType::*;
        let plan = csv_plan(
            3,
            vec![
                FastColumn::CsvField { index: 1, conversion: conv(Int4, Int8) },
                FastColumn::CsvField { index: 0, conversion: conv(Text, Text) },
                FastColumn::SourceText { source_index: 2 },
            ],
        );
        let mut encoder = RowEncoder::new(&plan);
        assert_eq!(encoder.slow_width(), 3);
        let (encoded, fast, slow) = encode(&mut encoder, Some(b"\"a,b\",42,\n"));
        assert_eq!((encoded, slow.is_empty()), (Encoded::Fast, true));
        // int8send('42'), textsend('a,b'), NULL
        assert_eq!(tuples(&fast), [vec![Some(42i64.to_be_bytes().to_vec()), Some(b"a,b".to_vec()), None]]);
        // NULL int stays NULL.
        let (encoded, fast, _) = encode(&mut encoder, Some(b"x,,\"\""));
        assert_eq!(encoded, Encoded::Fast);
        assert_eq!(tuples(&fast), [vec![None, Some(b"x".to_vec()), Some(Vec::new())]]);
        // Not an int in the subset: a slow row of all source columns as text.
        let (encoded, fast, slow) = encode(&mut encoder, Some(b" 7,+7,"));
        assert_eq!((encoded, fast.is_empty()), (Encoded::Slow, true));
        assert_eq!(tuples(&slow), [vec![Some(b" 7".to_vec()), Some(b"+7".to_vec()), None]]);
        // Bytes the database must judge itself.
        let (encoded, _, slow) = encode(&mut encoder, Some(b"a,1,\xff"));
        assert_eq!(encoded, Encoded::Slow);
        assert_eq!(tuples(&slow), [vec![Some(b"a".to_vec()), Some(b"1".to_vec()), Some(b"\xff".to_vec())]]);
        assert_eq!(encode(&mut encoder, Some(b"\xff,1,")).0, Encoded::Slow);
        // Rejections write nothing.
        for (payload, reason) in [
            (None, RejectReason::Tombstone),
            (Some(&b""[..]), RejectReason::EmptyMessage),
            (Some(b"a,1,2,3"), RejectReason::CsvExtraData { fields: 4 }),
            (Some(b"a,1"), RejectReason::CsvMissingData { column: 2 }),
            (Some(b"a,\"1"), RejectReason::CsvUnterminatedQuote),
            (Some(b"a,1,2\nb,2,3"), RejectReason::CsvUnquotedLineBreak),
        ] {
            let (encoded, fast, slow) = encode(&mut encoder, payload);
            assert_eq!(encoded, Encoded::Rejected(reason));
            assert!(fast.is_empty() && slow.is_empty());
        }
    }

    #[test]
    fn plans_that_do_not_fit_the_format_are_always_slow() {
        use PgType::*;
        let mut json_with_csv = RowEncoder::new(&json_plan(
            JsonKind::Json,
            vec![FastColumn::CsvField { index: 0, conversion: conv(Text, Text) }],
        ));
        assert_eq!(encode(&mut json_with_csv, Some(b"{}")).0, Encoded::Slow);
        let mut csv_out_of_range =
            RowEncoder::new(&csv_plan(1, vec![FastColumn::CsvField { index: 1, conversion: conv(Text, Text) }]));
        assert_eq!(encode(&mut csv_out_of_range, Some(b"a")).0, Encoded::Slow);
        let mut csv_with_json = RowEncoder::new(&csv_plan(1, vec![path("a", Text, Text)]));
        assert_eq!(encode(&mut csv_with_json, Some(b"a")).0, Encoded::Slow);
        let mut bad_source =
            RowEncoder::new(&json_plan(JsonKind::Json, vec![FastColumn::SourceText { source_index: 1 }]));
        assert_eq!(encode(&mut bad_source, Some(b"{}")).0, Encoded::Slow);
    }

    #[test]
    fn reject_reasons_describe_themselves() {
        let names = vec!["id".to_string(), "name".to_string()];
        assert_eq!(RejectReason::CsvMissingData { column: 1 }.describe(&names), "missing data for column \"name\"");
        assert_eq!(RejectReason::CsvMissingData { column: 5 }.describe(&names), "missing data for column 6");
        assert_eq!(
            RejectReason::CsvExtraData { fields: 3 }.describe(&names),
            "extra data after last expected column: 3 fields, 2 columns"
        );
        assert_eq!(RejectReason::CsvUnterminatedQuote.to_string(), "unterminated CSV quoted field");
        assert!(RejectReason::Tombstone.describe(&[]).contains("tombstone"));
        assert!(RejectReason::EmptyMessage.describe(&[]).contains("empty"));
        assert!(RejectReason::CsvUnquotedLineBreak.describe(&[]).contains("one CSV record"));
    }

    #[test]
    fn a_csv_plan_wider_than_a_tuple_rejects_instead_of_wrapping_the_field_count() {
        let columns = usize::from(u16::MAX) + 2;
        // "x" is not an integer: the message goes the slow way, one field per column.
        let fast_columns = vec![FastColumn::CsvField { index: 0, conversion: conv(PgType::Int4, PgType::Int4) }];
        let plan = DecodePlan { format: SourceFormat::Csv(CsvOptions::new(columns)), fast_columns, context: UTC };
        let message = vec!["x"; columns].join(",");
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let encoded = RowEncoder::new(&plan).encode(Some(message.as_bytes()), &mut fast, &mut slow);
        assert_eq!(encoded, Encoded::Rejected(RejectReason::CsvTooManyColumns { columns: 65537 }));
        assert!(fast.is_empty() && slow.is_empty());
        assert_eq!(
            RejectReason::CsvTooManyColumns { columns: 65537 }.to_string(),
            "a CSV record of 65537 columns exceeds the 65535 fields of a row"
        );
    }
}

//! Decode + encode cost per message on one core: JSON with 5 and 20 pushed-down
//! fields, CSV, and the whole-document path. Reports time per message
//! (criterion's "time" is per iteration = one message) and throughput in bytes.
//!
//! The JSON cases also run with the previous extractor (sonic-rs walker,
//! `*_old`: the row encoder's JSON path re-enacted around it), and the
//! extractors alone are compared in `json_extract` (`new` / `old`).
//!
//! `cargo bench -p flowserver-benches --bench codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowserver_engine::codec::json::sonic_walker::SonicJsonExtractor;
use flowserver_engine::codec::pgcopy::{begin_row, put_field, put_null};
use flowserver_engine::codec::{
    Conversion, CsvOptions, DecodePlan, EncodeContext, Encoded, FastColumn, JsonExtractor, JsonFacts, JsonKind,
    JsonPath, NotFast, PgType, RowEncoder, SourceFormat, fsrow,
};

fn conversion(cast: PgType, target: PgType) -> Conversion {
    Conversion::new(cast, target).expect("supported conversion")
}

fn json_plan(fields: &[(&str, PgType)]) -> DecodePlan {
    DecodePlan {
        format: SourceFormat::Json(JsonKind::Json),
        fast_columns: fields
            .iter()
            .map(|(key, ty)| FastColumn::JsonPath { path: JsonPath::key(key), conversion: conversion(*ty, *ty) })
            .collect(),
        context: EncodeContext { session_time_zone_is_utc: true },
    }
}

fn five_field_messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            format!(
                r#"{{"id":{i},"big":{},"name":"abcdefghij{:010}","ts":"2026-01-01T00:{:02}:{:02}.{:06}","score":{}.125}}"#,
                i as i64 * 1_000_003,
                i,
                (i / 60) % 60,
                i % 60,
                i % 1_000_000,
                i
            )
            .into_bytes()
        })
        .collect()
}

fn twenty_field_messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut text = String::from("{");
            for f in 0..20 {
                if f > 0 {
                    text.push(',');
                }
                match f % 4 {
                    0 => text.push_str(&format!(r#""f{f}":{}"#, i * 7 + f)),
                    1 => text.push_str(&format!(r#""f{f}":"text value {i} {f}""#)),
                    2 => text.push_str(&format!(r#""f{f}":{}.5"#, i + f)),
                    _ => text.push_str(&format!(r#""f{f}":"2026-03-04 05:06:{:02}""#, (i + f) % 60)),
                }
            }
            text.push('}');
            text.into_bytes()
        })
        .collect()
}

/// Times `encode` once per message, cycling through `messages`, with the row
/// buffers of a batch (cleared when large, as a sealed batch would be).
fn bench_per_message(
    c: &mut Criterion,
    name: &str,
    messages: &[Vec<u8>],
    mut encode: impl FnMut(&[u8], &mut Vec<u8>, &mut Vec<u8>),
) {
    let mut fast = Vec::with_capacity(64 << 20);
    let mut slow = Vec::with_capacity(1 << 20);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes((bytes / messages.len()) as u64));
    let mut i = 0;
    group.bench_function("per_message", |b| {
        b.iter(|| {
            if fast.len() > (60 << 20) {
                fast.clear();
                slow.clear();
            }
            let message = &messages[i % messages.len()];
            i += 1;
            encode(black_box(message), &mut fast, &mut slow);
        })
    });
    group.finish();
}

/// Encoding cost per message. With `fs_rows`, each tuple also gets the length
/// word of the fs_formatter rows a shard serves to segments (back-patched), to
/// compare with binary COPY.
fn bench_messages(c: &mut Criterion, name: &str, plan: &DecodePlan, messages: &[Vec<u8>], fs_rows: bool) {
    let mut encoder = RowEncoder::new(plan);
    bench_per_message(c, name, messages, |message, fast, slow| {
        let start = fs_rows.then(|| fsrow::begin_row(fast));
        let encoded = encoder.encode(Some(message), fast, slow);
        if let Some(start) = start {
            if encoded == Encoded::Fast {
                fsrow::end_row(fast, start);
            } else {
                fast.truncate(start);
            }
        }
        black_box(encoded);
    });
}

/// The two JSON extractors behind one interface.
trait Extractor {
    fn create(kind: JsonKind) -> Self;
    fn add(&mut self, path: &JsonPath) -> usize;
    fn run(&mut self, doc: &str) -> Result<JsonFacts, NotFast>;
    fn get<'a>(&'a self, doc: &'a str, slot: usize) -> Option<&'a str>;
}

impl Extractor for JsonExtractor {
    fn create(kind: JsonKind) -> Self {
        JsonExtractor::new(kind)
    }
    fn add(&mut self, path: &JsonPath) -> usize {
        self.add_path(path)
    }
    fn run(&mut self, doc: &str) -> Result<JsonFacts, NotFast> {
        self.extract(doc)
    }
    fn get<'a>(&'a self, doc: &'a str, slot: usize) -> Option<&'a str> {
        self.value(doc, slot)
    }
}

impl Extractor for SonicJsonExtractor {
    fn create(kind: JsonKind) -> Self {
        SonicJsonExtractor::new(kind)
    }
    fn add(&mut self, path: &JsonPath) -> usize {
        self.add_path(path)
    }
    fn run(&mut self, doc: &str) -> Result<JsonFacts, NotFast> {
        self.extract(doc)
    }
    fn get<'a>(&'a self, doc: &'a str, slot: usize) -> Option<&'a str> {
        self.value(doc, slot)
    }
}

/// `RowEncoder`'s JSON fast path (paths, or the whole document as json when
/// `conversions` is empty) with any extractor; `Err` where it would write a
/// slow row.
struct JsonRow<E> {
    extractor: E,
    columns: Vec<(usize, Conversion)>,
    context: EncodeContext,
}

impl<E: Extractor> JsonRow<E> {
    fn new(fields: &[(&str, PgType)]) -> Self {
        let mut extractor = E::create(JsonKind::Json);
        let columns =
            fields.iter().map(|(key, ty)| (extractor.add(&JsonPath::key(key)), conversion(*ty, *ty))).collect();
        JsonRow { extractor, columns, context: EncodeContext { session_time_zone_is_utc: true } }
    }

    fn encode(&mut self, payload: &[u8], fast: &mut Vec<u8>, slow: &mut Vec<u8>) -> Result<(), NotFast> {
        let start = fast.len();
        let result = self.encode_fast(payload, fast);
        if result.is_err() {
            fast.truncate(start);
            begin_row(slow, 1);
            put_field(slow, payload);
        }
        result
    }

    fn encode_fast(&mut self, payload: &[u8], fast: &mut Vec<u8>) -> Result<(), NotFast> {
        let doc = std::str::from_utf8(payload).map_err(|_| NotFast)?;
        self.extractor.run(doc)?;
        if self.columns.is_empty() {
            begin_row(fast, 1);
            put_field(fast, payload);
            return Ok(());
        }
        begin_row(fast, self.columns.len() as u16);
        for (slot, conversion) in &self.columns {
            match self.extractor.get(doc, *slot) {
                Some(text) => conversion.encode(text, &self.context, fast)?,
                None => put_null(fast),
            }
        }
        Ok(())
    }
}

fn bench_json_rows<E: Extractor>(c: &mut Criterion, name: &str, fields: &[(&str, PgType)], messages: &[Vec<u8>]) {
    let mut row = JsonRow::<E>::new(fields);
    bench_per_message(c, name, messages, |message, fast, slow| {
        black_box(row.encode(message, fast, slow).ok());
    });
}

/// The extractor alone: validate and extract `fields` (none: validation only).
fn bench_extract<E: Extractor>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    fields: &[(&str, PgType)],
    messages: &[String],
) {
    let mut extractor = E::create(JsonKind::Json);
    let slots: Vec<usize> = fields.iter().map(|(key, _)| extractor.add(&JsonPath::key(key))).collect();
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            let doc = black_box(messages[i % messages.len()].as_str());
            i += 1;
            let facts = extractor.run(doc).expect("valid message");
            let mut total = 0;
            for slot in &slots {
                total += extractor.get(doc, *slot).map_or(0, str::len);
            }
            black_box((facts, total))
        })
    });
}

/// An extractor benchmark: its name, the fields extracted, the messages.
type ExtractCase<'a> = (&'a str, &'a [(&'a str, PgType)], &'a [Vec<u8>]);

fn json_extract(c: &mut Criterion, cases: &[ExtractCase<'_>]) {
    let mut group = c.benchmark_group("json_extract");
    for (case, fields, messages) in cases {
        let messages: Vec<String> = messages.iter().map(|m| String::from_utf8(m.clone()).expect("UTF-8")).collect();
        bench_extract::<JsonExtractor>(&mut group, &format!("{case}/new"), fields, &messages);
        bench_extract::<SonicJsonExtractor>(&mut group, &format!("{case}/old"), fields, &messages);
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let five = five_field_messages(10_000);
    let fields5 = [
        ("id", PgType::Int4),
        ("big", PgType::Int8),
        ("name", PgType::Text),
        ("ts", PgType::Timestamp),
        ("score", PgType::Float8),
    ];
    let plan5 = json_plan(&fields5);
    bench_messages(c, "json_5_fields", &plan5, &five, false);
    bench_messages(c, "json_5_fields_fs_rows", &plan5, &five, true);
    bench_json_rows::<SonicJsonExtractor>(c, "json_5_fields_old", &fields5, &five);

    let twenty = twenty_field_messages(10_000);
    let fields: Vec<(String, PgType)> = (0..20)
        .map(|f| {
            let ty = match f % 4 {
                0 => PgType::Int8,
                1 => PgType::Text,
                2 => PgType::Float8,
                _ => PgType::Timestamp,
            };
            (format!("f{f}"), ty)
        })
        .collect();
    let refs: Vec<(&str, PgType)> = fields.iter().map(|(k, t)| (k.as_str(), *t)).collect();
    bench_messages(c, "json_20_fields", &json_plan(&refs), &twenty, false);
    bench_json_rows::<SonicJsonExtractor>(c, "json_20_fields_old", &refs, &twenty);

    let document = DecodePlan {
        format: SourceFormat::Json(JsonKind::Json),
        fast_columns: vec![FastColumn::JsonDocument { conversion: conversion(PgType::Json, PgType::Json) }],
        context: EncodeContext { session_time_zone_is_utc: true },
    };
    bench_messages(c, "json_whole_document", &document, &five, false);
    bench_json_rows::<SonicJsonExtractor>(c, "json_whole_document_old", &[], &five);

    json_extract(c, &[("5_fields", &fields5, &five), ("20_fields", &refs, &twenty), ("whole_document", &[], &five)]);

    let csv: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            format!("{i},{},abcdefghij{i:010},2026-01-01 00:00:{:02},{i}.125", i as i64 * 1_000_003, i % 60)
                .into_bytes()
        })
        .collect();
    let mut options = CsvOptions::new(5);
    options.delimiter = b',';
    let types = [PgType::Int4, PgType::Int8, PgType::Text, PgType::Timestamp, PgType::Float8];
    let csv_plan = DecodePlan {
        format: SourceFormat::Csv(options),
        fast_columns: types
            .iter()
            .enumerate()
            .map(|(index, ty)| FastColumn::CsvField { index, conversion: conversion(*ty, *ty) })
            .collect(),
        context: EncodeContext { session_time_zone_is_utc: true },
    };
    bench_messages(c, "csv_5_fields", &csv_plan, &csv, false);
}

criterion_group!(benches, codec);
criterion_main!(benches);

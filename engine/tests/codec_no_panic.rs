//! Message bytes are outside data: no message may panic the codec. Every
//! supported conversion, in JSON and CSV plans, is fed random bytes, valid
//! messages cut at every byte, multi-byte and odd bytes inserted at every
//! position, and values at the edges of each type. Whatever the outcome
//! (fast, slow, rejected), a fast row must still be a well-formed tuple.
//!
//! The JSON extractor itself is compared against the sonic-rs walker on
//! generated documents in `json_differential.rs`; here the values it yields
//! go on through the conversions.

use flowserver_engine::codec::pgtype::PgType;
use flowserver_engine::codec::{
    Conversion, CsvOptions, DecodePlan, EncodeContext, Encoded, FastColumn, JsonKind, JsonPath, RowEncoder,
    SourceFormat,
};

/// xorshift64*: reproducible, no dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

fn types() -> Vec<PgType> {
    vec![
        PgType::Int2,
        PgType::Int4,
        PgType::Int8,
        PgType::Float4,
        PgType::Float8,
        PgType::Bool,
        PgType::Text,
        PgType::Varchar(None),
        PgType::Varchar(Some(1)),
        PgType::Varchar(Some(5)),
        PgType::Json,
        PgType::Jsonb,
        PgType::Timestamp,
        PgType::Timestamptz,
        PgType::Date,
        PgType::Numeric(None),
        PgType::Numeric(Some((1, 0))),
        PgType::Numeric(Some((5, 2))),
        PgType::Numeric(Some((1000, 999))),
        PgType::Uuid,
    ]
}

fn conversions() -> Vec<Conversion> {
    let types = types();
    let mut all = Vec::new();
    for &cast in &types {
        for &target in &types {
            all.extend(Conversion::new(cast, target));
        }
    }
    assert!(all.len() > 20, "{all:?}");
    all
}

/// Values at the edges of the types, as text.
const VALUES: &[&str] = &[
    "0",
    "-0",
    "32767",
    "-32769",
    "2147483648",
    "9223372036854775807",
    "-9223372036854775809",
    "99999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e-400",
    "1.5e+99999999999999999999",
    "0.000000000000000000000000000001",
    "123.455",
    "99.995",
    "NaN",
    "Infinity",
    "-inf",
    "true",
    "f",
    "2026-01-02T03:04:05Z",
    "2026-01-02 03:04:05.123456+05:30",
    "2026-01-02T03:04:05+\u{20ac}ab",
    "0001-01-01",
    "9999-12-31T23:59:60",
    "294277-01-01",
    "2023-02-29",
    "4713-01-01 BC",
    "550e8400-e29b-41d4-a716-446655440000",
    "{550e8400e29b41d4a716446655440000}",
    "550e8400-e29b-41d4-a716-44665544000\u{e9}",
    "h\u{e9}llo",
    "\u{1f600}\u{1f600}",
    "",
    " ",
];

fn json_plans() -> Vec<DecodePlan> {
    let context = EncodeContext { session_time_zone_is_utc: true };
    let mut plans = Vec::new();
    for kind in [JsonKind::Json, JsonKind::Jsonb] {
        let mut columns: Vec<FastColumn> = conversions()
            .into_iter()
            .map(|conversion| FastColumn::JsonPath { path: JsonPath::key("v"), conversion })
            .collect();
        columns.push(FastColumn::JsonPath {
            path: JsonPath::elements(&["a", "0", "b"]),
            conversion: Conversion::new(PgType::Text, PgType::Text).unwrap(),
        });
        columns.push(FastColumn::SourceText { source_index: 0 });
        let document = match kind {
            JsonKind::Json => PgType::Json,
            JsonKind::Jsonb => PgType::Jsonb,
        };
        columns.push(FastColumn::JsonDocument { conversion: Conversion::new(document, document).unwrap() });
        plans.push(DecodePlan { format: SourceFormat::Json(kind), fast_columns: columns, context });
    }
    plans
}

fn csv_plan() -> DecodePlan {
    let conversions = conversions();
    let columns = conversions.len();
    let mut fast: Vec<FastColumn> = conversions
        .into_iter()
        .enumerate()
        .map(|(index, conversion)| FastColumn::CsvField { index, conversion })
        .collect();
    fast.push(FastColumn::SourceText { source_index: 0 });
    let mut options = CsvOptions::new(columns);
    options.fill_missing_fields = true;
    options.null_string = b"\\N".to_vec();
    DecodePlan {
        format: SourceFormat::Csv(options),
        fast_columns: fast,
        context: EncodeContext { session_time_zone_is_utc: false },
    }
}

/// Walks binary COPY tuples: each a field count, then fields of a length
/// (-1 NULL) and that many bytes. Panics (fails the test) if malformed.
fn check_tuples(mut buf: &[u8]) {
    while !buf.is_empty() {
        let (count, rest) = buf.split_first_chunk::<2>().expect("field count");
        buf = rest;
        for _ in 0..u16::from_be_bytes(*count) {
            let (len, rest) = buf.split_first_chunk::<4>().expect("field length");
            let len = i32::from_be_bytes(*len);
            buf = match usize::try_from(len) {
                Ok(len) => rest.get(len..).expect("field bytes"),
                Err(_) => {
                    assert_eq!(len, -1);
                    rest
                }
            };
        }
    }
}

/// One plan per conversion and format, so that every conversion runs (a
/// row stops at its first column that is not fast), and the wide plans.
fn all_plans() -> Vec<DecodePlan> {
    let mut plans = json_plans();
    plans.push(csv_plan());
    for conversion in conversions() {
        for kind in [JsonKind::Json, JsonKind::Jsonb] {
            plans.push(DecodePlan {
                format: SourceFormat::Json(kind),
                fast_columns: vec![FastColumn::JsonPath { path: JsonPath::key("v"), conversion }],
                context: EncodeContext { session_time_zone_is_utc: true },
            });
        }
        plans.push(DecodePlan {
            format: SourceFormat::Csv(CsvOptions::new(1)),
            fast_columns: vec![FastColumn::CsvField { index: 0, conversion }],
            context: EncodeContext { session_time_zone_is_utc: true },
        });
    }
    plans
}

#[derive(Default, Debug)]
struct Outcomes {
    fast: usize,
    slow: usize,
    rejected: usize,
}

fn encode_all(encoders: &mut [RowEncoder], message: &[u8], outcomes: &mut Outcomes) {
    for encoder in encoders.iter_mut() {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let encoded = encoder.encode(Some(message), &mut fast, &mut slow);
        match encoded {
            Encoded::Fast => outcomes.fast += 1,
            Encoded::Slow => outcomes.slow += 1,
            Encoded::Rejected(_) => outcomes.rejected += 1,
        }
        match encoded {
            Encoded::Fast => assert!(slow.is_empty()),
            Encoded::Slow => assert!(fast.is_empty()),
            Encoded::Rejected(_) => assert!(fast.is_empty() && slow.is_empty()),
        }
        check_tuples(&fast);
        check_tuples(&slow);
    }
}

/// Messages each plan understands, built from the edge values.
fn samples() -> Vec<Vec<u8>> {
    let columns = conversions().len();
    let mut out = Vec::new();
    for value in VALUES {
        let json_value = serde_json::to_string(value).unwrap();
        out.push(format!(r#"{{"v": {json_value}, "a": [{{"b": {json_value}}}]}}"#).into_bytes());
        if value.bytes().all(|b| b.is_ascii_digit() || b"-+.e".contains(&b)) && !value.is_empty() {
            out.push(format!(r#"{{"v": {value}}}"#).into_bytes());
        }
        let fields: Vec<String> = (0..columns).map(|_| format!("\"{value}\"")).collect();
        out.push(fields.join(",").into_bytes());
        out.push(vec![*value; columns].join(",").into_bytes());
    }
    out
}

#[test]
fn no_message_panics_the_row_encoder() {
    let mut encoders: Vec<RowEncoder> = all_plans().iter().map(RowEncoder::new).collect();
    let mut outcomes = Outcomes::default();
    let oddities: [&[u8]; 10] = [
        b"\xc3\xa9",
        "\u{20ac}".as_bytes(),
        "\u{1f600}".as_bytes(),
        b"\xff",
        b"\xe2\x82",
        b"\0",
        b"\\",
        b"\"",
        b",",
        b"\n",
    ];
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for sample in samples() {
        // Every cut of the short messages; of the wide CSV records, every 16th.
        for end in (0..=sample.len()).filter(|end| sample.len() < 160 || end % 16 == 0) {
            encode_all(&mut encoders, &sample[..end], &mut outcomes);
        }
        // Insertions at every position are many: sample a few per message.
        for _ in 0..6 {
            let at = random.below(sample.len() + 1);
            let mut changed = sample[..at].to_vec();
            changed.extend_from_slice(oddities[random.below(oddities.len())]);
            changed.extend_from_slice(&sample[at..]);
            encode_all(&mut encoders, &changed, &mut outcomes);
        }
    }
    let alphabet = b"{}[]\":,0123456789.eE+-tfnul\\u \t\nabc\xc3\xa9\xff";
    for _ in 0..600 {
        let len = random.below(80);
        let bytes: Vec<u8> = (0..len).map(|_| alphabet[random.below(alphabet.len())]).collect();
        encode_all(&mut encoders, &bytes, &mut outcomes);
        let raw: Vec<u8> = (0..len).map(|_| random.next().to_le_bytes()[0]).collect();
        encode_all(&mut encoders, &raw, &mut outcomes);
    }
    for encoder in &mut encoders {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let _ = encoder.encode(None, &mut fast, &mut slow);
        check_tuples(&fast);
        check_tuples(&slow);
    }
    // The loop reached every outcome, fast rows through the conversions included.
    assert!(outcomes.fast > 5_000 && outcomes.slow > 100_000 && outcomes.rejected > 100_000, "{outcomes:?}");
}

#[test]
fn no_text_panics_a_conversion() {
    let context = [EncodeContext { session_time_zone_is_utc: true }, EncodeContext { session_time_zone_is_utc: false }];
    let mut out = Vec::new();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for conversion in conversions() {
        for value in VALUES {
            for end in (0..=value.len()).filter(|&end| value.is_char_boundary(end)) {
                for ctx in &context {
                    out.clear();
                    if conversion.encode(&value[..end], ctx, &mut out).is_ok() {
                        check_tuples(&[&[0, 1][..], &out].concat());
                    }
                }
            }
            for _ in 0..8 {
                let mut text = (*value).to_owned();
                let mut at = random.below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert(at, ['\u{e9}', '\u{20ac}', '\u{1f600}', '\0', '.', '-', ' '][random.below(7)]);
                out.clear();
                if conversion.encode(&text, &context[0], &mut out).is_ok() {
                    check_tuples(&[&[0, 1][..], &out].concat());
                }
            }
        }
    }
}

#[test]
fn no_bytes_panic_the_fs_formatter_row_reader() {
    use flowserver_engine::codec::FsRowReader;
    let mut random = Random(0x0123_4567_89ab_cdef);
    let mut valid = Vec::new();
    flowserver_engine::codec::fsrow::put_row(&mut valid, &[Some(b"ab"), None, Some("\u{20ac}".as_bytes())]);
    for _ in 0..2000 {
        let mut bytes = valid.clone();
        for _ in 0..random.below(4) {
            let at = random.below(bytes.len());
            bytes[at] = random.next().to_le_bytes()[0];
        }
        bytes.truncate(random.below(bytes.len() + 1));
        let noise: Vec<u8> = (0..random.below(40)).map(|_| random.next().to_le_bytes()[0]).collect();
        for data in [&bytes, &noise] {
            for row in FsRowReader::new(data).chain(FsRowReader::with_columns(data, 3)).flatten() {
                let _ = row.fields().count();
            }
        }
    }
}

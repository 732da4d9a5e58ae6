//! Target column types and exact text → binary conversions.
//!
//! # Contract
//!
//! A [`Conversion`] turns the text a mapping produces (a JSON extraction, a
//! CSV field) into the binary COPY field of the target column, computing
//! exactly what PostgreSQL would: the `cast` type's input function applied to
//! the text, then the assignment cast to the `target` type. It only handles a
//! strict subset of each input syntax (listed below); any other text gives
//! [`NotFast`], never a guess, and the message then goes to the database as
//! a slow row so PostgreSQL computes the value (or reports its own error).
//!
//! | type | fast subset |
//! | --- | --- |
//! | int2/int4/int8 | `-?[0-9]+`, in range of the cast type |
//! | float4/float8 | JSON number syntax; not infinite, not underflowing to 0 |
//! | bool | `true`, `false`, `t`, `f` |
//! | text/varchar(n) | any text without NUL; at most n characters |
//! | json/jsonb | a document PostgreSQL accepts (see [`super::json::validate`]) |
//! | date | `YYYY-MM-DD`, year 0001–9999 |
//! | timestamp/timestamptz | `YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}]` + optional `Z`, `±HH`, `±HH:MM`, `±HHMM` |
//! | numeric | `-?[0-9]+(\.[0-9]+)?`, at most 1000 digits |
//! | uuid | canonical `8-4-4-4-12` hex |
//!
//! The results were checked byte for byte against PostgreSQL 15's `*send()`
//! functions (see the tests).

use std::fmt;

use super::json::{self, JsonFacts, JsonKind};
use super::pgcopy::{begin_field, end_field, put_bool, put_f32, put_f64, put_field, put_i16, put_i32, put_i64};

/// A column type the shard can compute values for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    /// `character varying(n)`; `None` without a length limit.
    Varchar(Option<u32>),
    Json,
    Jsonb,
    Timestamp,
    Timestamptz,
    Date,
    /// `numeric(precision, scale)`; `None` without a typmod.
    Numeric(Option<(u16, u16)>),
    Uuid,
}

/// PostgreSQL's limit on `character varying(n)`.
const MAX_VARCHAR_LENGTH: u32 = 10_485_760;
/// PostgreSQL's limit on a numeric typmod's precision (and, since 15, scale).
const MAX_NUMERIC_PRECISION: u16 = 1000;

impl PgType {
    /// Parses a type as PostgreSQL's `format_type()` prints it ("integer",
    /// "character varying(20)", "timestamp without time zone", "double
    /// precision", "numeric(9,2)", ...) and the common spellings used in casts
    /// ("int", "int4", "bigint", "float8", "varchar(20)", "timestamptz",
    /// "bool", "decimal(9,2)", "text", "jsonb", ...), case-insensitive, extra
    /// spaces tolerated, optionally qualified with `pg_catalog.`.
    ///
    /// `None` for any other type, including types with a typmod the shard does
    /// not reproduce (`timestamp(3)`, a negative numeric scale) and arrays:
    /// such columns are simply never pushed down.
    pub fn parse(name: &str) -> Option<PgType> {
        let lower = name.trim().to_ascii_lowercase();
        let unqualified = match lower.strip_prefix("pg_catalog") {
            Some(rest) => rest.trim_start().strip_prefix('.')?.trim_start(),
            None => lower.as_str(),
        };
        let (words, args) = split_type_name(unqualified)?;
        let words = words.join(" ");
        let no_args = |t: PgType| if args.is_none() { Some(t) } else { None };
        match words.as_str() {
            "smallint" | "int2" => no_args(PgType::Int2),
            "integer" | "int" | "int4" => no_args(PgType::Int4),
            "bigint" | "int8" => no_args(PgType::Int8),
            "real" | "float4" => no_args(PgType::Float4),
            "double precision" | "float8" => no_args(PgType::Float8),
            // `float(p)` is real up to 24 binary digits of precision, double up to 53.
            "float" => match args.as_deref() {
                None => Some(PgType::Float8),
                Some(&[p]) if (1..=24).contains(&p) => Some(PgType::Float4),
                Some(&[p]) if (25..=53).contains(&p) => Some(PgType::Float8),
                _ => None,
            },
            "boolean" | "bool" => no_args(PgType::Bool),
            "text" => no_args(PgType::Text),
            "character varying" | "varchar" => match args.as_deref() {
                None => Some(PgType::Varchar(None)),
                Some(&[n]) if (1..=MAX_VARCHAR_LENGTH).contains(&n) => Some(PgType::Varchar(Some(n))),
                _ => None,
            },
            "json" => no_args(PgType::Json),
            "jsonb" => no_args(PgType::Jsonb),
            "timestamp" | "timestamp without time zone" => no_args(PgType::Timestamp),
            "timestamptz" | "timestamp with time zone" => no_args(PgType::Timestamptz),
            "date" => no_args(PgType::Date),
            "numeric" | "decimal" => {
                let typmod = |p: u32, s: u32| {
                    let p = u16::try_from(p).ok().filter(|p| (1..=MAX_NUMERIC_PRECISION).contains(p))?;
                    let s = u16::try_from(s).ok().filter(|s| *s <= MAX_NUMERIC_PRECISION)?;
                    Some(PgType::Numeric(Some((p, s))))
                };
                match args.as_deref() {
                    None => Some(PgType::Numeric(None)),
                    Some(&[p]) => typmod(p, 0),
                    Some(&[p, s]) => typmod(p, s),
                    _ => None,
                }
            }
            "uuid" => no_args(PgType::Uuid),
            _ => None,
        }
    }
}

/// Splits `character varying ( 20 )` into its words and its typmod numbers.
/// Words after the typmod are kept too (`timestamp(3) with time zone` has
/// some), so they are joined in order; `None` on anything unexpected.
fn split_type_name(s: &str) -> Option<(Vec<&str>, Option<Vec<u32>>)> {
    let (head, args, tail) = match s.find('(') {
        Some(open) => {
            let close = open + s[open..].find(')')?;
            let args = s[open + 1..close]
                .split(',')
                .map(|a| a.trim().parse::<u32>().ok().filter(|_| a.trim().bytes().all(|b| b.is_ascii_digit())))
                .collect::<Option<Vec<u32>>>()?;
            (&s[..open], Some(args), &s[close + 1..])
        }
        None => (s, None, ""),
    };
    if tail.contains(['(', ')']) {
        return None;
    }
    let words: Vec<&str> = head.split_ascii_whitespace().chain(tail.split_ascii_whitespace()).collect();
    let valid_word = |w: &&str| w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if words.is_empty() || !words.iter().all(valid_word) {
        return None;
    }
    Some((words, args))
}

impl fmt::Display for PgType {
    /// The type as `format_type()` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Int2 => f.write_str("smallint"),
            PgType::Int4 => f.write_str("integer"),
            PgType::Int8 => f.write_str("bigint"),
            PgType::Float4 => f.write_str("real"),
            PgType::Float8 => f.write_str("double precision"),
            PgType::Bool => f.write_str("boolean"),
            PgType::Text => f.write_str("text"),
            PgType::Varchar(None) => f.write_str("character varying"),
            PgType::Varchar(Some(n)) => write!(f, "character varying({n})"),
            PgType::Json => f.write_str("json"),
            PgType::Jsonb => f.write_str("jsonb"),
            PgType::Timestamp => f.write_str("timestamp without time zone"),
            PgType::Timestamptz => f.write_str("timestamp with time zone"),
            PgType::Date => f.write_str("date"),
            PgType::Numeric(None) => f.write_str("numeric"),
            PgType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PgType::Uuid => f.write_str("uuid"),
        }
    }
}

/// The value is outside the subset the shard reproduces exactly: the message
/// must go to the database as a slow row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFast;

impl fmt::Display for NotFast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value outside the subset computed exactly on the shard")
    }
}

impl std::error::Error for NotFast {}

/// What the loading session's settings imply for value conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeContext {
    /// The loading session's TimeZone is UTC: zone-less timestamptz text is
    /// UTC. When false such text is never computed on the shard (the
    /// conservative default).
    pub session_time_zone_is_utc: bool,
}

/// How one value becomes a column value: the SQL type the mapping expression
/// produces (`cast`, e.g. `int` in `(value->>'k')::int`, or `text` for a bare
/// `value->>'k'`, or a CSV column's declared type) and the type of the column
/// it is stored in (`target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    pub cast: PgType,
    pub target: PgType,
}

impl Conversion {
    /// `Some` only for pairs where the shard can reproduce PostgreSQL exactly:
    /// `cast == target` (same typmods); int2→int4/int8, int4→int8;
    /// float4→float8; text or varchar → varchar(n) (fast only if the value has
    /// at most n characters); text/varchar → text or unconstrained varchar;
    /// numeric → numeric(p,s) (rounded half away from zero to the scale,
    /// precision overflow → not fast). Anything else is `None`: in particular
    /// text→int, which PostgreSQL refuses as an assignment, so the start-time
    /// check reports it.
    pub fn new(cast: PgType, target: PgType) -> Option<Conversion> {
        supported(cast, target).then_some(Conversion { cast, target })
    }

    /// Appends the value's binary COPY field (length + bytes) for `target`,
    /// computed from `text` with `cast`'s input function then the assignment
    /// to `target`. Returns `Err(NotFast)`, and leaves `out` exactly as it
    /// was, when `text` is outside the subset reproduced exactly (or the pair
    /// is not one [`Conversion::new`] accepts).
    pub fn encode(&self, text: &str, ctx: &EncodeContext, out: &mut Vec<u8>) -> Result<(), NotFast> {
        let start = out.len();
        let result = self.append(text, ctx, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// For a whole JSON message the row encoder has already validated:
    /// appends the json or jsonb field without parsing the document again.
    pub(crate) fn encode_validated_json(&self, doc: &str, facts: JsonFacts, out: &mut Vec<u8>) -> Result<(), NotFast> {
        match (self.cast, self.target) {
            (PgType::Json, PgType::Json) if doc.len() <= MAX_FIELD_BYTES => put_field(out, doc.as_bytes()),
            (PgType::Jsonb, PgType::Jsonb) if facts.jsonb_ok() && doc.len() <= MAX_JSONB_TEXT_BYTES => {
                put_jsonb(out, doc)
            }
            _ => return Err(NotFast),
        }
        Ok(())
    }

    fn append(&self, text: &str, ctx: &EncodeContext, out: &mut Vec<u8>) -> Result<(), NotFast> {
        if !supported(self.cast, self.target) {
            return Err(NotFast);
        }
        match self.cast {
            PgType::Int2 => {
                let v = parse_int(text, i16::MIN.into(), i16::MAX.into())?;
                self.put_int(v, out)
            }
            PgType::Int4 => {
                let v = parse_int(text, i32::MIN.into(), i32::MAX.into())?;
                self.put_int(v, out)
            }
            PgType::Int8 => {
                let v = parse_int(text, i64::MIN, i64::MAX)?;
                self.put_int(v, out)
            }
            PgType::Float4 => {
                let v = parse_float::<f32>(text)?;
                match self.target {
                    PgType::Float4 => put_f32(out, v),
                    _ => put_f64(out, f64::from(v)),
                }
                Ok(())
            }
            PgType::Float8 => {
                put_f64(out, parse_float::<f64>(text)?);
                Ok(())
            }
            PgType::Bool => {
                let v = match text {
                    "true" | "t" => true,
                    "false" | "f" => false,
                    _ => return Err(NotFast),
                };
                put_bool(out, v);
                Ok(())
            }
            PgType::Text | PgType::Varchar(_) => {
                if text.len() > MAX_FIELD_BYTES || text.as_bytes().contains(&0) {
                    return Err(NotFast);
                }
                // An explicit cast to varchar(n) truncates silently and an
                // assignment to varchar(n) may drop trailing spaces: only
                // values that fit both limits are reproduced.
                for limit in [self.cast, self.target] {
                    if let PgType::Varchar(Some(n)) = limit
                        && !fits_chars(text, n)
                    {
                        return Err(NotFast);
                    }
                }
                put_field(out, text.as_bytes());
                Ok(())
            }
            PgType::Json => {
                if text.len() > MAX_FIELD_BYTES {
                    return Err(NotFast);
                }
                json::validate(text, JsonKind::Json)?;
                put_field(out, text.as_bytes());
                Ok(())
            }
            PgType::Jsonb => {
                if text.len() > MAX_JSONB_TEXT_BYTES {
                    return Err(NotFast);
                }
                json::validate(text, JsonKind::Jsonb)?;
                put_jsonb(out, text);
                Ok(())
            }
            PgType::Date => {
                put_i32(out, parse_date(text.as_bytes())?);
                Ok(())
            }
            PgType::Timestamp => {
                let (local, _zone) = parse_timestamp(text.as_bytes())?;
                put_i64(out, local);
                Ok(())
            }
            PgType::Timestamptz => {
                let (local, zone) = parse_timestamp(text.as_bytes())?;
                let utc = match zone {
                    Some(offset_seconds) => local - offset_seconds * USECS_PER_SEC,
                    None if ctx.session_time_zone_is_utc => local,
                    None => return Err(NotFast),
                };
                put_i64(out, utc);
                Ok(())
            }
            PgType::Numeric(cast_typmod) => {
                let typmod = match self.target {
                    PgType::Numeric(Some(t)) => Some(t),
                    _ => cast_typmod,
                };
                encode_numeric(text, typmod, out)
            }
            PgType::Uuid => {
                let mut bytes = [0u8; 16];
                parse_uuid(text.as_bytes(), &mut bytes)?;
                put_field(out, &bytes);
                Ok(())
            }
        }
    }

    fn put_int(&self, v: i64, out: &mut Vec<u8>) -> Result<(), NotFast> {
        // The parse already checked `v` against the cast type's range, and
        // the target is never narrower.
        match self.target {
            PgType::Int2 => put_i16(out, i16::try_from(v).map_err(|_| NotFast)?),
            PgType::Int4 => put_i32(out, i32::try_from(v).map_err(|_| NotFast)?),
            PgType::Int8 => put_i64(out, v),
            _ => return Err(NotFast),
        }
        Ok(())
    }
}

fn supported(cast: PgType, target: PgType) -> bool {
    use PgType::*;
    cast == target
        || matches!(
            (cast, target),
            (Int2, Int4 | Int8)
                | (Int4, Int8)
                | (Float4, Float8)
                | (Text | Varchar(None), Varchar(_))
                | (Varchar(_), Text)
                | (Numeric(None), Numeric(Some(_)))
        )
}

/// Largest text value sent in one field; PostgreSQL's own limit is 1 GB.
const MAX_FIELD_BYTES: usize = (1 << 30) - 1;
/// A jsonb value is limited to 256 MB once converted; its text is kept well
/// below that so the conversion cannot overflow on the server.
const MAX_JSONB_TEXT_BYTES: usize = 64 << 20;

/// `jsonb_recv`'s format: version 1, then the document's text.
fn put_jsonb(out: &mut Vec<u8>, doc: &str) {
    let start = begin_field(out);
    out.push(1);
    out.extend_from_slice(doc.as_bytes());
    end_field(out, start);
}

fn fits_chars(text: &str, limit: u32) -> bool {
    let limit = limit as usize;
    // A string never has more characters than bytes.
    text.len() <= limit || text.chars().count() <= limit
}

/// `-?[0-9]+` within `[min, max]`.
fn parse_int(text: &str, min: i64, max: i64) -> Result<i64, NotFast> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err(NotFast);
    }
    let mut magnitude: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(NotFast);
        }
        magnitude = magnitude.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))).ok_or(NotFast)?;
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or(NotFast)?
    } else {
        i64::try_from(magnitude).map_err(|_| NotFast)?
    };
    if value < min || value > max {
        return Err(NotFast);
    }
    Ok(value)
}

/// Checks `-?digits[.digits][(e|E)[+-]digits]` and reports whether a nonzero
/// digit appears before the exponent.
fn json_number_syntax(bytes: &[u8]) -> Result<bool, NotFast> {
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let mut nonzero = false;
    let digits = |i: &mut usize, nonzero: &mut bool| -> Result<(), NotFast> {
        let start = *i;
        while let Some(b) = bytes.get(*i).filter(|b| b.is_ascii_digit()) {
            *nonzero |= *b != b'0';
            *i += 1;
        }
        if *i == start { Err(NotFast) } else { Ok(()) }
    };
    digits(&mut i, &mut nonzero)?;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        digits(&mut i, &mut nonzero)?;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        digits(&mut i, &mut false)?;
    }
    if i == bytes.len() { Ok(nonzero) } else { Err(NotFast) }
}

trait Float: std::str::FromStr + Copy {
    fn is_finite(self) -> bool;
    fn is_zero(self) -> bool;
}

impl Float for f32 {
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

impl Float for f64 {
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

/// `float4in`/`float8in` on JSON number syntax. Rust's parse is correctly
/// rounded, like glibc's strtof/strtod; PostgreSQL raises "out of range" when
/// strtod overflows, or underflows to zero from a nonzero input (denormal
/// results are accepted).
fn parse_float<F: Float>(text: &str) -> Result<F, NotFast> {
    let nonzero = json_number_syntax(text.as_bytes())?;
    let v: F = text.parse().map_err(|_| NotFast)?;
    if !v.is_finite() || (v.is_zero() && nonzero) {
        return Err(NotFast);
    }
    Ok(v)
}

const USECS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Fixed-width ASCII digits; `None` if any byte is not a digit.
fn digits_at(bytes: &[u8], start: usize, len: usize) -> Option<u32> {
    let field = bytes.get(start..start + len)?;
    field.iter().try_fold(0u32, |acc, b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` at the start of `bytes` → days since 2000-01-01.
fn parse_ymd(bytes: &[u8]) -> Result<i64, NotFast> {
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(NotFast);
    }
    let year = digits_at(bytes, 0, 4).ok_or(NotFast)?;
    let month = digits_at(bytes, 5, 2).ok_or(NotFast)?;
    let day = digits_at(bytes, 8, 2).ok_or(NotFast)?;
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(NotFast);
    }
    Ok(days_from_civil(year, month, day) - PG_EPOCH_DAYS)
}

fn parse_date(bytes: &[u8]) -> Result<i32, NotFast> {
    if bytes.len() != 10 {
        return Err(NotFast);
    }
    i32::try_from(parse_ymd(bytes)?).map_err(|_| NotFast)
}

/// The strict ISO subset of `timestamp_in`: µs since 2000-01-01 00:00:00 of
/// the written local time, and the zone offset in seconds east of UTC if one
/// was written.
fn parse_timestamp(bytes: &[u8]) -> Result<(i64, Option<i64>), NotFast> {
    if bytes.len() < 19 || !matches!(bytes[10], b'T' | b' ') || bytes[13] != b':' || bytes[16] != b':' {
        return Err(NotFast);
    }
    let days = parse_ymd(bytes)?;
    let hour = digits_at(bytes, 11, 2).ok_or(NotFast)?;
    let minute = digits_at(bytes, 14, 2).ok_or(NotFast)?;
    let second = digits_at(bytes, 17, 2).ok_or(NotFast)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(NotFast);
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(b) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            micros = micros * 10 + i64::from(b - b'0');
            i += 1;
        }
        let count = i - start;
        // More than 6 digits are rounded by PostgreSQL: outside the subset.
        if count == 0 || count > 6 {
            return Err(NotFast);
        }
        micros *= 10i64.pow(6 - count as u32);
    }
    let zone = match &bytes[i..] {
        [] => None,
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hh, mm) = match rest.len() {
                2 => (digits_at(rest, 0, 2), Some(0)),
                4 => (digits_at(rest, 0, 2), digits_at(rest, 2, 2)),
                5 if rest[2] == b':' => (digits_at(rest, 0, 2), digits_at(rest, 3, 2)),
                _ => return Err(NotFast),
            };
            let (hh, mm) = (hh.ok_or(NotFast)?, mm.ok_or(NotFast)?);
            // PostgreSQL rejects displacements beyond ±15:59.
            if hh > 15 || mm > 59 {
                return Err(NotFast);
            }
            let seconds = i64::from(hh * 3600 + mm * 60);
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return Err(NotFast),
    };
    let seconds = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second);
    Ok((seconds * USECS_PER_SEC + micros, zone))
}

fn parse_uuid(bytes: &[u8], out: &mut [u8; 16]) -> Result<(), NotFast> {
    if bytes.len() != 36 {
        return Err(NotFast);
    }
    let mut nibbles = bytes.iter().enumerate().filter_map(|(i, b)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            // A hyphen position: yields nothing, or a marker error.
            (*b != b'-').then_some(None)
        } else {
            Some((*b as char).to_digit(16))
        }
    });
    for byte in out.iter_mut() {
        let hi = nibbles.next().flatten().ok_or(NotFast)?;
        let lo = nibbles.next().flatten().ok_or(NotFast)?;
        // Two hex digits (each below 16): the byte is exact.
        *byte = ((hi << 4) | lo) as u8;
    }
    if nibbles.next().is_some() {
        return Err(NotFast);
    }
    Ok(())
}

/// Digits accepted in a numeric; far below PostgreSQL's limits (131072
/// before the point, 16383 after) so no overflow check is ever needed.
const MAX_NUMERIC_DIGITS: usize = 1000;
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
/// Base-10000 digits of the largest value handled: integer part, carry, and
/// up to 1000 fraction digits (scale) in groups of 4.
const MAX_NUMERIC_GROUPS: usize =
    (MAX_NUMERIC_DIGITS + 1).div_ceil(4) + (MAX_NUMERIC_PRECISION as usize).div_ceil(4) + 1;

/// `numeric_in` (then `apply_typmod` for `numeric(p,s)`) and `numeric_send`.
fn encode_numeric(text: &str, typmod: Option<(u16, u16)>, out: &mut Vec<u8>) -> Result<(), NotFast> {
    let bytes = text.as_bytes();
    let (negative, body) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (int, frac) = match body.iter().position(|b| *b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &body[body.len()..]),
    };
    let has_dot = int.len() < body.len();
    if int.is_empty()
        || (has_dot && frac.is_empty())
        || int.len() + frac.len() > MAX_NUMERIC_DIGITS
        || !int.iter().chain(frac).all(u8::is_ascii_digit)
    {
        return Err(NotFast);
    }
    let scale = typmod.map_or(frac.len(), |(_, s)| usize::from(s));

    // Decimal digits of the (rounded) magnitude: a carry slot, the integer
    // part, then exactly `scale` fraction digits.
    let mut dec = [0u8; 1 + MAX_NUMERIC_DIGITS + MAX_NUMERIC_PRECISION as usize];
    let int_len = 1 + int.len();
    let len = int_len + scale;
    for (d, b) in dec[1..].iter_mut().zip(int.iter().chain(frac.iter().take(scale))) {
        *d = b - b'0';
    }
    // numeric rounds half away from zero, on the magnitude.
    if frac.get(scale).is_some_and(|b| *b >= b'5') {
        for d in dec[..len].iter_mut().rev() {
            if *d == 9 {
                *d = 0;
            } else {
                *d += 1;
                break;
            }
        }
    }
    let first_nonzero = dec[..len].iter().position(|d| *d != 0);
    if let (Some((precision, scale)), Some(first)) = (typmod, first_nonzero) {
        // Digits before the decimal point, counted from the first significant
        // one (negative for values below 0.1): `apply_typmod`'s check.
        let integer_digits = int_len as i64 - first as i64;
        if integer_digits > i64::from(precision) - i64::from(scale) {
            return Err(NotFast);
        }
    }

    // Regroup into base-10000 digits aligned on the decimal point.
    let lead_pad = (4 - int_len % 4) % 4;
    let int_groups = (int_len + lead_pad) / 4;
    let frac_groups = scale.div_ceil(4);
    let digit = |padded: usize| -> u16 {
        // Position in the padded sequence → digit, zeros in the padding.
        padded.checked_sub(lead_pad).filter(|i| *i < len).map_or(0, |i| u16::from(dec[i]))
    };
    let mut groups = [0u16; MAX_NUMERIC_GROUPS];
    let total = int_groups + frac_groups;
    for (g, slot) in groups[..total].iter_mut().enumerate() {
        let p = g * 4;
        *slot = digit(p) * 1000 + digit(p + 1) * 100 + digit(p + 2) * 10 + digit(p + 3);
    }
    let (first, last) =
        match (groups[..total].iter().position(|g| *g != 0), groups[..total].iter().rposition(|g| *g != 0)) {
            (Some(first), Some(last)) => (first, last),
            _ => (0, 0),
        };
    let ndigits = if first_nonzero.is_some() { last - first + 1 } else { 0 };
    let weight = if ndigits == 0 { 0 } else { int_groups as i64 - 1 - first as i64 };
    let sign = if negative && ndigits > 0 { NUMERIC_NEG } else { NUMERIC_POS };

    // At most MAX_NUMERIC_DIGITS digits and a scale of at most 1000 (both
    // checked above): the group count, weight and scale all fit i16.
    debug_assert!(ndigits <= MAX_NUMERIC_GROUPS && scale <= MAX_NUMERIC_DIGITS.max(usize::from(MAX_NUMERIC_PRECISION)));
    let start = begin_field(out);
    out.extend_from_slice(&(ndigits as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as i16).to_be_bytes());
    if ndigits > 0 {
        for g in &groups[first..=last] {
            out.extend_from_slice(&g.to_be_bytes());
        }
    }
    end_field(out, start);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: EncodeContext = EncodeContext { session_time_zone_is_utc: true };
    const NOT_UTC: EncodeContext = EncodeContext { session_time_zone_is_utc: false };

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The field `encode` appends: a length word, then the bytes psql printed
    /// for the `*send()` call (without its `\x`).
    fn field(send_hex: &str) -> Vec<u8> {
        let bytes = hex(send_hex);
        let mut v = (bytes.len() as i32).to_be_bytes().to_vec();
        v.extend(bytes);
        v
    }

    fn enc(cast: PgType, target: PgType, text: &str) -> Result<Vec<u8>, NotFast> {
        enc_ctx(cast, target, text, &UTC)
    }

    fn enc_ctx(cast: PgType, target: PgType, text: &str, ctx: &EncodeContext) -> Result<Vec<u8>, NotFast> {
        let conversion = Conversion::new(cast, target).expect("supported pair");
        let mut out = vec![0xee];
        let result = conversion.encode(text, ctx, &mut out);
        match result {
            Ok(()) => {
                assert_eq!(out[0], 0xee);
                Ok(out[1..].to_vec())
            }
            Err(e) => {
                assert_eq!(out, [0xee], "out must be left untouched on NotFast");
                Err(e)
            }
        }
    }

    fn same(t: PgType, text: &str) -> Result<Vec<u8>, NotFast> {
        enc(t, t, text)
    }

    #[test]
    fn parse_format_type_names_and_cast_spellings() {
        use PgType::*;
        let cases = [
            ("smallint", Int2),
            ("int2", Int2),
            ("integer", Int4),
            ("INT", Int4),
            ("int4", Int4),
            ("bigint", Int8),
            ("int8", Int8),
            ("real", Float4),
            ("float4", Float4),
            ("double precision", Float8),
            ("  Double   Precision ", Float8),
            ("float8", Float8),
            ("float", Float8),
            ("float(24)", Float4),
            ("float(25)", Float8),
            ("boolean", Bool),
            ("bool", Bool),
            ("text", Text),
            ("character varying(20)", Varchar(Some(20))),
            ("character varying ( 20 )", Varchar(Some(20))),
            ("character varying", Varchar(None)),
            ("VARCHAR(5)", Varchar(Some(5))),
            ("varchar", Varchar(None)),
            ("json", Json),
            ("jsonb", Jsonb),
            ("timestamp without time zone", Timestamp),
            ("timestamp", Timestamp),
            ("timestamp with time zone", Timestamptz),
            ("timestamptz", Timestamptz),
            ("date", Date),
            ("numeric", Numeric(None)),
            ("numeric(9,2)", Numeric(Some((9, 2)))),
            ("numeric(9, 2)", Numeric(Some((9, 2)))),
            ("decimal(9,2)", Numeric(Some((9, 2)))),
            ("numeric(5)", Numeric(Some((5, 0)))),
            ("numeric(2,3)", Numeric(Some((2, 3)))),
            ("uuid", Uuid),
            ("pg_catalog.int4", Int4),
        ];
        for (name, expected) in cases {
            assert_eq!(PgType::parse(name), Some(expected), "{name}");
        }
        for name in [
            "character(5)",
            "char",
            "integer[]",
            "timestamp(3) without time zone",
            "timestamp(3)",
            "numeric(9,-2)",
            "numeric(0,0)",
            "numeric(1001)",
            "varchar(0)",
            "float(54)",
            "int(4)",
            "time",
            "interval",
            "bytea",
            "",
            "\"int4\"",
            "my_schema.int4",
            "double",
            "integer integer",
        ] {
            assert_eq!(PgType::parse(name), None, "{name}");
        }
    }

    #[test]
    fn display_is_format_type_and_parses_back() {
        use PgType::*;
        for t in [
            Int2,
            Int4,
            Int8,
            Float4,
            Float8,
            Bool,
            Text,
            Varchar(None),
            Varchar(Some(20)),
            Json,
            Jsonb,
            Timestamp,
            Timestamptz,
            Date,
            Numeric(None),
            Numeric(Some((9, 2))),
            Uuid,
        ] {
            assert_eq!(PgType::parse(&t.to_string()), Some(t), "{t}");
        }
        assert_eq!(Varchar(Some(20)).to_string(), "character varying(20)");
    }

    #[test]
    fn supported_pairs() {
        use PgType::*;
        let yes = [
            (Int4, Int4),
            (Int2, Int4),
            (Int2, Int8),
            (Int4, Int8),
            (Float4, Float8),
            (Text, Varchar(Some(5))),
            (Varchar(None), Varchar(Some(5))),
            (Text, Varchar(None)),
            (Varchar(Some(3)), Text),
            (Varchar(None), Text),
            (Text, Text),
            (Varchar(Some(5)), Varchar(Some(5))),
            (Numeric(None), Numeric(Some((9, 2)))),
            (Numeric(Some((9, 2))), Numeric(Some((9, 2)))),
            (Json, Json),
            (Jsonb, Jsonb),
            (Timestamptz, Timestamptz),
        ];
        for (c, t) in yes {
            assert!(Conversion::new(c, t).is_some(), "{c} -> {t}");
        }
        let no = [
            (Text, Int4),
            (Int8, Int4),
            (Int4, Int2),
            (Float8, Float4),
            (Int4, Float8),
            (Int4, Numeric(None)),
            (Varchar(Some(3)), Varchar(Some(5))),
            (Numeric(Some((9, 2))), Numeric(None)),
            (Numeric(Some((9, 2))), Numeric(Some((9, 3)))),
            (Json, Jsonb),
            (Jsonb, Json),
            (Text, Json),
            (Json, Text),
            (Timestamp, Timestamptz),
            (Timestamptz, Timestamp),
            (Date, Timestamp),
            (Text, Date),
            (Uuid, Text),
        ];
        for (c, t) in no {
            assert!(Conversion::new(c, t).is_none(), "{c} -> {t}");
        }
        // A hand-built unsupported pair is refused by encode too.
        let bogus = Conversion { cast: PgType::Text, target: PgType::Int4 };
        let mut out = Vec::new();
        assert_eq!(bogus.encode("1", &UTC, &mut out), Err(NotFast));
        assert!(out.is_empty());
    }

    #[test]
    fn integers() {
        use PgType::*;
        // SELECT int2send('12'), int2send('-32768'), int4send('12'), int4send('-2147483648'),
        //        int8send('9223372036854775807'), int8send('-1'), int4send('007'), int8send('-0')
        assert_eq!(same(Int2, "12"), Ok(field("000c")));
        assert_eq!(same(Int2, "-32768"), Ok(field("8000")));
        assert_eq!(same(Int4, "12"), Ok(field("0000000c")));
        assert_eq!(same(Int4, "-2147483648"), Ok(field("80000000")));
        assert_eq!(same(Int8, "9223372036854775807"), Ok(field("7fffffffffffffff")));
        assert_eq!(same(Int8, "-9223372036854775808"), Ok(field("8000000000000000")));
        assert_eq!(same(Int8, "-1"), Ok(field("ffffffffffffffff")));
        assert_eq!(same(Int4, "007"), Ok(field("00000007")));
        assert_eq!(same(Int8, "-0"), Ok(field("0000000000000000")));
        // Widening assignments.
        assert_eq!(enc(Int2, Int4, "-2"), Ok(field("fffffffe")));
        assert_eq!(enc(Int2, Int8, "12"), Ok(field("000000000000000c")));
        assert_eq!(enc(Int4, Int8, "-2147483648"), Ok(field("ffffffff80000000")));
        // Range is the cast type's: `(v->>'k')::smallint` fails on 40000 even into bigint.
        assert_eq!(enc(Int2, Int8, "40000"), Err(NotFast));
        assert_eq!(same(Int2, "32768"), Err(NotFast));
        assert_eq!(same(Int4, "2147483648"), Err(NotFast));
        assert_eq!(same(Int8, "9223372036854775808"), Err(NotFast));
        assert_eq!(same(Int8, "-9223372036854775809"), Err(NotFast));
        assert_eq!(same(Int8, "99999999999999999999999"), Err(NotFast));
        // int4in accepts these, but they are outside the subset.
        for text in [" 1", "1 ", "+1", "1_000", "0x10", "", "-", "1.0", "1e3", "١"] {
            assert_eq!(same(Int4, text), Err(NotFast), "{text:?}");
        }
    }

    #[test]
    fn floats() {
        use PgType::*;
        // SELECT float4send('1.1'), float4send('-0'), float4send('1e-45'), float4send('3.4028235e38'),
        //        float4send('16777217'), float4send('8e-46')
        assert_eq!(same(Float4, "1.1"), Ok(field("3f8ccccd")));
        assert_eq!(same(Float4, "-0"), Ok(field("80000000")));
        assert_eq!(same(Float4, "1e-45"), Ok(field("00000001")));
        assert_eq!(same(Float4, "3.4028235e38"), Ok(field("7f7fffff")));
        assert_eq!(same(Float4, "16777217"), Ok(field("4b800000")));
        assert_eq!(same(Float4, "8e-46"), Ok(field("00000001")));
        // SELECT float8send(float4in('1.1')::float8): the float is widened, not re-parsed.
        assert_eq!(enc(Float4, Float8, "1.1"), Ok(field("3ff19999a0000000")));
        // SELECT float8send('1.1'), float8send('5e-324'), float8send('3e-324'), float8send('0.1'),
        //        float8send('1e308'), float8send('-0'), float8send('0e99999'),
        //        float8send('1.7976931348623157e308')
        assert_eq!(same(Float8, "1.1"), Ok(field("3ff199999999999a")));
        assert_eq!(same(Float8, "5e-324"), Ok(field("0000000000000001")));
        assert_eq!(same(Float8, "3e-324"), Ok(field("0000000000000001")));
        assert_eq!(same(Float8, "0.1"), Ok(field("3fb999999999999a")));
        assert_eq!(same(Float8, "1e308"), Ok(field("7fe1ccf385ebc8a0")));
        assert_eq!(same(Float8, "-0"), Ok(field("8000000000000000")));
        assert_eq!(same(Float8, "0e99999"), Ok(field("0000000000000000")));
        assert_eq!(same(Float8, "0.0E-999"), Ok(field("0000000000000000")));
        assert_eq!(same(Float8, "1.7976931348623157e308"), Ok(field("7fefffffffffffff")));
        // PostgreSQL: '"1e-400" is out of range for type double precision', same for these.
        for text in ["1e-400", "2e-324", "1e309", "-1e309"] {
            assert_eq!(same(Float8, text), Err(NotFast), "{text}");
        }
        for text in ["1e39", "1e-46", "7e-46"] {
            assert_eq!(same(Float4, text), Err(NotFast), "{text}");
        }
        // Accepted by float8in, outside the subset.
        for text in ["NaN", "Infinity", "-inf", " 1", "1 ", "+1", ".5", "1.", "0x1p3", "1e", "1e+", "01.5e", ""] {
            assert_eq!(same(Float8, text), Err(NotFast), "{text:?}");
        }
    }

    #[test]
    fn booleans() {
        // SELECT boolsend(true), boolsend(false)
        for (text, hex) in [("true", "01"), ("t", "01"), ("false", "00"), ("f", "00")] {
            assert_eq!(same(PgType::Bool, text), Ok(field(hex)), "{text}");
        }
        for text in ["TRUE", "True", "yes", "1", "on", " t", "tr"] {
            assert_eq!(same(PgType::Bool, text), Err(NotFast), "{text}");
        }
    }

    #[test]
    fn text_and_varchar() {
        use PgType::*;
        // SELECT textsend('héllo'), varcharsend('ab')
        assert_eq!(same(Text, "héllo"), Ok(field("68c3a96c6c6f")));
        assert_eq!(enc(Text, Varchar(Some(2)), "ab"), Ok(field("6162")));
        // varchar(n) counts characters: 'héllo' is 5 characters in 6 bytes.
        assert_eq!(enc(Text, Varchar(Some(5)), "héllo"), Ok(field("68c3a96c6c6f")));
        assert_eq!(enc(Text, Varchar(Some(4)), "héllo"), Err(NotFast));
        // 'abcd  '::varchar(3) silently truncates; assignment of 'ab  ' drops spaces: both not fast.
        assert_eq!(enc(Text, Varchar(Some(3)), "ab   "), Err(NotFast));
        assert_eq!(enc(Varchar(None), Varchar(Some(3)), "abcd"), Err(NotFast));
        assert_eq!(enc(Text, Varchar(None), "abcd"), Ok(field("61626364")));
        // The cast's own limit applies first (explicit casts truncate).
        assert_eq!(enc(Varchar(Some(3)), Text, "abc"), Ok(field("616263")));
        assert_eq!(enc(Varchar(Some(3)), Text, "abcd"), Err(NotFast));
        assert_eq!(same(Varchar(Some(3)), "abcd"), Err(NotFast));
        assert_eq!(same(Text, ""), Ok(field("")));
        assert_eq!(same(Text, "a\0b"), Err(NotFast));
    }

    #[test]
    fn json_and_jsonb() {
        use PgType::*;
        // SELECT json_send('{"a": 1}'), jsonb_send('{"a": 1}'): jsonb is version 1 + text
        // (jsonb_recv parses the text, so the server's normalisation is not needed here).
        assert_eq!(same(Json, r#"{"a": 1}"#), Ok(field("7b2261223a20317d")));
        assert_eq!(same(Jsonb, r#"{"a": 1}"#), Ok(field("017b2261223a20317d")));
        assert!(same(Json, r#"{"a":"\u0000"}"#).is_ok());
        // jsonb rejects \u0000 ('unsupported Unicode escape sequence') and numbers
        // numeric cannot hold ('value overflows numeric format').
        assert_eq!(same(Jsonb, r#"{"a":"\u0000"}"#), Err(NotFast));
        assert_eq!(same(Jsonb, "1e-20000"), Err(NotFast));
        assert!(same(Json, "1e-20000").is_ok());
        for text in ["", "{", r#"{"a":1,}"#, "[1,]", "01", "{'a':1}", "nul", r#"{"a":1}x"#, r#""\x""#] {
            assert_eq!(same(Json, text), Err(NotFast), "{text:?}");
            assert_eq!(same(Jsonb, text), Err(NotFast), "{text:?}");
        }
    }

    #[test]
    fn dates() {
        // SELECT date_send('2000-01-01'), date_send('1999-12-31'), date_send('0001-01-01'),
        //        date_send('2024-02-29'), date_send('9999-12-31')
        let d = |t| same(PgType::Date, t);
        assert_eq!(d("2000-01-01"), Ok(field("00000000")));
        assert_eq!(d("1999-12-31"), Ok(field("ffffffff")));
        assert_eq!(d("0001-01-01"), Ok(field("fff4dbf9")));
        assert_eq!(d("2024-02-29"), Ok(field("00002279")));
        assert_eq!(d("9999-12-31"), Ok(field("002c95d3")));
        // '0000-01-01' and '2023-02-29' are 'date/time field value out of range'.
        for text in [
            "0000-01-01",
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-1-01",
            "2024-01-01 ",
            "20240101",
            "2024/01/01",
            "10000-01-01",
            "2024-01-01T00:00:00",
        ] {
            assert_eq!(d(text), Err(NotFast), "{text}");
        }
        assert!(d("2000-02-29").is_ok());
    }

    #[test]
    fn timestamps() {
        use PgType::*;
        // SELECT timestamp_send('2024-02-29 12:34:56.789'), timestamp_send('0001-01-01 00:00:00'),
        //        timestamp_send('9999-12-31 23:59:59.999999'), timestamp_send('2000-01-01 00:00:00'),
        //        timestamp_send('1999-12-31T23:59:59.5')
        assert_eq!(same(Timestamp, "2024-02-29 12:34:56.789"), Ok(field("0002b58341728608")));
        assert_eq!(same(Timestamp, "0001-01-01 00:00:00"), Ok(field("ff1fe2ffc59c6000")));
        assert_eq!(same(Timestamp, "9999-12-31 23:59:59.999999"), Ok(field("0380e70b913b7fff")));
        assert_eq!(same(Timestamp, "2000-01-01 00:00:00"), Ok(field("0000000000000000")));
        assert_eq!(same(Timestamp, "1999-12-31T23:59:59.5"), Ok(field("fffffffffff85ee0")));
        // '2024-01-01 10:00:00+05'::timestamp is 2024-01-01 10:00:00: the zone is ignored.
        let plain = same(Timestamp, "2024-01-01 00:00:00");
        for text in
            ["2024-01-01 00:00:00+05", "2024-01-01T00:00:00Z", "2024-01-01 00:00:00-07:30", "2024-01-01 00:00:00+0530"]
        {
            assert_eq!(same(Timestamp, text), plain, "{text}");
        }
        // SET timezone = 'UTC'; SELECT timestamptz_send('2024-01-01 00:00:00+05:30'),
        //   timestamptz_send('2024-01-01 00:00:00Z'), timestamptz_send('2024-01-01 00:00:00-0130'),
        //   timestamptz_send('2024-01-01 00:00:00'), timestamptz_send('0001-01-01 00:00:00+15'),
        //   timestamptz_send('2024-06-01 12:00:00+14:45')
        assert_eq!(same(Timestamptz, "2024-01-01 00:00:00+05:30"), Ok(field("0002b0d138bd3a00")));
        assert_eq!(same(Timestamptz, "2024-01-01T00:00:00Z"), Ok(field("0002b0d5d4e94000")));
        assert_eq!(same(Timestamptz, "2024-01-01 00:00:00-0130"), Ok(field("0002b0d716c6b600")));
        assert_eq!(same(Timestamptz, "2024-01-01 00:00:00"), Ok(field("0002b0d5d4e94000")));
        assert_eq!(same(Timestamptz, "0001-01-01 00:00:00+15"), Ok(field("ff1fe2f332f5c400")));
        assert_eq!(same(Timestamptz, "2024-06-01 12:00:00+14:45"), Ok(field("0002bcc53eb43d00")));
        // Zone-less timestamptz depends on the session's TimeZone.
        assert_eq!(enc_ctx(Timestamptz, Timestamptz, "2024-01-01 00:00:00", &NOT_UTC), Err(NotFast));
        assert_eq!(enc_ctx(Timestamptz, Timestamptz, "2024-01-01 00:00:00Z", &NOT_UTC), Ok(field("0002b0d5d4e94000")));
        // '+16' and '+15:60' are 'time zone displacement out of range', for timestamp too.
        for text in [
            "2024-01-01 00:00:00+16",
            "2024-01-01 00:00:00+15:60",
            "2024-01-01 24:00:00",
            "2024-01-01 23:60:00",
            "2024-01-01 23:59:60",
            "2024-01-01 00:00:00.1234567",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00",
            "2024-01-01",
            "2024-01-01t00:00:00",
            "2024-01-01  00:00:00",
            "2024-01-01 00:00:00 +05",
            "2024-01-01 00:00:00+5",
            "2024-01-01 00:00:00+05:3",
            "2024-01-01 00:00:00z",
            "2024-01-01 00:00:00 UTC",
            "2024-01-01 00:00:00+05:30:00",
            "2023-02-29 00:00:00",
            "epoch",
            "now",
        ] {
            assert_eq!(same(Timestamp, text), Err(NotFast), "{text}");
            assert_eq!(same(Timestamptz, text), Err(NotFast), "{text}");
        }
    }

    #[test]
    fn numerics() {
        use PgType::*;
        let n = |t| same(Numeric(None), t);
        let typed = |p, s, t| enc(Numeric(None), Numeric(Some((p, s))), t);
        // SELECT numeric_send('12345.678'), numeric_send('-0.0001234'), numeric_send('100000000'),
        //        numeric_send('0'), numeric_send('-0.00'), numeric_send('0.0004'), numeric_send('10000')
        assert_eq!(n("12345.678"), Ok(field("0003000100000003000109291a7c")));
        assert_eq!(n("-0.0001234"), Ok(field("0002ffff4000000700010924")));
        assert_eq!(n("100000000"), Ok(field("00010002000000000001")));
        assert_eq!(n("0"), Ok(field("0000000000000000")));
        assert_eq!(n("-0.00"), Ok(field("0000000000000002")));
        assert_eq!(n("0.0004"), Ok(field("0001ffff000000040004")));
        assert_eq!(n("10000"), Ok(field("00010001000000000001")));
        assert_eq!(n("00010000.000"), n("10000.000"));
        // SELECT numeric_send('1.5'::numeric(5,0)), numeric_send('-2.5'::numeric(5,0)),
        //        numeric_send('99.995'::numeric(5,2)), numeric_send('9999.5'::numeric(5,0)),
        //        numeric_send('123'::numeric(6,2)), numeric_send('-0.0004'::numeric(3,3)),
        //        numeric_send('0.5'::numeric(1,0))
        assert_eq!(typed(5, 0, "1.5"), Ok(field("00010000000000000002")));
        assert_eq!(typed(5, 0, "-2.5"), Ok(field("00010000400000000003")));
        assert_eq!(typed(5, 2, "99.995"), Ok(field("00010000000000020064")));
        assert_eq!(typed(5, 0, "9999.5"), Ok(field("00010001000000000001")));
        assert_eq!(typed(6, 2, "123"), Ok(field("0001000000000002007b")));
        assert_eq!(typed(3, 3, "-0.0004"), Ok(field("0000000000000003")));
        assert_eq!(typed(1, 0, "0.5"), Ok(field("00010000000000000001")));
        // '99.995'::numeric(4,2): 'numeric field overflow'; '0.12'::numeric(2,3) too.
        assert_eq!(typed(4, 2, "99.995"), Err(NotFast));
        assert_eq!(typed(2, 3, "0.12"), Err(NotFast));
        assert!(typed(2, 3, "0.012").is_ok());
        assert!(typed(1, 0, "0.0").is_ok());
        assert_eq!(typed(3, 0, "1000"), Err(NotFast));
        assert!(typed(3, 0, "999.4").is_ok());
        assert_eq!(typed(3, 0, "999.5"), Err(NotFast));
        assert_eq!(same(Numeric(Some((5, 0))), "-2.5"), typed(5, 0, "-2.5"), "a typmod cast rounds the same way");
        for text in ["", "-", "1.", ".5", "+1", "1e5", " 1", "1 ", "NaN", "Infinity", "1,5", "--1"] {
            assert_eq!(n(text), Err(NotFast), "{text:?}");
        }
        let long = "9".repeat(1001);
        assert_eq!(n(&long), Err(NotFast));
        let long_ok = format!("{}.{}", "9".repeat(500), "9".repeat(500));
        assert!(n(&long_ok).is_ok());
        let scale_max = format!("0.{}", "5".repeat(999));
        assert!(typed(1000, 1000, &scale_max).is_ok());
    }

    #[test]
    fn numeric_matches_a_reference_implementation() {
        // Cross-checks the base-10000 regrouping against a straightforward
        // string-based reimplementation on many shapes.
        fn reference(text: &str) -> Vec<u8> {
            let neg = text.starts_with('-');
            let body = text.trim_start_matches('-');
            let (int, frac) = body.split_once('.').unwrap_or((body, ""));
            let int = int.trim_start_matches('0');
            let pad_int = format!("{}{}", "0".repeat((4 - int.len() % 4) % 4), int);
            let pad_frac = format!("{}{}", frac, "0".repeat((4 - frac.len() % 4) % 4));
            let mut groups: Vec<u16> = Vec::new();
            for chunk in pad_int.as_bytes().chunks(4).chain(pad_frac.as_bytes().chunks(4)) {
                groups.push(std::str::from_utf8(chunk).unwrap().parse().unwrap());
            }
            let mut weight = pad_int.len() as i32 / 4 - 1;
            while groups.first() == Some(&0) {
                groups.remove(0);
                weight -= 1;
            }
            while groups.last() == Some(&0) {
                groups.pop();
            }
            if groups.is_empty() {
                weight = 0;
            }
            let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
            let mut v = Vec::new();
            v.extend((8 + 2 * groups.len() as i32).to_be_bytes());
            v.extend((groups.len() as i16).to_be_bytes());
            v.extend((weight as i16).to_be_bytes());
            v.extend(sign.to_be_bytes());
            v.extend((frac.len() as i16).to_be_bytes());
            for g in groups {
                v.extend(g.to_be_bytes());
            }
            v
        }
        let ints = ["0", "1", "12", "123", "1234", "12345", "10000", "100000000", "900", "000", "0100"];
        let fracs = ["", "0", "5", "05", "0005", "00005", "1234", "12345", "10", "000010", "99999999"];
        for int in ints {
            for frac in fracs {
                for sign in ["", "-"] {
                    let text = if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
                    assert_eq!(same(PgType::Numeric(None), &text), Ok(reference(&text)), "{text}");
                }
            }
        }
    }

    #[test]
    fn uuids() {
        // SELECT uuid_send('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')
        let expected = Ok(field("a0eebc999c0b4ef8bb6d6bb9bd380a11"));
        assert_eq!(same(PgType::Uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), expected);
        assert_eq!(same(PgType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), expected);
        for text in [
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d_6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(same(PgType::Uuid, text), Err(NotFast), "{text}");
        }
    }
}

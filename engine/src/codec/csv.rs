//! One CSV record per message, with PostgreSQL's `COPY ... (FORMAT csv)`
//! semantics.
//!
//! # Contract
//!
//! [`CsvSplitter::split`] turns a message into exactly the field values
//! `COPY FROM` would read from a file holding only that message, or a
//! [`RejectReason`] where COPY would fail (or would read more than one row):
//!
//! - fields are separated by `delimiter`; a `quote` starts a quoted section
//!   anywhere in a field (`a"b,c"d` is the one field `ab,cd`), and inside it
//!   `escape` followed by `escape` or `quote` stands for that character (with
//!   the default `escape = quote`, `""` is a quote); any other byte, the
//!   delimiter and line breaks included, is literal until the closing quote;
//! - a field whose raw text contained a quote is never NULL; an unquoted field
//!   equal to `null_string` is NULL unless its column is in `force_not_null`;
//! - one trailing line terminator (`\n`, `\r\n` or `\r`) is stripped; an
//!   unquoted line break anywhere else would start a second record and is
//!   rejected ([`RejectReason::CsvUnquotedLineBreak`]);
//! - more fields than columns: "extra data after last expected column"; fewer:
//!   "missing data for column", unless `fill_missing_fields` (Greenplum's FILL
//!   MISSING FIELDS), where missing fields are NULL (the null string for a
//!   `force_not_null` column) but an empty line still is an error when there
//!   are several columns; an unterminated quote and an empty message are
//!   rejected too.
//!
//! The split is byte-based (the special characters are ASCII, so multi-byte
//! UTF-8 text passes through untouched); whether a field is valid UTF-8 is the
//! caller's concern. PostgreSQL's end-of-data marker `\.` has no meaning in a
//! message and is plain data.
//!
//! csv-core is not used: its quoting differs from PostgreSQL's (a quote inside
//! an unquoted field is literal there, an escape escapes any byte) and it does
//! not report whether a field was quoted, which decides NULL.
//!
//! # Allocation
//!
//! Field text is unescaped into the splitter's reusable buffer: once warm,
//! splitting allocates nothing.

use super::row::RejectReason;

/// PostgreSQL `COPY ... (FORMAT csv)` options for one record per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Number of columns a record must have.
    pub columns: usize,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    pub null_string: Vec<u8>,
    /// Per column: never NULL, even when equal to `null_string`.
    pub force_not_null: Vec<bool>,
    /// Missing trailing fields are NULL instead of an error.
    pub fill_missing_fields: bool,
}

impl CsvOptions {
    /// PostgreSQL's defaults: `,`, `"`, escape `"`, empty null string.
    pub fn new(columns: usize) -> CsvOptions {
        CsvOptions {
            columns,
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null_string: Vec::new(),
            force_not_null: vec![false; columns],
            fill_missing_fields: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    null: bool,
}

/// Splits messages into fields, reusing its buffers.
#[derive(Debug, Clone)]
pub struct CsvSplitter {
    options: CsvOptions,
    text: Vec<u8>,
    fields: Vec<Field>,
}

impl CsvSplitter {
    pub fn new(options: CsvOptions) -> CsvSplitter {
        let fields = Vec::with_capacity(options.columns + 1);
        CsvSplitter { options, text: Vec::with_capacity(256), fields }
    }

    pub fn options(&self) -> &CsvOptions {
        &self.options
    }

    /// Splits one message; on success [`CsvSplitter::field`] gives exactly
    /// `options.columns` values.
    pub fn split(&mut self, message: &[u8]) -> Result<(), RejectReason> {
        self.text.clear();
        self.fields.clear();
        if message.is_empty() {
            return Err(RejectReason::EmptyMessage);
        }
        let line = strip_terminator(message);
        let o = &self.options;
        let (delimiter, quote, escape) = (o.delimiter, o.quote, o.escape);
        // `i` only moves onto the end of a run found in `line[i..]` or past a
        // byte `line.get(i)` returned, so it never passes `line.len()`, and a
        // field's raw end is never before its start: the slices below hold.
        let mut i = 0;
        loop {
            let field_start = i;
            let text_start = self.text.len();
            let mut saw_quote = false;
            let (raw_end, found_delimiter) = 'field: loop {
                // Outside quotes.
                let run = line[i..]
                    .iter()
                    .position(|&c| c == delimiter || c == quote || c == b'\n' || c == b'\r')
                    .map_or(line.len(), |p| i + p);
                self.text.extend_from_slice(&line[i..run]);
                i = run;
                let Some(&c) = line.get(i) else {
                    break 'field (i, false);
                };
                i += 1;
                if c == delimiter {
                    break 'field (i - 1, true);
                }
                if c != quote {
                    return Err(RejectReason::CsvUnquotedLineBreak);
                }
                saw_quote = true;
                // Inside quotes: the escape test comes first, as the quote and
                // the escape are usually the same character.
                loop {
                    let run = line[i..].iter().position(|&c| c == quote || c == escape).map_or(line.len(), |p| i + p);
                    self.text.extend_from_slice(&line[i..run]);
                    i = run;
                    let Some(&c) = line.get(i) else {
                        return Err(RejectReason::CsvUnterminatedQuote);
                    };
                    i += 1;
                    if c == escape
                        && let Some(&next) = line.get(i).filter(|&&n| n == escape || n == quote)
                    {
                        self.text.push(next);
                        i += 1;
                        continue;
                    }
                    if c == quote {
                        break;
                    }
                    self.text.push(c);
                }
            };
            let null = !saw_quote && line[field_start..raw_end] == *o.null_string;
            self.fields.push(Field { start: text_start, end: self.text.len(), null });
            if !found_delimiter {
                break;
            }
        }

        let found = self.fields.len();
        if found > o.columns {
            return Err(RejectReason::CsvExtraData { fields: count(found) });
        }
        if found < o.columns {
            if !o.fill_missing_fields {
                return Err(RejectReason::CsvMissingData { column: count(found) });
            }
            // Greenplum: "missing data for column "<second>", found empty data line".
            if line.is_empty() {
                return Err(RejectReason::CsvMissingData { column: 1 });
            }
            for _ in found..o.columns {
                let start = self.text.len();
                self.fields.push(Field { start, end: start, null: true });
            }
        }
        for (column, field) in self.fields.iter_mut().enumerate() {
            if field.null && o.force_not_null.get(column).copied().unwrap_or(false) {
                // The value is the null string itself, as COPY reads it.
                let start = self.text.len();
                self.text.extend_from_slice(&o.null_string);
                *field = Field { start, end: self.text.len(), null: false };
            }
        }
        Ok(())
    }

    /// Number of fields of the last split message.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `index` of the last split message; `None` is NULL (or no such field).
    pub fn field(&self, index: usize) -> Option<&[u8]> {
        let f = self.fields.get(index)?;
        (!f.null).then(|| &self.text[f.start..f.end])
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The message without one trailing `\n`, `\r\n` or `\r`. If that terminator
/// sits inside an open quote the record is unterminated with or without it.
fn strip_terminator(message: &[u8]) -> &[u8] {
    message
        .strip_suffix(b"\r\n")
        .or_else(|| message.strip_suffix(b"\n"))
        .or_else(|| message.strip_suffix(b"\r"))
        .unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_with(options: &CsvOptions, message: &str) -> Result<Vec<Option<String>>, RejectReason> {
        let mut splitter = CsvSplitter::new(options.clone());
        splitter.split(message.as_bytes())?;
        assert_eq!(splitter.len(), options.columns);
        Ok((0..splitter.len()).map(|i| splitter.field(i).map(|f| String::from_utf8(f.to_vec()).unwrap())).collect())
    }

    fn two(message: &str) -> Result<Vec<Option<String>>, RejectReason> {
        split_with(&CsvOptions::new(2), message)
    }

    fn row(values: &[Option<&str>]) -> Result<Vec<Option<String>>, RejectReason> {
        Ok(values.iter().map(|v| v.map(str::to_owned)).collect())
    }

    // Expected values below come from PostgreSQL 15:
    //   CREATE TABLE c2(a text, b text);
    //   \copy c2 from '<file holding the message>' with (format csv <options>)
    //   SELECT a, b FROM c2;

    #[test]
    fn quoting_and_nulls() {
        assert_eq!(two("a,b"), row(&[Some("a"), Some("b")]));
        // a"b,c"d,e → [ab,cd] [e] (with 3 columns: quoting starts mid-field)
        assert_eq!(split_with(&CsvOptions::new(2), r#"a"b,c"d,e"#), row(&[Some("ab,cd"), Some("e")]));
        assert_eq!(two(r#""a""b",c"#), row(&[Some("a\"b"), Some("c")]));
        assert_eq!(two(r#""",x"#), row(&[Some(""), Some("x")]));
        assert_eq!(two(",x"), row(&[None, Some("x")]));
        assert_eq!(two("x,"), row(&[Some("x"), None]));
        assert_eq!(two(r#"x,"""#), row(&[Some("x"), Some("")]));
        assert_eq!(two(r#""a"b"c",d"#), row(&[Some("abc"), Some("d")]));
        assert_eq!(two(" a , b "), row(&[Some(" a "), Some(" b ")]));
        assert_eq!(two("\"a\nb\",c\n"), row(&[Some("a\nb"), Some("c")]));
        assert_eq!(two("\"a\rb\",c\r\n"), row(&[Some("a\rb"), Some("c")]));
        assert_eq!(two("\"a,\"\"b\"\"\r\n\",c"), row(&[Some("a,\"b\"\r\n"), Some("c")]));
        assert_eq!(two("\\.,x"), row(&[Some("\\."), Some("x")]));
        assert_eq!(two("é,\"ü\""), row(&[Some("é"), Some("ü")]));
    }

    #[test]
    fn null_string_and_force_not_null() {
        let mut o = CsvOptions::new(2);
        o.null_string = b"NA".to_vec();
        // NA,"NA" with null 'NA' → NULL, [NA]; with force_not_null (a) → [NA], [NA]
        assert_eq!(split_with(&o, r#"NA,"NA""#), row(&[None, Some("NA")]));
        assert_eq!(split_with(&o, ","), row(&[Some(""), Some("")]));
        assert_eq!(split_with(&o, "NA ,NAN"), row(&[Some("NA "), Some("NAN")]));
        o.force_not_null = vec![true, false];
        assert_eq!(split_with(&o, r#"NA,"NA""#), row(&[Some("NA"), Some("NA")]));
        assert_eq!(split_with(&o, "NA,NA"), row(&[Some("NA"), None]));
        // , with force_not_null (a,b) → [], []
        let mut o = CsvOptions::new(2);
        o.force_not_null = vec![true, true];
        assert_eq!(split_with(&o, ","), row(&[Some(""), Some("")]));
    }

    #[test]
    fn other_escape_quote_and_delimiter() {
        let mut o = CsvOptions::new(2);
        o.escape = b'\\';
        // With escape '\': "a\"b",c → [a"b]; "a\\b",c → [a\b]; "a\nb",c → [a\nb];
        // "a""b",c → [ab]; a\,b → [a\] [b]; x"y\"z",w → [xy"z]
        assert_eq!(split_with(&o, r#""a\"b",c"#), row(&[Some("a\"b"), Some("c")]));
        assert_eq!(split_with(&o, r#""a\\b",c"#), row(&[Some("a\\b"), Some("c")]));
        assert_eq!(split_with(&o, r#""a\nb",c"#), row(&[Some("a\\nb"), Some("c")]));
        assert_eq!(split_with(&o, r#""a""b",c"#), row(&[Some("ab"), Some("c")]));
        assert_eq!(split_with(&o, r#"a\,b"#), row(&[Some("a\\"), Some("b")]));
        assert_eq!(split_with(&o, r#"x"y\"z",w"#), row(&[Some("xy\"z"), Some("w")]));
        // "a\",b and a,"b\" → unterminated CSV quoted field
        assert_eq!(split_with(&o, r#""a\",b"#), Err(RejectReason::CsvUnterminatedQuote));
        assert_eq!(split_with(&o, r#"a,"b\""#), Err(RejectReason::CsvUnterminatedQuote));
        let mut o = CsvOptions::new(2);
        o.delimiter = b';';
        assert_eq!(split_with(&o, r#"a;"b;c""#), row(&[Some("a"), Some("b;c")]));
        let mut o = CsvOptions::new(2);
        o.quote = b'\'';
        o.escape = b'\'';
        assert_eq!(split_with(&o, "'a,b',c"), row(&[Some("a,b"), Some("c")]));
        o.delimiter = b'\t';
        assert_eq!(split_with(&o, "'it''s'\t\"x\""), row(&[Some("it's"), Some("\"x\"")]));
    }

    #[test]
    fn line_terminators() {
        // a,b\r\n and a,b\r → [a] [b]
        for message in ["a,b\n", "a,b\r\n", "a,b\r", "a,\"b\"\n"] {
            assert_eq!(two(message), row(&[Some("a"), Some("b")]), "{message:?}");
        }
        // a,b\n\n: 'missing data for column "b"' on line 2; a,b\rc,d: two rows;
        // a\nb,c: 'missing data for column "b"' on line 1. One message is one record.
        for message in ["a,b\n\n", "a,b\rc,d", "a\nb,c", "a,b\n\r", "a,b\r\r\n"] {
            assert_eq!(two(message), Err(RejectReason::CsvUnquotedLineBreak), "{message:?}");
        }
        assert_eq!(two("\"a,b\n"), Err(RejectReason::CsvUnterminatedQuote));
    }

    #[test]
    fn field_counts() {
        // a,b,c → extra data after last expected column; a → missing data for column "b";
        // "a,b → unterminated CSV quoted field; \n → missing data for column "b".
        assert_eq!(two("a,b,c"), Err(RejectReason::CsvExtraData { fields: 3 }));
        assert_eq!(two("a,b,"), Err(RejectReason::CsvExtraData { fields: 3 }));
        assert_eq!(two("a"), Err(RejectReason::CsvMissingData { column: 1 }));
        assert_eq!(two("\n"), Err(RejectReason::CsvMissingData { column: 1 }));
        assert_eq!(two("\"a,b"), Err(RejectReason::CsvUnterminatedQuote));
        assert_eq!(two(""), Err(RejectReason::EmptyMessage));
        // One column: an empty line is one NULL field.
        assert_eq!(split_with(&CsvOptions::new(1), "\n"), row(&[None]));
        assert_eq!(split_with(&CsvOptions::new(1), "\"\""), row(&[Some("")]));
    }

    #[test]
    fn fill_missing_fields() {
        let mut o = CsvOptions::new(3);
        o.fill_missing_fields = true;
        assert_eq!(split_with(&o, "a"), row(&[Some("a"), None, None]));
        assert_eq!(split_with(&o, "a,"), row(&[Some("a"), None, None]));
        assert_eq!(split_with(&o, "a,b,c,d"), Err(RejectReason::CsvExtraData { fields: 4 }));
        // Greenplum: an empty line is still "missing data for column ..., found empty data line".
        assert_eq!(split_with(&o, "\n"), Err(RejectReason::CsvMissingData { column: 1 }));
        // Greenplum turns a missing value of a FORCE NOT NULL column into the null string.
        o.force_not_null = vec![false, false, true];
        o.null_string = b"-".to_vec();
        assert_eq!(split_with(&o, "a"), row(&[Some("a"), None, Some("-")]));
        let mut one = CsvOptions::new(1);
        one.fill_missing_fields = true;
        assert_eq!(split_with(&one, ""), Err(RejectReason::EmptyMessage));
        assert_eq!(split_with(&one, "\n"), row(&[None]));
    }

    #[test]
    fn buffers_are_reused() {
        let mut splitter = CsvSplitter::new(CsvOptions::new(2));
        splitter.split(b"\"long value, with a comma\",x").unwrap();
        splitter.split(b"a,b").unwrap();
        assert_eq!(splitter.field(0), Some(&b"a"[..]));
        assert_eq!(splitter.field(1), Some(&b"b"[..]));
        assert_eq!(splitter.field(2), None);
        assert!(splitter.split(b"a").is_err());
        assert!(splitter.is_empty() || splitter.len() == 1);
        // Invalid UTF-8 is passed through as bytes.
        splitter.split(b"\xff,\"\xfe\"").unwrap();
        assert_eq!(splitter.field(0), Some(&b"\xff"[..]));
        assert_eq!(splitter.field(1), Some(&b"\xfe"[..]));
    }
}

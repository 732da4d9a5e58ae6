//! fs_formatter rows (`extension/FORMAT.md`, version 1): what the shards serve
//! to WarehousePG / Greenplum segments in gpfdist `D` blocks.
//!
//! ```text
//! row    := row_len:u32 field_count:u16 field{field_count}
//! field  := len:i32 value[len]          -- len = -1: NULL, no value bytes
//! ```
//!
//! After `row_len` comes exactly a binary COPY tuple, so a row is written with
//! [`begin_row`], the [`super::pgcopy`] tuple helpers, then [`end_row`]:
//!
//! ```
//! use flowserver_engine::codec::{fsrow, pgcopy};
//! let mut buf = Vec::new();
//! let start = fsrow::begin_row(&mut buf);
//! pgcopy::begin_row(&mut buf, 3);
//! pgcopy::put_i32(&mut buf, 7);
//! pgcopy::put_field(&mut buf, b"ab");
//! pgcopy::put_null(&mut buf);
//! fsrow::end_row(&mut buf, start);
//! assert_eq!(buf.len(), 24);
//! ```
//!
//! [`FsRowReader`] is the reference reader: it walks rows of a byte slice
//! without allocating and reports malformed rows with FORMAT.md's messages.
//! Every error except [`FsRowError::Incomplete`] is an error of one row: the
//! reader skips that row (its `row_len` says where the next one starts) and
//! goes on, as `LOG ERRORS SEGMENT REJECT LIMIT` would.

use std::fmt;

/// The largest `row_len` FORMAT.md allows (1 GiB).
pub const MAX_ROW_LEN: u32 = 1 << 30;

/// Reserves a row's length word; write the binary COPY tuple after it, then
/// call [`end_row`] with the returned position.
#[inline]
pub fn begin_row(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    start
}

/// Back-patches the length word written by [`begin_row`] at `start`.
///
/// # Panics
/// If the tuple written since `begin_row` is longer than [`MAX_ROW_LEN`]
/// (no PostgreSQL row can be), or `start` is not a position `begin_row` returned.
#[inline]
pub fn end_row(buf: &mut [u8], start: usize) {
    let len = buf.len() - start - 4;
    assert!(len <= MAX_ROW_LEN as usize, "an fs_formatter row is at most 1 GiB, this one has {len} bytes");
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
}

/// Writes one whole row of `fields` (`None` = NULL). A convenience for tests
/// and tools; the shards encode fields in place with [`super::pgcopy`].
///
/// # Panics
/// As [`end_row`], or with more than `u16::MAX` fields.
pub fn put_row(buf: &mut Vec<u8>, fields: &[Option<&[u8]>]) {
    let start = begin_row(buf);
    super::pgcopy::begin_row(buf, u16::try_from(fields.len()).expect("at most 65535 fields"));
    for field in fields {
        match field {
            Some(value) => super::pgcopy::put_field(buf, value),
            None => super::pgcopy::put_null(buf),
        }
    }
    end_row(buf, start);
}

/// A malformed row, or a stream cut inside a row. Small and `Copy`; column
/// positions are 0-based indexes, named by the caller through
/// [`FsRowError::with_columns`], which produces FORMAT.md's exact texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsRowError {
    /// `row has N fields but the table has M columns`
    FieldCount { found: u16, expected: u16 },
    /// `field for column "c" claims L bytes but only R remain in the row`
    FieldOverrun { column: u16, claims: u32, remain: u32 },
    /// `row length L is shorter than its fields`: the field count or a
    /// field's length word does not fit in `row_len`.
    RowTooShort { row_len: u32 },
    /// `row ends N bytes after its last field`
    TrailingBytes { extra: u32 },
    /// `field for column "c" has invalid length L`: a length below -1.
    /// (Not in FORMAT.md; PostgreSQL's binary COPY rejects it too.)
    InvalidFieldLength { column: u16, len: i32 },
    /// `row length L exceeds 1 GiB` (FORMAT.md: "a row is at most 1 GiB").
    /// (Not in FORMAT.md's list.) The reader skips the row when all of it is
    /// present, and stops otherwise.
    RowTooLong { row_len: u32 },
    /// `incomplete row at end of data: N bytes`: the data ends inside a row.
    /// Unlike the others this one cannot be skipped.
    Incomplete { available: usize },
}

impl FsRowError {
    /// Whether the reader could skip the row and go on.
    pub fn is_row_error(&self) -> bool {
        !matches!(self, FsRowError::Incomplete { .. })
    }

    /// The error's text with column `i` named `columns[i]` (FORMAT.md's text).
    /// A position outside `columns` is shown as its 1-based number.
    pub fn with_columns<'a>(&self, columns: &'a [&'a str]) -> impl fmt::Display + 'a {
        Named { error: *self, columns }
    }
}

struct Named<'a> {
    error: FsRowError,
    columns: &'a [&'a str],
}

struct Column<'a>(u16, &'a [&'a str]);

impl fmt::Display for Column<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1.get(usize::from(self.0)) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", u32::from(self.0) + 1),
        }
    }
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error {
            FsRowError::FieldCount { found, expected } => {
                write!(f, "row has {found} fields but the table has {expected} columns")
            }
            FsRowError::FieldOverrun { column, claims, remain } => write!(
                f,
                "field for column \"{}\" claims {claims} bytes but only {remain} remain in the row",
                Column(column, self.columns)
            ),
            FsRowError::RowTooShort { row_len } => write!(f, "row length {row_len} is shorter than its fields"),
            FsRowError::TrailingBytes { extra } => write!(f, "row ends {extra} bytes after its last field"),
            FsRowError::InvalidFieldLength { column, len } => {
                write!(f, "field for column \"{}\" has invalid length {len}", Column(column, self.columns))
            }
            FsRowError::RowTooLong { row_len } => write!(f, "row length {row_len} exceeds 1 GiB"),
            FsRowError::Incomplete { available } => write!(f, "incomplete row at end of data: {available} bytes"),
        }
    }
}

/// Without names, columns are shown by their 1-based number.
impl fmt::Display for FsRowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Named { error: *self, columns: &[] }.fmt(f)
    }
}

impl std::error::Error for FsRowError {}

/// One well-formed row: its fields, already validated.
#[derive(Debug, Clone, Copy)]
pub struct FsRow<'a> {
    /// The bytes after `row_len`: field count then fields.
    tuple: &'a [u8],
    field_count: u16,
}

impl<'a> FsRow<'a> {
    pub fn field_count(&self) -> u16 {
        self.field_count
    }

    /// The row's binary COPY tuple (what follows `row_len`).
    pub fn tuple(&self) -> &'a [u8] {
        self.tuple
    }

    /// The fields in column order, `None` for NULL.
    pub fn fields(&self) -> FsFields<'a> {
        FsFields { rest: &self.tuple[2..], left: self.field_count }
    }
}

/// Iterator over the fields of an [`FsRow`].
#[derive(Debug, Clone)]
pub struct FsFields<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> Iterator for FsFields<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.rest.len() < 4 {
            return None;
        }
        self.left -= 1;
        let len = i32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]);
        self.rest = &self.rest[4..];
        if len < 0 {
            return Some(None);
        }
        // The row was validated: the value is there.
        let (value, rest) = self.rest.split_at((len as usize).min(self.rest.len()));
        self.rest = rest;
        Some(Some(value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

/// Reads the rows of a byte slice (for example the concatenated `D` payloads
/// of one gpfdist response). Allocation-free.
#[derive(Debug, Clone)]
pub struct FsRowReader<'a> {
    data: &'a [u8],
    pos: usize,
    expected: Option<u16>,
    done: bool,
}

impl<'a> FsRowReader<'a> {
    pub fn new(data: &'a [u8]) -> FsRowReader<'a> {
        FsRowReader { data, pos: 0, expected: None, done: false }
    }

    /// Also checks each row's field count against the table's column count.
    pub fn with_columns(data: &'a [u8], columns: u16) -> FsRowReader<'a> {
        FsRowReader { data, pos: 0, expected: Some(columns), done: false }
    }

    /// Byte offset of the next row.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn check_row(&self, tuple: &[u8], row_len: u32) -> Result<u16, FsRowError> {
        if tuple.len() < 2 {
            return Err(FsRowError::RowTooShort { row_len });
        }
        let field_count = u16::from_be_bytes([tuple[0], tuple[1]]);
        if let Some(expected) = self.expected
            && expected != field_count
        {
            return Err(FsRowError::FieldCount { found: field_count, expected });
        }
        let mut at = 2usize;
        for column in 0..field_count {
            let Some(word) = tuple.get(at..at + 4) else {
                return Err(FsRowError::RowTooShort { row_len });
            };
            let len = i32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            at += 4;
            if len == -1 {
                continue;
            }
            if len < -1 {
                return Err(FsRowError::InvalidFieldLength { column, len });
            }
            let remain = tuple.len() - at;
            if len as usize > remain {
                return Err(FsRowError::FieldOverrun { column, claims: len as u32, remain: remain as u32 });
            }
            at += len as usize;
        }
        if at < tuple.len() {
            return Err(FsRowError::TrailingBytes { extra: (tuple.len() - at) as u32 });
        }
        Ok(field_count)
    }
}

impl<'a> Iterator for FsRowReader<'a> {
    type Item = Result<FsRow<'a>, FsRowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        if rest.len() < 4 {
            self.done = true;
            return Some(Err(FsRowError::Incomplete { available: rest.len() }));
        }
        let row_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if row_len > MAX_ROW_LEN {
            // Skipped when the whole row is there; otherwise the stream cannot be resynchronised.
            match rest.len() - 4 >= row_len as usize {
                true => self.pos += 4 + row_len as usize,
                false => self.done = true,
            }
            return Some(Err(FsRowError::RowTooLong { row_len }));
        }
        if rest.len() - 4 < row_len as usize {
            self.done = true;
            return Some(Err(FsRowError::Incomplete { available: rest.len() }));
        }
        let tuple = &rest[4..4 + row_len as usize];
        self.pos += 4 + row_len as usize;
        Some(self.check_row(tuple, row_len).map(|field_count| FsRow { tuple, field_count }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::pgcopy;

    /// FORMAT.md's example: `(id int, name text, note text)`, row `(7, 'ab', NULL)`.
    const EXAMPLE: [u8; 24] = [
        0x00, 0x00, 0x00, 0x14, // row_len = 20
        0x00, 0x03, // 3 fields
        0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, // id = 7
        0x00, 0x00, 0x00, 0x02, 0x61, 0x62, // name = 'ab'
        0xff, 0xff, 0xff, 0xff, // note = NULL
    ];
    const NAMES: [&str; 3] = ["id", "name", "note"];

    fn text(error: FsRowError) -> String {
        error.with_columns(&NAMES).to_string()
    }

    #[test]
    fn writer_produces_the_format_example() {
        let mut buf = Vec::new();
        let start = begin_row(&mut buf);
        pgcopy::begin_row(&mut buf, 3);
        pgcopy::put_i32(&mut buf, 7);
        pgcopy::put_field(&mut buf, b"ab");
        pgcopy::put_null(&mut buf);
        end_row(&mut buf, start);
        assert_eq!(buf, EXAMPLE);

        let mut again = Vec::new();
        put_row(&mut again, &[Some(&7i32.to_be_bytes()), Some(b"ab"), None]);
        assert_eq!(again, EXAMPLE);
    }

    #[test]
    fn rows_are_appended_after_existing_bytes() {
        let mut buf = vec![1, 2, 3];
        let start = begin_row(&mut buf);
        assert_eq!(start, 3);
        pgcopy::begin_row(&mut buf, 0);
        end_row(&mut buf, start);
        assert_eq!(buf, [1, 2, 3, 0, 0, 0, 2, 0, 0]);
    }

    #[test]
    fn reader_reads_the_format_example() {
        let mut reader = FsRowReader::with_columns(&EXAMPLE, 3);
        let row = reader.next().unwrap().unwrap();
        assert_eq!(row.field_count(), 3);
        let fields: Vec<_> = row.fields().collect();
        assert_eq!(fields, [Some(&[0u8, 0, 0, 7][..]), Some(&b"ab"[..]), None]);
        assert_eq!(row.tuple(), &EXAMPLE[4..]);
        assert!(reader.next().is_none());
        assert_eq!(reader.position(), EXAMPLE.len());
    }

    #[test]
    fn reader_walks_many_rows_including_empty_values() {
        let mut buf = Vec::new();
        for i in 0..100u32 {
            let value = vec![b'x'; (i % 7) as usize];
            put_row(&mut buf, &[Some(&i.to_be_bytes()), if i % 3 == 0 { None } else { Some(&value) }]);
        }
        let mut count = 0u32;
        for (i, row) in FsRowReader::with_columns(&buf, 2).enumerate() {
            let row = row.unwrap();
            let fields: Vec<_> = row.fields().collect();
            assert_eq!(fields[0], Some(&(i as u32).to_be_bytes()[..]));
            if i % 3 == 0 {
                assert_eq!(fields[1], None);
            } else {
                assert_eq!(fields[1].map(<[u8]>::len), Some(i % 7));
            }
            count += 1;
        }
        assert_eq!(count, 100);
    }

    #[test]
    fn wrong_field_count_is_a_row_error_and_the_reader_goes_on() {
        let mut buf = Vec::new();
        put_row(&mut buf, &[Some(b"a"), Some(b"b")]);
        buf.extend_from_slice(&EXAMPLE);
        let mut reader = FsRowReader::with_columns(&buf, 3);
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error, FsRowError::FieldCount { found: 2, expected: 3 });
        assert!(error.is_row_error());
        assert_eq!(text(error), "row has 2 fields but the table has 3 columns");
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().is_none());
    }

    #[test]
    fn field_claiming_more_than_the_row_holds() {
        let mut row = EXAMPLE;
        row[17] = 9; // name claims 9 bytes; after its length word 6 bytes remain
        let error = FsRowReader::new(&row).next().unwrap().unwrap_err();
        assert_eq!(error, FsRowError::FieldOverrun { column: 1, claims: 9, remain: 6 });
        assert_eq!(text(error), "field for column \"name\" claims 9 bytes but only 6 remain in the row");
        assert_eq!(error.to_string(), "field for column \"2\" claims 9 bytes but only 6 remain in the row");
    }

    #[test]
    fn row_length_shorter_than_its_fields() {
        // row_len 16 cuts the NULL field's length word.
        let mut data = EXAMPLE[..20].to_vec();
        data[3] = 16;
        let error = FsRowReader::new(&data).next().unwrap().unwrap_err();
        assert_eq!(error, FsRowError::RowTooShort { row_len: 16 });
        assert_eq!(text(error), "row length 16 is shorter than its fields");
        // A row too short for its field count.
        let error = FsRowReader::new(&[0, 0, 0, 1, 0]).next().unwrap().unwrap_err();
        assert_eq!(text(error), "row length 1 is shorter than its fields");
    }

    #[test]
    fn bytes_after_the_last_field() {
        let mut data = EXAMPLE.to_vec();
        data[3] = 23;
        data.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        let error = FsRowReader::new(&data).next().unwrap().unwrap_err();
        assert_eq!(error, FsRowError::TrailingBytes { extra: 3 });
        assert_eq!(text(error), "row ends 3 bytes after its last field");
    }

    #[test]
    fn stream_cut_inside_a_row() {
        let mut data = EXAMPLE.to_vec();
        data.extend_from_slice(&EXAMPLE[..10]);
        let mut reader = FsRowReader::new(&data);
        assert!(reader.next().unwrap().is_ok());
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error, FsRowError::Incomplete { available: 10 });
        assert!(!error.is_row_error());
        assert_eq!(text(error), "incomplete row at end of data: 10 bytes");
        assert!(reader.next().is_none());
        // Cut inside the length word.
        let error = FsRowReader::new(&EXAMPLE[..3]).next().unwrap().unwrap_err();
        assert_eq!(text(error), "incomplete row at end of data: 3 bytes");
    }

    #[test]
    fn negative_lengths_other_than_null() {
        let mut row = EXAMPLE;
        row[20..24].copy_from_slice(&(-2i32).to_be_bytes());
        let error = FsRowReader::new(&row).next().unwrap().unwrap_err();
        assert_eq!(text(error), "field for column \"note\" has invalid length -2");
    }

    #[test]
    fn rows_over_one_gib_are_refused() {
        let data = [0x40, 0, 0, 1, 0, 1];
        let mut reader = FsRowReader::new(&data);
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "row length 1073741825 exceeds 1 GiB");
        assert!(reader.next().is_none(), "the stream cannot be resynchronised");
    }
}

//! Sans-I/O decoding and encoding: message bytes in, PostgreSQL binary COPY
//! tuples out. No runtime, no sockets; shared by the shards, tests and benches.
//!
//! # Contract: fast rows, slow rows, rejected messages
//!
//! For every message the [`RowEncoder`] produces exactly one of:
//! - a **fast row**: the values of [`DecodePlan::fast_columns`], computed on the
//!   shard ("projection push-down") and encoded in each column's binary form;
//! - a **slow row**: the message's source columns as text (one column for JSON,
//!   one per declared column for CSV). The database then evaluates the job's
//!   SQL mapping over them, so PostgreSQL decides the result and the error;
//! - a **rejection**, only for messages that have no source-column form at all
//!   (a CSV record with the wrong number of fields, an empty CSV message).
//!
//! A value goes to the fast row only when the shard's result is exactly what
//! PostgreSQL's input function, operator or assignment cast would produce;
//! anything unusual (an exotic number syntax, a timestamp outside the strict
//! ISO subset, an overflow, a document sonic-rs cannot parse) makes the whole
//! message a slow row. So loading with push-down and loading through SQL give
//! identical rows, and errors always carry PostgreSQL's own message.
//!
//! # Allocation
//!
//! Encoding appends to caller-owned buffers and reuses internal scratch space:
//! once warm, encoding a message allocates nothing.
//!
//! # Modules
//!
//! - [`pgcopy`]: binary COPY framing (header, tuples, fields);
//! - [`pgtype`]: target types and the exact text → binary conversions;
//! - [`json`]: `->>` / `#>>` extraction and validation (sonic-rs);
//! - [`csv`]: one CSV record per message, PostgreSQL's CSV rules;
//! - [`row`]: the per-message [`RowEncoder`].

pub mod csv;
pub mod fsrow;
pub mod json;
pub mod pgcopy;
pub mod pgtype;
pub mod row;

pub use csv::{CsvOptions, CsvSplitter};
pub use fsrow::{FsRowError, FsRowReader};
pub use json::{JsonExtractor, JsonFacts, JsonKind, JsonPath, PathStep};
pub use pgcopy::{COPY_HEADER, COPY_TRAILER};
pub use pgtype::{Conversion, EncodeContext, NotFast, PgType};
pub use row::{DecodePlan, Encoded, FastColumn, RejectReason, RowEncoder, SourceFormat};

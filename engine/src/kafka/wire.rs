//! Kafka's wire protocol, as much of it as the native fetch path needs, sans
//! I/O: functions from requests to bytes and from response bytes to borrowed
//! views. The fetcher, the tests and the benches share them.
//!
//! # Contract
//! - Requests use non-flexible versions every broker since Kafka 1.0 and
//!   through 4.x accepts: Metadata v4 and Fetch v4 (record batches, magic 2,
//!   with `last_stable_offset` and aborted transactions for read_committed).
//! - Parsing never copies a payload: a [`Record`]'s key and value borrow the
//!   response frame (or the batch's decompression buffer).
//! - A trailing partial record batch (a fetch response cut at its byte
//!   limit) ends iteration without an error; anything else malformed is a
//!   [`WireError`] naming what was being read.
//! - Broker bytes never panic a reader: every length, count and offset is
//!   checked (an offset past `i64::MAX` is [`WireError::Malformed`]), and a
//!   compressed batch may decompress to at most [`MAX_DECOMPRESSED_BATCH`]
//!   bytes (a snappy block's claimed length is checked before it is allocated).
//! - [`RecordBatch::last_offset`] is where the next fetch of the partition
//!   starts, whatever records the batch still holds (compaction) or whether
//!   it is a control batch; records below the requested offset are the
//!   caller's to skip.

use std::io::Read;

use thiserror::Error;

pub const API_FETCH: i16 = 1;
pub const API_METADATA: i16 = 3;
pub const FETCH_VERSION: i16 = 4;
pub const METADATA_VERSION: i16 = 4;

/// Error codes the fetch path acts on.
pub const ERROR_NONE: i16 = 0;
pub const ERROR_OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("kafka response truncated while reading {0}")]
    Truncated(&'static str),
    #[error("kafka response malformed: {0}")]
    Malformed(&'static str),
    #[error("kafka response for correlation id {got}, expected {expected}")]
    Correlation { expected: i32, got: i32 },
    #[error("record batch at offset {offset} has message format v{magic}; the native fetch path reads v2 only")]
    MessageFormat { offset: i64, magic: i8 },
    #[error("record batch at offset {offset} uses unknown compression codec {codec}")]
    UnknownCompression { offset: i64, codec: i16 },
    #[error("cannot decompress the {codec} record batch at offset {offset}: {reason}")]
    Decompress { offset: i64, codec: &'static str, reason: String },
}

pub type WireResult<T> = Result<T, WireError>;

// ---------------------------------------------------------------- writing

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// A Kafka string: at most 32767 bytes (a longer one is cut; names are far shorter).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let bytes = bytes.get(..i16::MAX.unsigned_abs().into()).unwrap_or(bytes);
    put_i16(out, i16::try_from(bytes.len()).unwrap_or(i16::MAX));
    out.extend_from_slice(bytes);
}

/// Starts a request frame: size placeholder and header v1. Finish with [`end_request`].
fn begin_request(out: &mut Vec<u8>, api_key: i16, version: i16, correlation_id: i32, client_id: &str) -> usize {
    let start = out.len();
    put_i32(out, 0);
    put_i16(out, api_key);
    put_i16(out, version);
    put_i32(out, correlation_id);
    put_str(out, client_id);
    start
}

fn end_request(out: &mut [u8], start: usize) {
    // Our own requests: a few partitions and names, far below 2 GiB.
    let size = i32::try_from(out.len().saturating_sub(start + 4)).unwrap_or(i32::MAX);
    if let Some(prefix) = out.get_mut(start..start + 4) {
        prefix.copy_from_slice(&size.to_be_bytes());
    }
}

/// Metadata v4 for one topic; no automatic topic creation.
pub fn encode_metadata_request(out: &mut Vec<u8>, correlation_id: i32, client_id: &str, topic: &str) {
    let start = begin_request(out, API_METADATA, METADATA_VERSION, correlation_id, client_id);
    put_i32(out, 1);
    put_str(out, topic);
    out.push(0);
    end_request(out, start);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
}

#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    pub topic: &'a str,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation: Isolation,
    pub partitions: &'a [FetchPartition],
}

/// Fetch v4 of some partitions of one topic.
pub fn encode_fetch_request(out: &mut Vec<u8>, correlation_id: i32, client_id: &str, request: &FetchRequest<'_>) {
    let start = begin_request(out, API_FETCH, FETCH_VERSION, correlation_id, client_id);
    put_i32(out, -1); // replica id: a consumer
    put_i32(out, request.max_wait_ms);
    put_i32(out, request.min_bytes);
    put_i32(out, request.max_bytes);
    out.push(match request.isolation {
        Isolation::ReadUncommitted => 0,
        Isolation::ReadCommitted => 1,
    });
    put_i32(out, 1);
    put_str(out, request.topic);
    put_i32(out, i32::try_from(request.partitions.len()).unwrap_or(i32::MAX));
    for p in request.partitions {
        put_i32(out, p.partition);
        put_i64(out, p.offset);
        put_i32(out, p.max_bytes);
    }
    end_request(out, start);
}

// ---------------------------------------------------------------- reading

/// The size of the frame whose first four bytes these are (the bytes after them).
pub fn frame_size(prefix: [u8; 4]) -> WireResult<usize> {
    let size = i32::from_be_bytes(prefix);
    usize::try_from(size).map_err(|_| WireError::Malformed("negative frame size"))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }
    fn take(&mut self, n: usize, what: &'static str) -> WireResult<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated(what))?;
        let bytes = self.buf.get(self.at..end).ok_or(WireError::Truncated(what))?;
        self.at = end;
        Ok(bytes)
    }
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.at..).unwrap_or_default()
    }
    /// A length or count field: negative (null) is `None`.
    fn length(&mut self, what: &'static str) -> WireResult<Option<usize>> {
        Ok(usize::try_from(self.i32(what)?).ok())
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> WireResult<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn i8(&mut self, what: &'static str) -> WireResult<i8> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    fn i16(&mut self, what: &'static str) -> WireResult<i16> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> WireResult<i32> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> WireResult<i64> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    /// An array length; -1 (null) reads as 0.
    fn count(&mut self, what: &'static str) -> WireResult<usize> {
        let Some(n) = self.length(what)? else { return Ok(0) };
        // Every element takes at least one byte: a larger count is a lie.
        if n > self.rest().len() {
            return Err(WireError::Malformed(what));
        }
        Ok(n)
    }
    /// A string; null (a negative length) reads as "".
    fn str(&mut self, what: &'static str) -> WireResult<&'a str> {
        let Ok(len) = usize::try_from(self.i16(what)?) else { return Ok("") };
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::Malformed(what))
    }
    fn varint(&mut self, what: &'static str) -> WireResult<i64> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.buf.get(self.at).ok_or(WireError::Truncated(what))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // Zig-zag: `value >> 1` has its top bit clear and `value & 1`
                // is 0 or 1, so both casts are exact.
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err(WireError::Malformed(what));
            }
        }
    }
    /// Varint-length bytes; a negative length is null.
    fn var_bytes(&mut self, what: &'static str) -> WireResult<Option<&'a [u8]>> {
        let len = self.varint(what)?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::Malformed(what))?;
        self.take(len, what).map(Some)
    }
}

/// Checks the response header (v0: the correlation id) and returns the body.
pub fn response_body(frame: &[u8], expected_correlation: i32) -> WireResult<&[u8]> {
    let mut r = Reader::new(frame);
    let got = r.i32("response header")?;
    if got != expected_correlation {
        return Err(WireError::Correlation { expected: expected_correlation, got });
    }
    Ok(r.rest())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    pub partition: i32,
    pub error_code: i16,
    /// -1 when the partition has no leader now.
    pub leader: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub brokers: Vec<Broker>,
    /// The topic's error code (3: unknown topic).
    pub topic_error: i16,
    pub partitions: Vec<PartitionLeader>,
}

/// Parses a Metadata v4 response body for `topic`.
pub fn parse_metadata_response(body: &[u8], topic: &str) -> WireResult<Metadata> {
    let mut r = Reader::new(body);
    r.i32("throttle time")?;
    let mut brokers = Vec::new();
    for _ in 0..r.count("brokers")? {
        let node_id = r.i32("broker node id")?;
        let host = r.str("broker host")?.to_owned();
        let port = r.i32("broker port")?;
        r.str("broker rack")?;
        brokers.push(Broker { node_id, host, port });
    }
    r.str("cluster id")?;
    r.i32("controller id")?;
    let mut found = None;
    for _ in 0..r.count("topics")? {
        let topic_error = r.i16("topic error code")?;
        let name = r.str("topic name")?;
        r.i8("topic is_internal")?;
        let mut partitions = Vec::new();
        for _ in 0..r.count("partitions")? {
            let error_code = r.i16("partition error code")?;
            let partition = r.i32("partition index")?;
            let leader = r.i32("partition leader")?;
            for _ in 0..r.count("replicas")? {
                r.i32("replica")?;
            }
            for _ in 0..r.count("isr")? {
                r.i32("isr")?;
            }
            partitions.push(PartitionLeader { partition, error_code, leader });
        }
        if name == topic {
            found = Some((topic_error, partitions));
        }
    }
    let (topic_error, partitions) = found.unwrap_or((3, Vec::new()));
    Ok(Metadata { brokers, topic_error, partitions })
}

/// One partition's part of a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition<'a> {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// (producer id, first offset) of transactions aborted in this range, by first offset.
    pub aborted: Vec<(i64, i64)>,
    pub records: &'a [u8],
}

/// Parses a Fetch v4 response body, keeping the partitions of `topic`.
pub fn parse_fetch_response<'a>(body: &'a [u8], topic: &str, out: &mut Vec<FetchedPartition<'a>>) -> WireResult<()> {
    let mut r = Reader::new(body);
    r.i32("throttle time")?;
    for _ in 0..r.count("fetch topics")? {
        let name = r.str("fetch topic")?;
        for _ in 0..r.count("fetch partitions")? {
            let partition = r.i32("partition index")?;
            let error_code = r.i16("partition error code")?;
            let high_watermark = r.i64("high watermark")?;
            let last_stable_offset = r.i64("last stable offset")?;
            let mut aborted = Vec::new();
            for _ in 0..r.count("aborted transactions")? {
                let producer_id = r.i64("aborted producer id")?;
                let first_offset = r.i64("aborted first offset")?;
                aborted.push((producer_id, first_offset));
            }
            aborted.sort_unstable_by_key(|&(_, first)| first);
            let records = match r.length("records size")? {
                None => &[][..],
                Some(len) => r.take(len, "records")?,
            };
            if name == topic {
                out.push(FetchedPartition {
                    partition,
                    error_code,
                    high_watermark,
                    last_stable_offset,
                    aborted,
                    records,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- record batches

/// Bytes of a v2 batch header before its records.
const BATCH_HEADER: usize = 61;
/// baseOffset + batchLength: what precedes the counted batch bytes.
const BATCH_PREFIX: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// One record batch (message format v2), records still encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatch<'a> {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub record_count: i32,
    /// The records, compressed as `compression()` says.
    pub records: &'a [u8],
}

impl RecordBatch<'_> {
    /// The batch's last offset ([`RecordBatches`] refuses a batch where it overflows).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Where the next fetch starts after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn compression(&self) -> WireResult<Compression> {
        Ok(match self.attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            codec => return Err(WireError::UnknownCompression { offset: self.base_offset, codec }),
        })
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// The records, decompressed into `scratch` when they are compressed.
    pub fn records<'s>(&'s self, scratch: &'s mut Vec<u8>) -> WireResult<Records<'s>> {
        let compression = self.compression()?;
        let bytes = if compression == Compression::None {
            self.records
        } else {
            decompress(compression, self.records, scratch).map_err(|reason| WireError::Decompress {
                offset: self.base_offset,
                codec: compression.name(),
                reason,
            })?;
            scratch.as_slice()
        };
        Ok(Records {
            reader: Reader::new(bytes),
            left: u32::try_from(self.record_count).unwrap_or(0),
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            append_time: self.log_append_time().then_some(self.max_timestamp),
        })
    }
}

/// The record batches of a partition's `records`, in order.
pub struct RecordBatches<'a> {
    buf: &'a [u8],
}

impl<'a> RecordBatches<'a> {
    pub fn new(records: &'a [u8]) -> Self {
        RecordBatches { buf: records }
    }
}

impl<'a> Iterator for RecordBatches<'a> {
    type Item = WireResult<RecordBatch<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < BATCH_PREFIX + 5 {
            return None; // partial (or no) batch
        }
        let mut r = Reader::new(self.buf);
        let parsed = (|| {
            let base_offset = r.i64("batch base offset")?;
            let length = r.i32("batch length")?;
            let length = usize::try_from(length).map_err(|_| WireError::Malformed("negative batch length"))?;
            let total = length.checked_add(BATCH_PREFIX).ok_or(WireError::Malformed("batch length"))?;
            r.i32("partition leader epoch")?;
            let magic = r.i8("batch magic")?;
            if magic != 2 {
                return Err(WireError::MessageFormat { offset: base_offset, magic });
            }
            if self.buf.len() < total {
                return Ok(None);
            }
            if total < BATCH_HEADER {
                return Err(WireError::Malformed("record batch shorter than its header"));
            }
            r.i32("batch crc")?;
            let attributes = r.i16("batch attributes")?;
            let last_offset_delta = r.i32("last offset delta")?;
            let base_timestamp = r.i64("base timestamp")?;
            let max_timestamp = r.i64("max timestamp")?;
            let producer_id = r.i64("producer id")?;
            r.i16("producer epoch")?;
            r.i32("base sequence")?;
            let record_count = r.i32("record count")?;
            if base_offset.checked_add(i64::from(last_offset_delta)).and_then(|last| last.checked_add(1)).is_none() {
                return Err(WireError::Malformed("batch last offset past the largest offset"));
            }
            let records = self.buf.get(BATCH_HEADER..total).ok_or(WireError::Malformed("batch length"))?;
            let batch = RecordBatch {
                base_offset,
                last_offset_delta,
                attributes,
                base_timestamp,
                max_timestamp,
                producer_id,
                record_count,
                records,
            };
            Ok(Some((batch, total)))
        })();
        match parsed {
            Ok(Some((batch, total))) => {
                self.buf = self.buf.get(total..).unwrap_or_default();
                Some(Ok(batch))
            }
            Ok(None) => {
                self.buf = &[];
                None
            }
            Err(error) => {
                self.buf = &[];
                Some(Err(error))
            }
        }
    }
}

/// One record, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

pub struct Records<'a> {
    reader: Reader<'a>,
    left: u32,
    base_offset: i64,
    base_timestamp: i64,
    append_time: Option<i64>,
}

impl<'a> Records<'a> {
    fn read(&mut self) -> WireResult<Record<'a>> {
        let r = &mut self.reader;
        let length = r.varint("record length")?;
        let length = usize::try_from(length).map_err(|_| WireError::Malformed("negative record length"))?;
        let end = r.at.checked_add(length).filter(|&e| e <= r.buf.len()).ok_or(WireError::Truncated("record"))?;
        r.i8("record attributes")?;
        let timestamp_delta = r.varint("record timestamp delta")?;
        let offset_delta = r.varint("record offset delta")?;
        let key = r.var_bytes("record key")?;
        let value = r.var_bytes("record value")?;
        // Headers are not read: skip to the record's end.
        if r.at > end {
            return Err(WireError::Malformed("record longer than its length"));
        }
        r.at = end;
        let offset = self.base_offset.checked_add(offset_delta).ok_or(WireError::Malformed("record offset delta"))?;
        Ok(Record {
            offset,
            timestamp_ms: self.append_time.unwrap_or(self.base_timestamp.saturating_add(timestamp_delta)),
            key,
            value,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = WireResult<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = self.read();
        if record.is_err() {
            self.left = 0;
        }
        Some(record)
    }
}

/// Kafka's Java client frames snappy the way xerial's snappy-java does.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// The most bytes one record batch may decompress to. Producers' batches are
/// kilobytes to a few megabytes; a claim beyond this is a decompression bomb
/// (or garbage), refused before it is allocated.
pub const MAX_DECOMPRESSED_BATCH: usize = 256 << 20;

fn too_large(limit: usize) -> String {
    format!("decompresses to more than {limit} bytes")
}

/// Reads `decoder` to its end into `out`, at most `limit` bytes.
fn read_bounded(decoder: impl Read, out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let most = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(most).read_to_end(out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

fn decompress(compression: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    decompress_at_most(compression, input, out, MAX_DECOMPRESSED_BATCH)
}

fn decompress_at_most(compression: Compression, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    out.clear();
    match compression {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(input), out, limit)?,
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), out, limit)?,
        Compression::Zstd => {
            read_bounded(zstd::stream::read::Decoder::with_buffer(input).map_err(|e| e.to_string())?, out, limit)?;
        }
        Compression::Snappy => match input.strip_prefix(XERIAL_MAGIC).and_then(|rest| rest.get(8..)) {
            // Xerial framing: magic, two version words, then (length, block) pairs.
            Some(mut blocks) => {
                while !blocks.is_empty() {
                    let (len, rest) = blocks.split_first_chunk::<4>().ok_or("truncated xerial block length")?;
                    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| "xerial block length")?;
                    let block = rest.get(..len).ok_or("truncated xerial block")?;
                    blocks = rest.get(len..).unwrap_or_default();
                    snappy_append(block, out, limit)?;
                }
            }
            None => snappy_append(input, out, limit)?,
        },
    }
    Ok(())
}

/// Snappy's densest element, a 3-byte copy, yields 64 bytes: no valid block
/// expands more than 22 times (plus its length preamble).
const SNAPPY_MAX_EXPANSION: usize = 22;

fn snappy_append(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if len > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(format!(
            "a snappy block of {} bytes claims {len} bytes, more than snappy can expand to",
            block.len()
        ));
    }
    let start = out.len();
    let end = start.checked_add(len).filter(|&end| end <= limit).ok_or_else(|| too_large(limit))?;
    out.resize(end, 0);
    let room = out.get_mut(start..).unwrap_or_default();
    snap::raw::Decoder::new().decompress(block, room).map_err(|e| e.to_string())?;
    Ok(())
}

/// Skips the batches of aborted transactions (read_committed), following
/// the fetch response's aborted-transaction index: a producer's batches are
/// aborted from its listed first offset up to its ABORT control record.
#[derive(Debug, Default)]
pub struct AbortedFilter {
    /// Listed but not reached yet, by first offset.
    pending: Vec<(i64, i64)>,
    next_pending: usize,
    /// Producers inside an aborted transaction.
    active: Vec<i64>,
}

impl AbortedFilter {
    pub fn reset(&mut self, aborted: &[(i64, i64)]) {
        self.pending.clear();
        self.pending.extend_from_slice(aborted);
        self.next_pending = 0;
        self.active.clear();
    }

    /// Whether the batch's records are to be delivered. Control batches never are.
    pub fn admits(&mut self, batch: &RecordBatch<'_>) -> bool {
        while let Some(&(producer, first)) = self.pending.get(self.next_pending) {
            if first > batch.last_offset() {
                break;
            }
            self.active.push(producer);
            self.next_pending += 1;
        }
        if batch.is_control() {
            if batch.is_transactional() && is_abort_marker(batch) {
                self.active.retain(|&p| p != batch.producer_id);
            }
            return false;
        }
        !(batch.is_transactional() && self.active.contains(&batch.producer_id))
    }
}

/// A control batch's record key is (version i16, type i16); type 0 is ABORT.
fn is_abort_marker(batch: &RecordBatch<'_>) -> bool {
    let mut scratch = Vec::new();
    let Ok(mut records) = batch.records(&mut scratch) else { return false };
    match records.next() {
        Some(Ok(Record { key: Some([_, _, high, low, ..]), .. })) => i16::from_be_bytes([*high, *low]) == 0,
        _ => false,
    }
}

// ---------------------------------------------------------------- encoding batches (tests, benches)

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A record to encode: (timestamp delta, key, value).
pub type RecordParts<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// Writes an uncompressed v2 record batch (as a broker would return it), for
/// tests and benches.
pub fn encode_record_batch(
    out: &mut Vec<u8>,
    base_offset: i64,
    base_timestamp: i64,
    attributes: i16,
    producer_id: i64,
    records: &[RecordParts<'_>],
) {
    let start = out.len();
    put_i64(out, base_offset);
    put_i32(out, 0); // length, patched below
    put_i32(out, 0); // partition leader epoch
    out.push(2);
    put_i32(out, 0); // crc: not checked on read
    put_i16(out, attributes);
    put_i32(out, records.len().saturating_sub(1) as i32);
    put_i64(out, base_timestamp);
    let max_delta = records.iter().map(|r| r.0).max().unwrap_or(0);
    put_i64(out, base_timestamp + max_delta);
    put_i64(out, producer_id);
    put_i16(out, 0);
    put_i32(out, 0);
    put_i32(out, records.len() as i32);
    let mut record = Vec::new();
    for (i, (ts_delta, key, value)) in records.iter().enumerate() {
        record.clear();
        record.push(0);
        put_varint(&mut record, *ts_delta);
        put_varint(&mut record, i as i64);
        for part in [key, value] {
            match part {
                Some(bytes) => {
                    put_varint(&mut record, bytes.len() as i64);
                    record.extend_from_slice(bytes);
                }
                None => put_varint(&mut record, -1),
            }
        }
        put_varint(&mut record, 0); // headers
        put_varint(out, record.len() as i64);
        out.extend_from_slice(&record);
    }
    let length = (out.len() - start - BATCH_PREFIX) as i32;
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
}

/// The records section of an encoded batch (after its header).
pub fn batch_records(batch: &[u8]) -> &[u8] {
    &batch[BATCH_HEADER..]
}

/// Replaces an encoded batch's records with `packed`, their compressed form
/// by the codec with Kafka id `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub fn set_compressed_records(batch: &mut Vec<u8>, codec: i16, packed: &[u8]) {
    batch.truncate(BATCH_HEADER);
    batch.extend_from_slice(packed);
    let length = (batch.len() - BATCH_PREFIX) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    batch[21..23].copy_from_slice(&codec.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(records: &[u8]) -> Vec<(i64, i64, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for batch in RecordBatches::new(records) {
            let batch = batch.unwrap();
            for record in batch.records(&mut scratch).unwrap() {
                let record = record.unwrap();
                out.push((record.offset, record.timestamp_ms, record.value.map(<[u8]>::to_vec)));
            }
        }
        out
    }

    #[test]
    fn record_batches_round_trip_and_stop_at_a_partial_batch() {
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, 40, 1_000, 0, -1, &[(0, None, Some(b"a")), (5, Some(b"k"), None)]);
        encode_record_batch(&mut bytes, 42, 2_000, 0, -1, &[(0, None, Some(b"{\"x\":1}"))]);
        let whole = bytes.len();
        encode_record_batch(&mut bytes, 43, 3_000, 0, -1, &[(0, None, Some(b"cut"))]);
        bytes.truncate(whole + 20);
        assert_eq!(
            values(&bytes),
            vec![(40, 1_000, Some(b"a".to_vec())), (41, 1_005, None), (42, 2_000, Some(b"{\"x\":1}".to_vec()))]
        );
        let last: Vec<i64> = RecordBatches::new(&bytes).map(|b| b.unwrap().last_offset()).collect();
        assert_eq!(last, vec![41, 42]);
    }

    #[test]
    fn old_message_formats_are_named() {
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, 7, 0, 0, -1, &[(0, None, Some(b"a"))]);
        bytes[16] = 1;
        let error = RecordBatches::new(&bytes).next().unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "record batch at offset 7 has message format v1; the native fetch path reads v2 only"
        );
    }

    #[test]
    fn compressed_batches_decode() {
        let mut plain = Vec::new();
        encode_record_batch(&mut plain, 0, 10, 0, -1, &[(0, None, Some(b"one")), (1, None, Some(b"two"))]);
        let records = batch_records(&plain);
        let compressed: Vec<(i16, Vec<u8>)> = vec![
            (1, {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, records).unwrap();
                e.finish().unwrap()
            }),
            (2, snap::raw::Encoder::new().compress_vec(records).unwrap()),
            (2, {
                let block = snap::raw::Encoder::new().compress_vec(records).unwrap();
                let mut x = XERIAL_MAGIC.to_vec();
                x.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
                x.extend_from_slice(&(block.len() as u32).to_be_bytes());
                x.extend_from_slice(&block);
                x
            }),
            (3, {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                std::io::Write::write_all(&mut e, records).unwrap();
                e.finish().unwrap()
            }),
            (4, zstd::bulk::compress(records, 1).unwrap()),
        ];
        for (codec, body) in compressed {
            let mut batch = plain.clone();
            set_compressed_records(&mut batch, codec, &body);
            assert_eq!(
                values(&batch),
                vec![(0, 10, Some(b"one".to_vec())), (1, 11, Some(b"two".to_vec()))],
                "codec {codec}"
            );
        }
    }

    #[test]
    fn aborted_transactions_are_skipped_up_to_their_marker() {
        let producer = 9;
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, 0, 0, 0x10, producer, &[(0, None, Some(b"aborted"))]);
        encode_record_batch(&mut bytes, 1, 0, 0x10, 5, &[(0, None, Some(b"other producer"))]);
        let abort_key = [0u8, 0, 0, 0];
        encode_record_batch(&mut bytes, 2, 0, 0x30, producer, &[(0, Some(&abort_key), Some(b""))]);
        encode_record_batch(&mut bytes, 3, 0, 0x10, producer, &[(0, None, Some(b"committed later"))]);
        let mut filter = AbortedFilter::default();
        filter.reset(&[(producer, 0)]);
        let admitted: Vec<i64> = RecordBatches::new(&bytes)
            .map(|b| b.unwrap())
            .filter(|b| filter.admits(b))
            .map(|b| b.base_offset)
            .collect();
        assert_eq!(admitted, vec![1, 3]);
    }

    #[test]
    fn fetch_request_bytes() {
        let mut out = Vec::new();
        let partitions = [FetchPartition { partition: 3, offset: 17, max_bytes: 1024 }];
        let request = FetchRequest {
            topic: "t",
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 4096,
            isolation: Isolation::ReadCommitted,
            partitions: &partitions,
        };
        encode_fetch_request(&mut out, 7, "c", &request);
        let expected: Vec<u8> = [
            &[0, 0, 0, 55][..],
            &[0, 1, 0, 4, 0, 0, 0, 7, 0, 1, b'c'],
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0xf4, 0, 0, 0, 1, 0, 0, 0x10, 0, 1],
            &[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1],
            &[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 4, 0],
        ]
        .concat();
        assert_eq!(out, expected);
    }

    /// xorshift64: reproducible random bytes without a dependency.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
        }
    }

    /// Everything a broker can send goes through here; nothing may panic.
    fn read_everything(records: &[u8]) {
        let mut scratch = Vec::new();
        let mut filter = AbortedFilter::default();
        filter.reset(&[(1, 0), (-1, i64::MAX)]);
        for batch in RecordBatches::new(records) {
            let Ok(batch) = batch else { break };
            let _ = (batch.last_offset(), batch.next_offset(), filter.admits(&batch));
            if let Ok(records) = batch.records(&mut scratch) {
                for record in records {
                    let _ = record;
                }
            }
        }
    }

    fn sample_batches() -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, 40, 1_000, 0, -1, &[(0, None, Some(b"a")), (5, Some(b"k"), None)]);
        encode_record_batch(&mut bytes, 42, 2_000, 0x10, 1, &[(0, None, Some("\u{20ac}\u{1f600}".as_bytes()))]);
        encode_record_batch(&mut bytes, 43, 3_000, 0x30, 1, &[(0, Some(&[0, 0, 0, 0]), Some(b""))]);
        bytes
    }

    #[test]
    fn no_broker_bytes_panic_the_readers() {
        let batches = sample_batches();
        let mut compressed = Vec::new();
        for codec in 1..=4 {
            let mut batch = Vec::new();
            encode_record_batch(&mut batch, 0, 10, 0, -1, &[(0, None, Some(b"one"))]);
            let packed = match codec {
                2 => snap::raw::Encoder::new().compress_vec(batch_records(&batch)).unwrap(),
                4 => zstd::bulk::compress(batch_records(&batch), 1).unwrap(),
                _ => b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff".to_vec(),
            };
            set_compressed_records(&mut batch, codec, &packed);
            compressed.extend(batch);
        }
        let mut random = Random(0x853c_49e6_748f_ea9b);
        for sample in [&batches, &compressed] {
            // Every cut, and every byte replaced by a few values.
            for end in 0..=sample.len() {
                read_everything(&sample[..end]);
            }
            for at in 0..sample.len() {
                for value in [0x00, 0x7f, 0x80, 0xff, random.next().to_le_bytes()[0]] {
                    let mut changed = sample.clone();
                    changed[at] = value;
                    read_everything(&changed);
                }
            }
        }
        for _ in 0..3000 {
            let len = random.below(300);
            let bytes = random.bytes(len);
            read_everything(&bytes);
            let mut out = Vec::new();
            let _ = parse_fetch_response(&bytes, "t", &mut out);
            let _ = parse_metadata_response(&bytes, "t");
            let _ = response_body(&bytes, 1);
            for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
                let _ = decompress(codec, &bytes, &mut Vec::new());
            }
        }
    }

    #[test]
    fn offsets_past_the_largest_are_malformed_not_overflows() {
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, i64::MAX - 1, 0, 0, -1, &[(0, None, Some(b"a")), (0, None, Some(b"b"))]);
        let error = RecordBatches::new(&bytes).next().unwrap().unwrap_err();
        assert_eq!(error, WireError::Malformed("batch last offset past the largest offset"));

        // A record whose offset delta overflows the batch's base offset.
        let mut bytes = Vec::new();
        encode_record_batch(&mut bytes, i64::MAX - 1, i64::MAX, 0, -1, &[(0, None, Some(b"a"))]);
        let mut record = vec![0u8];
        put_varint(&mut record, i64::MAX);
        put_varint(&mut record, i64::MAX);
        put_varint(&mut record, -1);
        put_varint(&mut record, -1);
        put_varint(&mut record, 0);
        let mut records = Vec::new();
        put_varint(&mut records, i64::try_from(record.len()).unwrap());
        records.extend(record);
        set_compressed_records(&mut bytes, 0, &records);
        let batch = RecordBatches::new(&bytes).next().unwrap().unwrap();
        let mut scratch = Vec::new();
        let first = batch.records(&mut scratch).unwrap().next().unwrap();
        assert_eq!(first, Err(WireError::Malformed("record offset delta")));
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_allocated() {
        let mut claim = Vec::new();
        // Snappy's preamble: the uncompressed length as a varint (unsigned).
        let mut len = u64::try_from(MAX_DECOMPRESSED_BATCH).unwrap() + 1;
        while len >= 0x80 {
            claim.push(u8::try_from(len & 0x7f).unwrap() | 0x80);
            len >>= 7;
        }
        claim.push(u8::try_from(len).unwrap());
        claim.extend_from_slice(b"junk");
        let error = decompress(Compression::Snappy, &claim, &mut Vec::new()).unwrap_err();
        assert_eq!(error, "a snappy block of 9 bytes claims 268435457 bytes, more than snappy can expand to");
        // Blocks that each expand plausibly still may not add up past the cap,
        // and streaming codecs stop at it (shown with a small cap).
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        let block = snap::raw::Encoder::new().compress_vec(&[7u8; 600]).unwrap();
        for _ in 0..2 {
            framed.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let zeros = vec![0u8; 1001];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &zeros).unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut lz4, &zeros).unwrap();
        for (codec, bytes) in [
            (Compression::Snappy, framed),
            (Compression::Gzip, gzip.finish().unwrap()),
            (Compression::Lz4, lz4.finish().unwrap()),
            (Compression::Zstd, zstd::bulk::compress(&zeros, 1).unwrap()),
        ] {
            let error = decompress_at_most(codec, &bytes, &mut Vec::new(), 1000).unwrap_err();
            assert_eq!(error, "decompresses to more than 1000 bytes", "{codec:?}");
            assert!(decompress_at_most(codec, &bytes, &mut Vec::new(), 1200).is_ok(), "{codec:?}");
        }
    }

    #[test]
    fn fetch_response_parses_and_rejects_lies() {
        let mut records = Vec::new();
        encode_record_batch(&mut records, 5, 0, 0, -1, &[(0, None, Some(b"v"))]);
        let mut body = Vec::new();
        put_i32(&mut body, 0);
        put_i32(&mut body, 1);
        put_str(&mut body, "t");
        put_i32(&mut body, 1);
        put_i32(&mut body, 2);
        put_i16(&mut body, 0);
        put_i64(&mut body, 6);
        put_i64(&mut body, 6);
        put_i32(&mut body, -1);
        put_i32(&mut body, records.len() as i32);
        body.extend_from_slice(&records);
        let mut out = Vec::new();
        parse_fetch_response(&body, "t", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].partition, out[0].high_watermark, out[0].records), (2, 6, &records[..]));

        let mut lying = body.clone();
        lying[8..10].copy_from_slice(&30_000i16.to_be_bytes());
        out.clear();
        assert_eq!(parse_fetch_response(&lying, "t", &mut out), Err(WireError::Truncated("fetch topic")));
    }
}

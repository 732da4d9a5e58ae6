//! An emulated Greenplum 7 segment reading a readable external table over
//! gpfdist, as `url_curl.c` does, plus an in-process shard (a glommio
//! executor with a [`GpfdistServer`]) to point it at.
//!
//! The segment sends exactly the request head GP 7.0.0 sends (header set and
//! order of `shared/fixtures/gpfdist-captures/`, empty-valued headers left
//! out as libcurl does), then reads the answer as the segment would:
//!
//! - a status outside 2xx is the answer (the query would fail with it);
//! - `X-GP-PROTO` (exact case, as `strncmp`) selects protocol 1, else 0;
//!   `X-GP-ZSTD` selects zstd `D` payloads;
//! - `Content-length`, when present, bounds the body (libcurl), which is how
//!   gpfdist's `Content-length: 0` + `D 0` "no data" form reads as empty;
//! - protocol 1 messages with the segment's own checks (`F` ≤ 256 bytes, `O`
//!   and `L` of 8 bytes, unknown types, negative lengths, a stream cut before
//!   `D 0`), `E` as an error;
//! - rows decoded with FORMAT.md's rules, independently of the engine's
//!   reader, and every `D` block checked to hold whole rows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flowserver_engine::codec::{fsrow, pgcopy};
use flowserver_engine::gpfdist::{GpfdistConfig, GpfdistServer, PathStats, ServedBatch};

/// One decoded row: its fields, `None` for NULL.
pub type Row = Vec<Option<Vec<u8>>>;

/// What one segment sends. [`SegmentRequest::gp7`] fills in the values of
/// the captures' cluster.
#[derive(Debug, Clone)]
pub struct SegmentRequest {
    /// Request target, as in `LOCATION` after host:port (with its leading `/`).
    pub path: String,
    /// `Host:` value (the segment sends the location's IP:port).
    pub host: String,
    pub xid: String,
    pub cid: String,
    pub sn: String,
    pub segment_id: u32,
    pub segment_count: u32,
    /// `X-GP-LINE-DELIM-STR` (hex), left out when empty.
    pub line_delim_str: String,
    pub line_delim_length: i32,
    /// Send `X-GP-ZSTD: 1` (a segment built with zstd always does).
    pub zstd: bool,
    pub coordinator_host: String,
    pub coordinator_port: u16,
    pub csvopt: String,
    pub data_root: String,
    pub database: String,
    pub user: String,
    pub seg_port: u16,
    pub session_id: u32,
}

impl SegmentRequest {
    /// Segment `segment_id` of `segment_count` scanning `path` in transaction
    /// `xid` / command `cid` / scan `sn`, with a custom-formatter table's
    /// options (`X-GP-CSVOPT: m0x 92q  0n0h0`, no line delimiter).
    pub fn gp7(path: &str, xid: &str, cid: &str, sn: &str, segment_id: u32, segment_count: u32) -> SegmentRequest {
        SegmentRequest {
            path: if path.starts_with('/') { path.to_string() } else { format!("/{path}") },
            host: "127.0.0.1:18090".into(),
            xid: xid.into(),
            cid: cid.into(),
            sn: sn.into(),
            segment_id,
            segment_count,
            line_delim_str: String::new(),
            line_delim_length: -1,
            zstd: true,
            coordinator_host: "127.0.0.1".into(),
            coordinator_port: 17000,
            csvopt: "m0x 92q  0n0h0".into(),
            data_root: "/srv/gpdb/data/primary".into(),
            database: "postgres".into(),
            user: "gpadmin".into(),
            seg_port: 17002 + segment_id as u16,
            session_id: 54,
        }
    }

    /// The request head, byte for byte as GP 7.0.0's `url_curl.c` + libcurl send it.
    pub fn head(&self) -> Vec<u8> {
        let mut h = format!("GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n", self.path, self.host);
        h += &format!("X-GP-XID: {}\r\nX-GP-CID: {}\r\nX-GP-SN: {}\r\n", self.xid, self.cid, self.sn);
        h += &format!("X-GP-SEGMENT-ID: {}\r\nX-GP-SEGMENT-COUNT: {}\r\n", self.segment_id, self.segment_count);
        if !self.line_delim_str.is_empty() {
            h += &format!("X-GP-LINE-DELIM-STR: {}\r\n", self.line_delim_str);
        }
        h += &format!("X-GP-LINE-DELIM-LENGTH: {}\r\n", self.line_delim_length);
        if self.zstd {
            h += "X-GP-ZSTD: 1\r\n";
        }
        h += &format!("X-GP-MASTER_HOST: {}\r\nX-GP-MASTER_PORT: {}\r\n", self.coordinator_host, self.coordinator_port);
        h += "X-GP-PROTO: 1\r\n";
        h += &format!(
            "X-GP-COORDINATOR_HOST: {}\r\nX-GP-COORDINATOR_PORT: {}\r\n",
            self.coordinator_host, self.coordinator_port
        );
        h += &format!("X-GP-CSVOPT: {}\r\n", self.csvopt);
        let dir = format!("{}/gpseg{}", self.data_root, self.segment_id);
        h += &format!("X-GP_SEG_PG_CONF: {dir}/postgresql.conf\r\nX-GP_SEG_DATADIR: {dir}\r\nX-GP_SEG_LOGDIR: log\r\n");
        h += &format!("X-GP-DATABASE: {}\r\nX-GP-USER: {}\r\n", self.database, self.user);
        h += &format!("X-GP-SEG-PORT: {}\r\nX-GP-SESSION-ID: {}\r\n\r\n", self.seg_port, self.session_id);
        h.into_bytes()
    }
}

/// What the emulator keeps of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Decode every row into [`ScanResponse::rows`].
    Rows,
    /// Check and count rows only (no per-row allocation; for throughput runs).
    Count,
}

#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub keep: Keep,
    /// Check each row's field count.
    pub columns: Option<u16>,
    /// Drop the connection after this many body bytes (a segment that fails).
    pub disconnect_after: Option<usize>,
    /// Socket read timeout (a hung server fails the read instead of the test).
    pub timeout: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { keep: Keep::Rows, columns: None, disconnect_after: None, timeout: Duration::from_secs(30) }
    }
}

/// One protocol-1 message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    F(Vec<u8>),
    O(i64),
    L(i64),
    /// `D`: uncompressed length and bytes on the wire.
    D {
        len: u32,
        wire: usize,
    },
    E(String),
}

/// A segment's view of one answer.
#[derive(Debug, Clone, Default)]
pub struct ScanResponse {
    /// `HTTP/1.0 200 ok`.
    pub status_line: String,
    pub status: u16,
    /// Every header line, in order.
    pub headers: Vec<(String, String)>,
    /// 1 when `X-GP-PROTO: 1` came, else 0.
    pub proto: u8,
    pub zstd: bool,
    /// Protocol-1 messages, in order (`D 0` included).
    pub frames: Vec<Frame>,
    /// `D 0` arrived.
    pub eof: bool,
    /// The segment would raise this (`E`, or a framing error).
    pub error: Option<String>,
    /// Concatenated (decompressed) `D` payloads, or the protocol-0 body.
    pub data: Vec<u8>,
    pub rows: Vec<Row>,
    pub row_count: u64,
    pub data_bytes: u64,
    pub wire_bytes: u64,
    /// The server closed its side after the answer.
    pub closed_by_server: bool,
    /// Bytes after `D 0` (must be none).
    pub trailing: usize,
}

impl ScanResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Which "no data for this segment" answer this is, if any: 1 = gpfdist's
    /// `http_empty` (`Content-length: 0`, no `X-GP-PROTO`), 2 = a protocol-1
    /// head with only `D 0`.
    pub fn no_data_form(&self) -> Option<u8> {
        if self.status != 200 || self.error.is_some() {
            return None;
        }
        if self.proto == 0 && self.data.is_empty() && self.header("Content-length") == Some("0") {
            return Some(1);
        }
        if self.proto == 1 && self.eof && self.frames == [Frame::D { len: 0, wire: 0 }] {
            return Some(2);
        }
        None
    }

    pub fn blocks(&self) -> usize {
        self.frames.iter().filter(|f| matches!(f, Frame::D { len, .. } if *len > 0)).count()
    }

    /// Header names in order.
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Runs one segment's scan against `addr`.
pub fn scan(addr: SocketAddr, request: &SegmentRequest, options: &ReadOptions) -> Result<ScanResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connect")?;
    stream.set_read_timeout(Some(options.timeout))?;
    stream.write_all(&request.head())?;
    read_response(stream, options)
}

/// Sends raw bytes (any head, well-formed or not) and reads the answer.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], options: &ReadOptions) -> Result<ScanResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connect")?;
    stream.set_read_timeout(Some(options.timeout))?;
    stream.write_all(bytes)?;
    read_response(stream, options)
}

fn read_head(reader: &mut impl BufRead) -> Result<(String, Vec<(String, String)>)> {
    let mut status_line = String::new();
    let mut headers = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 {
            bail!("gpfdist error: server closed connection (no response head)");
        }
        if total > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if status_line.is_empty() {
            status_line = text.to_string();
            continue;
        }
        if text.is_empty() {
            return Ok((status_line, headers));
        }
        let (name, value) = text.split_once(':').ok_or_else(|| anyhow!("bad header line {text:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// Reads one answer from a connection whose request was sent.
pub fn read_response(stream: TcpStream, options: &ReadOptions) -> Result<ScanResponse> {
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let (status_line, headers) = read_head(&mut reader)?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut response = ScanResponse { status_line, status, headers, ..ScanResponse::default() };
    // The segment: `strncmp(line, "X-GP-PROTO", 10)`, so the exact case.
    response.proto = response.header("X-GP-PROTO").map_or(0, |v| v.trim().parse().unwrap_or(0));
    response.zstd = response.header("X-GP-ZSTD").is_some_and(|v| v.trim().parse::<i32>().unwrap_or(0) != 0);
    let content_length = response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.parse::<u64>().ok());
    if !(200..300).contains(&status) || response.proto == 0 {
        // Protocol 0 (or an error): the body is raw bytes, bounded by Content-length.
        let mut body = Vec::new();
        match content_length {
            Some(len) => {
                reader.by_ref().take(len).read_to_end(&mut body)?;
            }
            None => {
                reader.read_to_end(&mut body)?;
            }
        }
        response.data_bytes = body.len() as u64;
        response.data = body;
        response.closed_by_server = finish(&mut reader, &mut response);
        return Ok(response);
    }
    let mut body_read = 0usize;
    let mut decoder = None;
    loop {
        if let Some(limit) = options.disconnect_after
            && body_read >= limit
        {
            let _ = reader.get_ref().shutdown(Shutdown::Both);
            return Ok(response);
        }
        let mut header = [0u8; 5];
        match read_exact_or_eof(&mut reader, &mut header)? {
            0 => {
                response.error = Some("gpfdist error: server closed connection".into());
                return Ok(response);
            }
            5 => {}
            _ => {
                response.error = Some("gpfdist error: incomplete packet - packet len 5".into());
                return Ok(response);
            }
        }
        body_read += 5;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len < 0 {
            response.error = Some(format!("gpfdist error: bad packet type/len: {len}"));
            return Ok(response);
        }
        let len = len as u32;
        match header[0] {
            b'F' | b'O' | b'L' | b'E' => {
                if header[0] == b'F' && len > 256 {
                    response.error = Some("gpfdist error: filename too long".into());
                    return Ok(response);
                }
                if matches!(header[0], b'O' | b'L') && len != 8 {
                    response.error = Some(format!("gpfdist error: bad packet type/len: {len}"));
                    return Ok(response);
                }
                let mut payload = vec![0u8; len as usize];
                reader.read_exact(&mut payload).context("gpfdist server closed connection")?;
                body_read += len as usize;
                let frame = match header[0] {
                    b'F' => Frame::F(payload),
                    b'O' => Frame::O(i64::from_be_bytes(payload.try_into().unwrap_or_default())),
                    b'L' => Frame::L(i64::from_be_bytes(payload.try_into().unwrap_or_default())),
                    _ => {
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        response.error = Some(format!("gpfdist error - {text}"));
                        Frame::E(text)
                    }
                };
                response.frames.push(frame);
                if response.error.is_some() {
                    return Ok(response);
                }
            }
            b'D' => {
                if len == 0 {
                    response.frames.push(Frame::D { len: 0, wire: 0 });
                    response.eof = true;
                    response.closed_by_server = finish(&mut reader, &mut response);
                    return Ok(response);
                }
                let start = response.data.len();
                response.data.resize(start + len as usize, 0);
                let wire = if response.zstd {
                    let decoder = match decoder.as_mut() {
                        Some(decoder) => decoder,
                        None => decoder.insert(zstd::stream::raw::Decoder::new()?),
                    };
                    read_zstd_frame(&mut reader, decoder, &mut response.data[start..])?
                } else {
                    reader.read_exact(&mut response.data[start..]).context("gpfdist server closed connection")?;
                    len as usize
                };
                body_read += wire;
                response.wire_bytes += wire as u64;
                response.data_bytes += u64::from(len);
                response.frames.push(Frame::D { len, wire });
                let block = &response.data[start..];
                let rows = check_block(block, options.columns)
                    .with_context(|| format!("D block {} of {len} bytes", response.blocks()))?;
                response.row_count += rows;
                if options.keep == Keep::Rows {
                    response.rows.extend(decode_rows(block)?);
                }
                if options.keep == Keep::Count {
                    response.data.truncate(start);
                }
            }
            other => {
                response.error = Some(format!("gpfdist error: unknown meta type {other}"));
                return Ok(response);
            }
        }
    }
}

/// After the answer: reads to the server's close (the server half-closes).
fn finish(reader: &mut BufReader<TcpStream>, response: &mut ScanResponse) -> bool {
    let mut rest = Vec::new();
    let closed = reader.read_to_end(&mut rest).is_ok();
    response.trailing = rest.len();
    closed
}

fn read_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// Decodes exactly one zstd frame from `reader` into `out` (which it must
/// fill exactly), consuming only the frame's bytes. Returns the frame's size.
fn read_zstd_frame(
    reader: &mut BufReader<TcpStream>,
    decoder: &mut zstd::stream::raw::Decoder<'static>,
    out: &mut [u8],
) -> Result<usize> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    decoder.reinit()?;
    let mut produced = 0;
    let mut consumed = 0;
    loop {
        let input = reader.fill_buf()?;
        if input.is_empty() {
            bail!("connection to gpfdist error: stream ends unexpectedly");
        }
        let mut src = InBuffer::around(input);
        let mut dst = OutBuffer::around(&mut out[produced..]);
        let hint = decoder.run(&mut src, &mut dst)?;
        let (read, written) = (src.pos(), dst.pos());
        reader.consume(read);
        consumed += read;
        produced += written;
        if hint == 0 {
            if produced != out.len() {
                bail!("zstd frame holds {produced} bytes but D says {}", out.len());
            }
            return Ok(consumed);
        }
        if read == 0 && written == 0 {
            bail!("zstd frame holds more than the {} bytes D says", out.len());
        }
    }
}

/// Checks that a `D` block holds whole rows (FORMAT.md), returning their count.
pub fn check_block(block: &[u8], columns: Option<u16>) -> Result<u64> {
    let mut at = 0usize;
    let mut rows = 0u64;
    while at < block.len() {
        let Some(word) = block.get(at..at + 4) else { bail!("block splits a row: {} bytes left", block.len() - at) };
        let row_len = u32::from_be_bytes([word[0], word[1], word[2], word[3]]) as usize;
        let Some(tuple) = block.get(at + 4..at + 4 + row_len) else {
            bail!("block splits a row: row of {row_len} bytes, {} left", block.len() - at - 4)
        };
        if tuple.len() < 2 {
            bail!("row length {row_len} is shorter than its fields");
        }
        let count = u16::from_be_bytes([tuple[0], tuple[1]]);
        if let Some(columns) = columns
            && columns != count
        {
            bail!("row has {count} fields but the table has {columns} columns");
        }
        let mut p = 2usize;
        for _ in 0..count {
            let Some(len) = tuple.get(p..p + 4) else { bail!("row length {row_len} is shorter than its fields") };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            p += 4;
            if len >= 0 {
                p += len as usize;
            } else if len != -1 {
                bail!("invalid field length {len}");
            }
        }
        if p != tuple.len() {
            bail!("row of {row_len} bytes does not end at its last field ({p})");
        }
        at += 4 + row_len;
        rows += 1;
    }
    Ok(rows)
}

/// Decodes FORMAT.md rows (allocating; for checks).
pub fn decode_rows(mut data: &[u8]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    while !data.is_empty() {
        let take = |data: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            let (head, rest) = data.split_at_checked(n).ok_or_else(|| anyhow!("incomplete row at end of data"))?;
            *data = rest;
            Ok(head.to_vec())
        };
        let row_len = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default()) as usize;
        let mut tuple: &[u8] = &take(&mut data, row_len)?;
        let count = u16::from_be_bytes(take(&mut tuple, 2)?.try_into().unwrap_or_default());
        let mut row = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = i32::from_be_bytes(take(&mut tuple, 4)?.try_into().unwrap_or_default());
            row.push(if len < 0 { None } else { Some(take(&mut tuple, len as usize)?) });
        }
        if !tuple.is_empty() {
            bail!("row ends {} bytes after its last field", tuple.len());
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Runs `n` segments at once; segment `i` scans location `i % K` of
/// `locations` (the planner's round-robin), with the request `request(i, location)`.
pub fn run_segments(
    locations: &[SocketAddr],
    n: usize,
    request: impl Fn(usize, usize) -> SegmentRequest + Sync,
    options: &ReadOptions,
) -> Vec<Result<ScanResponse>> {
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (start, request, location) = (&start, &request, i % locations.len());
                scope.spawn(move || {
                    let request = request(i, location);
                    start.wait();
                    scan(locations[location], &request, options)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("segment thread panicked")))).collect()
    })
}

// ---------------------------------------------------------------------------
// Test data: the captures' 5-column layout (int, bigint, text, timestamp, double).

/// Row `i` of the sample table: `(i, i * 1000003, <20 chars>, 2024-01-01 + i s, i * 0.5)`,
/// NULL text every 97th row.
pub fn sample_row(i: u64) -> [Option<Vec<u8>>; 5] {
    let text: Vec<u8> = (0..20).map(|k| b'a' + ((i.wrapping_mul(31) + k * 7) % 26) as u8).collect();
    // 2024-01-01 00:00:00 in µs since 2000-01-01.
    const BASE: i64 = 757_382_400_000_000;
    [
        Some((i as i32).to_be_bytes().to_vec()),
        Some((i as i64 * 1_000_003).to_be_bytes().to_vec()),
        if i.is_multiple_of(97) { None } else { Some(text) },
        Some((BASE + i as i64 * 1_000_000).to_be_bytes().to_vec()),
        Some((i as f64 * 0.5).to_bits().to_be_bytes().to_vec()),
    ]
}

/// Rows `first..first + rows` of the sample table as a batch, written with the
/// engine's writer (no per-row allocation on the write side).
pub fn sample_batch(first: u64, rows: u64) -> ServedBatch {
    let mut data = Vec::with_capacity(rows as usize * 78);
    let mut row_ends = Vec::with_capacity(rows as usize);
    let mut text = [0u8; 20];
    for i in first..first + rows {
        let start = fsrow::begin_row(&mut data);
        pgcopy::begin_row(&mut data, 5);
        pgcopy::put_i32(&mut data, i as i32);
        pgcopy::put_i64(&mut data, i as i64 * 1_000_003);
        if i.is_multiple_of(97) {
            pgcopy::put_null(&mut data);
        } else {
            for (k, byte) in text.iter_mut().enumerate() {
                *byte = b'a' + ((i.wrapping_mul(31) + k as u64 * 7) % 26) as u8;
            }
            pgcopy::put_field(&mut data, &text);
        }
        pgcopy::put_i64(&mut data, 757_382_400_000_000 + i as i64 * 1_000_000);
        pgcopy::put_f64(&mut data, i as f64 * 0.5);
        fsrow::end_row(&mut data, start);
        row_ends.push(data.len() as u32);
    }
    ServedBatch { data, row_ends }
}

/// Checks that `rows` are sample rows and returns their ids.
pub fn sample_ids(rows: &[Row]) -> Result<Vec<u64>> {
    rows.iter()
        .map(|row| {
            let id = row.first().cloned().flatten().ok_or_else(|| anyhow!("row without id"))?;
            let id = i32::from_be_bytes(id.try_into().map_err(|_| anyhow!("id is not an int4"))?) as u64;
            if row.as_slice() != sample_row(id).as_slice() {
                bail!("row {id} differs: {row:?}");
            }
            Ok(id)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// An in-process shard: a glommio executor thread running a GpfdistServer.

enum Command {
    Publish(String, Arc<ServedBatch>),
    Retract(String),
    Stats(String, mpsc::Sender<PathStats>),
    Connections(mpsc::Sender<usize>),
    Shutdown,
}

/// A glommio executor with one [`GpfdistServer`] on 127.0.0.1, driven from
/// the test thread. Every call waits until the shard has applied it.
pub struct TestShard {
    pub addr: SocketAddr,
    commands: async_channel::Sender<(Command, mpsc::Sender<()>)>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

impl TestShard {
    pub fn start(config: GpfdistConfig) -> TestShard {
        let (commands, inbox) = async_channel::bounded::<(Command, mpsc::Sender<()>)>(16);
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("test-shard")
            .spawn(move || async move {
                let server = match GpfdistServer::bind("127.0.0.1:0".parse().expect("address"), config).await {
                    Ok(server) => server,
                    Err(error) => {
                        let _ = addr_tx.send(Err(error.to_string()));
                        return;
                    }
                };
                let _ = addr_tx.send(Ok(server.local_addr()));
                while let Ok((command, done)) = inbox.recv().await {
                    let stop = matches!(command, Command::Shutdown);
                    match command {
                        Command::Publish(path, batch) => server.publish(&path, batch),
                        Command::Retract(path) => server.retract(&path),
                        Command::Stats(path, reply) => {
                            let _ = reply.send(server.stats(&path));
                        }
                        Command::Connections(reply) => {
                            let _ = reply.send(server.connections());
                        }
                        Command::Shutdown => server.shutdown(),
                    }
                    let _ = done.send(());
                    if stop {
                        break;
                    }
                }
                server.shutdown();
                // Let cancelled connection tasks finish.
                glommio::timer::sleep(Duration::from_millis(20)).await;
            })
            .expect("start a glommio executor");
        let addr = addr_rx.recv().expect("shard thread").expect("bind the gpfdist listener");
        TestShard { addr, commands, thread: Some(thread) }
    }

    fn call(&self, command: Command) {
        let (done, wait) = mpsc::channel();
        if self.commands.send_blocking((command, done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(30));
        }
    }

    pub fn publish(&self, path: &str, batch: Arc<ServedBatch>) {
        self.call(Command::Publish(path.to_string(), batch));
    }

    pub fn retract(&self, path: &str) {
        self.call(Command::Retract(path.to_string()));
    }

    pub fn stats(&self, path: &str) -> PathStats {
        let (tx, rx) = mpsc::channel();
        self.call(Command::Stats(path.to_string(), tx));
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
    }

    pub fn connections(&self) -> usize {
        let (tx, rx) = mpsc::channel();
        self.call(Command::Connections(tx));
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or(usize::MAX)
    }

    /// Polls `stats(path)` until `done` holds or `timeout` passes.
    pub fn wait_stats(&self, path: &str, timeout: Duration, done: impl Fn(&PathStats) -> bool) -> PathStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats(path);
            if done(&stats) || Instant::now() > deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn shutdown(&mut self) {
        self.call(Command::Shutdown);
        self.commands.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestShard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured head of `01_read_csv__conn001`, rebuilt.
    #[test]
    fn heads_match_the_capture_byte_for_byte() {
        let mut request = SegmentRequest::gp7("/small.csv", "24-0000000004", "4", "0", 0, 2);
        request.csvopt = "m1x 34q 34n0h0".into();
        request.session_id = 24;
        let expected = "GET /small.csv HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nAccept: */*\r\n\
            X-GP-XID: 24-0000000004\r\nX-GP-CID: 4\r\nX-GP-SN: 0\r\nX-GP-SEGMENT-ID: 0\r\nX-GP-SEGMENT-COUNT: 2\r\n\
            X-GP-LINE-DELIM-LENGTH: -1\r\nX-GP-ZSTD: 1\r\nX-GP-MASTER_HOST: 127.0.0.1\r\nX-GP-MASTER_PORT: 17000\r\n\
            X-GP-PROTO: 1\r\nX-GP-COORDINATOR_HOST: 127.0.0.1\r\nX-GP-COORDINATOR_PORT: 17000\r\n\
            X-GP-CSVOPT: m1x 34q 34n0h0\r\nX-GP_SEG_PG_CONF: /srv/gpdb/data/primary/gpseg0/postgresql.conf\r\n\
            X-GP_SEG_DATADIR: /srv/gpdb/data/primary/gpseg0\r\nX-GP_SEG_LOGDIR: log\r\nX-GP-DATABASE: postgres\r\n\
            X-GP-USER: gpadmin\r\nX-GP-SEG-PORT: 17002\r\nX-GP-SESSION-ID: 24\r\n\r\n";
        assert_eq!(String::from_utf8(request.head()).unwrap(), expected);
        assert_eq!(request.head().len(), 584, "header_block_bytes of the capture");
    }

    #[test]
    fn sample_rows_round_trip() {
        let batch = sample_batch(0, 200);
        assert_eq!(batch.check(), Ok(()));
        let rows = decode_rows(&batch.data).unwrap();
        assert_eq!(sample_ids(&rows).unwrap(), (0..200).collect::<Vec<_>>());
        assert_eq!(check_block(&batch.data, Some(5)).unwrap(), 200);
        assert!(check_block(&batch.data[..100], Some(5)).is_err());
    }

    /// Both "no data" forms read as zero rows; the framing and zstd readers
    /// agree with hand-made answers.
    #[test]
    fn reads_both_no_data_forms_and_zstd_blocks() {
        use flowserver_engine::gpfdist::response;
        let serve = |body: Vec<u8>| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut socket, _) = listener.accept().unwrap();
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head);
                socket.write_all(&body).unwrap();
            });
            let request = SegmentRequest::gp7("/t", "1", "1", "0", 0, 1);
            let response = scan(addr, &request, &ReadOptions::default()).unwrap();
            server.join().unwrap();
            response
        };
        let mut form1 = Vec::new();
        response::empty_head(&mut form1);
        response::eof(&mut form1);
        let r = serve(form1);
        assert_eq!((r.status, r.proto, r.no_data_form(), r.rows.len()), (200, 0, Some(1), 0));

        let mut form2 = Vec::new();
        response::ok_head(&mut form2, false);
        response::eof(&mut form2);
        let r = serve(form2);
        assert_eq!((r.proto, r.no_data_form(), r.eof, r.closed_by_server), (1, Some(2), true, true));

        let batch = sample_batch(10, 30);
        let compressed = zstd::bulk::compress(&batch.data, 1).unwrap();
        let mut body = Vec::new();
        response::ok_head(&mut body, true);
        response::block_header(&mut body, b"/t", 0, 11, batch.data.len() as u32);
        body.extend_from_slice(&compressed);
        response::block_header(&mut body, b"/t", 0, 11, batch.data.len() as u32);
        body.extend_from_slice(&compressed);
        response::eof(&mut body);
        let r = serve(body);
        assert!(r.zstd && r.eof, "{r:?}");
        assert_eq!(r.blocks(), 2);
        assert_eq!(r.wire_bytes, 2 * compressed.len() as u64);
        let ids = sample_ids(&r.rows).unwrap();
        assert_eq!(ids.len(), 60);
        assert_eq!(ids[..30], (10..40).collect::<Vec<_>>());

        // A stream cut before `D 0` is an error on the segment.
        let mut cut = Vec::new();
        response::ok_head(&mut cut, false);
        response::block_header(&mut cut, b"/t", 0, 1, batch.data.len() as u32);
        cut.extend_from_slice(&batch.data);
        let r = serve(cut);
        assert_eq!(r.error.as_deref(), Some("gpfdist error: server closed connection"));
    }
}

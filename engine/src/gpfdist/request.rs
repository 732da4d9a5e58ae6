//! Request heads: bytes in, a validated [`Request`] (or the HTTP error to
//! answer) out. Follows gpfdist's own parser (`gnet_parse_request`,
//! `request_validate`, `request_parse_gp_headers`, `request_set_path`) so a
//! segment sees the same answers from us as from gpfdist:
//!
//! - the head ends at the first empty line; a bare `\n` ends a line, and
//!   `\r`, spaces and tabs are ignored when looking for the empty line;
//! - at most [`MAX_HEAD`] bytes (the listener answers `400` beyond) and at most
//!   [`MAX_HEADERS`] header lines (gpfdist silently drops the rest; we refuse);
//! - request line: exactly three tokens, `GET` or `POST`, `HTTP/1.x`;
//! - path: `%xx` decoded (invalid escapes are kept as they are), leading `/`
//!   removed; `..`, `\`, NUL or non-UTF-8 are refused;
//! - header names compare case-insensitively; a repeated header: the last wins;
//!   continuation lines (leading space or tab) are joined to the previous value;
//! - `X-GP-PROTO` absent means protocol 0 (raw rows, end of data = end of the
//!   connection), so a plain HTTP client such as `curl` can read a batch;
//!   gpfdist refuses such a request, segments always send the header. When
//!   present it must be 0 or 1, read like C `strtol(s, 0, 0)`;
//! - `X-GP-XID`, `X-GP-CID`, `X-GP-SN`: all three or none (none = a plain HTTP
//!   client, which gets a private session); some → `400 invalid request
//!   (missing X-GP-* header)`;
//! - every other `X-GP-*` header is optional (libcurl drops empty-valued ones).

use std::borrow::Cow;
use std::fmt;

/// Largest request head (gpfdist's `hbufmax`).
pub const MAX_HEAD: usize = 4096;
/// Most header lines accepted in a head (gpfdist's `hname[50]`).
pub const MAX_HEADERS: usize = 50;
/// The debug endpoint gpfdist answers before looking at X-GP headers.
pub const STATUS_PATH: &str = "gpfdist/status";

/// An HTTP error answer: `HTTP/1.0 <status> <reason>`. The reason is the only
/// error text a segment shows its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: Cow<'static, str>,
}

impl HttpError {
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError { status, reason: reason.into() }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(400, reason)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// The transaction id of a scan: `X-GP-XID`, `X-GP-CID`, `X-GP-SN`, kept as
/// sent (opaque strings: the XID has two forms, `24-0000000004` and `112`;
/// CID and SN are lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tid {
    pub xid: String,
    pub cid: String,
    pub sn: String,
}

/// `X-GP-CSVOPT`: `m<csv>x<escape>q<quote>n<eol>h<header>` (or the GP4 order
/// `…h<header>n<eol>`), numbers read like C `%d` (the space-padded
/// `m0x 92q  0n0h0` form included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOpt {
    pub csv: bool,
    /// Byte value of the escape character, 0 for none.
    pub escape: i32,
    /// Byte value of the quote character, 0 for none.
    pub quote: i32,
    /// `EolType`: 0 unknown, 1 LF, 2 CR, 3 CRLF.
    pub eol: i32,
    pub header: bool,
}

/// A validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// `%xx`-decoded, without its leading `/`: `job/0` for `GET /job/0`.
    pub path: String,
    /// `X-GP-PROTO`: 0 or 1.
    pub proto: u8,
    /// `None` for a plain HTTP client (no XID, CID, SN).
    pub tid: Option<Tid>,
    pub segment_id: Option<i32>,
    pub segment_count: Option<i32>,
    /// `X-GP-ZSTD` with a non-zero value: the segment can read zstd blocks.
    pub zstd_offered: bool,
    pub csvopt: Option<CsvOpt>,
    /// `X-GP-LINE-DELIM-STR`, hex-decoded.
    pub line_delim: Option<Vec<u8>>,
    /// `X-GP-LINE-DELIM-LENGTH`, -1 when absent.
    pub line_delim_length: i32,
    pub user: Option<String>,
    pub database: Option<String>,
    pub session_id: Option<String>,
    pub transform: Option<String>,
    /// Writes only: `X-GP-SEQ`, `X-GP-DONE`, `Content-Length`, `Expect: 100-continue`.
    pub seq: Option<i64>,
    pub done: bool,
    pub content_length: Option<u64>,
    pub expect_continue: bool,
}

impl Request {
    /// gpfdist's transaction key part `XID.CID.SN.PROTO`, or `None` for a
    /// plain HTTP client.
    pub fn tid_key(&self) -> Option<String> {
        self.tid.as_ref().map(|t| format!("{}.{}.{}.{}", t.xid, t.cid, t.sn, self.proto))
    }
}

/// What a head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// `GET /gpfdist/status`.
    Status,
    Request(Box<Request>),
}

/// Length of the head at the start of `buf` (up to and including the empty
/// line), or `None` while it is incomplete. gpfdist's rule: a line break is
/// `\n`; `\r`, spaces and tabs do not make a line non-empty.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut empty = true;
    for (i, &ch) in buf.iter().enumerate() {
        match ch {
            b' ' | b'\t' | b'\r' => {}
            b'\n' if empty => return Some(i + 1),
            b'\n' => empty = true,
            _ => empty = false,
        }
    }
    None
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !is_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(b)).map_or(start, |e| e + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// `%xx` → byte; an escape that is not two hex digits stays as it is (gpfdist).
fn percent_decode(raw: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%'
            && let [high, low, tail @ ..] = after
            && let (Some(h), Some(l)) = (hex(*high), hex(*low))
        {
            out.push(h << 4 | l);
            rest = tail;
            continue;
        }
        out.push(byte);
        rest = after;
    }
    out
}

/// C `strtol(s, NULL, 0)`: leading spaces, a sign, `0x` hex, `0` octal or
/// decimal; the longest valid prefix; 0 when there are no digits.
pub fn c_strtol(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match (s.strip_prefix('-'), s.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, s),
    };
    let (radix, digits) = if let Some(rest) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if rest.as_bytes().first().is_some_and(u8::is_ascii_hexdigit) { (16, rest) } else { (10, "0") }
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let mut value: i64 = 0;
    for ch in digits.chars() {
        let Some(d) = ch.to_digit(radix) else { break };
        value = value.saturating_mul(i64::from(radix)).saturating_add(i64::from(d));
    }
    // `value` is at most i64::MAX, so its negation fits.
    if negative { -value } else { value }
}

/// [`c_atoi`] as a C `int`, saturated (C leaves an overflow undefined).
pub fn c_int(s: &str) -> i32 {
    let value = c_atoi(s);
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

/// C `atoi`: decimal prefix after spaces and a sign; 0 when none.
pub fn c_atoi(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match (s.strip_prefix('-'), s.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, s),
    };
    let mut value: i64 = 0;
    for b in s.bytes().take_while(u8::is_ascii_digit) {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    // `value` is at most i64::MAX, so its negation fits.
    if negative { -value } else { value }
}

/// `sscanf(s, pattern)` where `pattern` holds literal letters and `%d`
/// (written here as `#`); returns the numbers matched before the first
/// mismatch, as C does.
fn scan_numbers(s: &[u8], pattern: &[u8], out: &mut [i32; 5]) -> usize {
    let mut at = 0;
    let mut matched = 0;
    let is = |at: usize, test: fn(&u8) -> bool| s.get(at).is_some_and(test);
    for &p in pattern {
        if p == b'#' {
            while is(at, u8::is_ascii_whitespace) {
                at += 1;
            }
            let start = at;
            if is(at, |b| matches!(b, b'-' | b'+')) {
                at += 1;
            }
            let digits = at;
            while is(at, u8::is_ascii_digit) {
                at += 1;
            }
            if at == digits {
                return matched;
            }
            let Some(slot) = out.get_mut(matched) else { return matched };
            // A sign and ASCII digits: always UTF-8; C's %d saturates like this on glibc.
            let text = s.get(start..at).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("0");
            *slot = match text.parse::<i64>() {
                Ok(value) => i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX }),
                Err(_) if text.starts_with('-') => i32::MIN,
                Err(_) => i32::MAX,
            };
            matched += 1;
        } else {
            if s.get(at) != Some(&p) {
                return matched;
            }
            at += 1;
        }
    }
    matched
}

/// Parses `X-GP-CSVOPT` as gpfdist does: `m%dx%dq%dn%dh%d`, else the GP4
/// order `m%dx%dq%dh%dn%d`, else `400 bad request, csvopt doesn't match the format`.
pub fn parse_csvopt(value: &str) -> Result<CsvOpt, HttpError> {
    let mut n = [0i32; 5];
    if scan_numbers(value.as_bytes(), b"m#x#q#n#h#", &mut n) == 5 {
        return Ok(CsvOpt { csv: n[0] == 1, escape: n[1], quote: n[2], eol: n[3], header: n[4] == 1 });
    }
    if scan_numbers(value.as_bytes(), b"m#x#q#h#n#", &mut n) == 5 {
        return Ok(CsvOpt { csv: n[0] == 1, escape: n[1], quote: n[2], eol: n[4], header: n[3] == 1 });
    }
    Err(HttpError::bad_request("bad request, csvopt doesn't match the format"))
}

fn hex_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    if bytes.len() % 2 == 1 {
        return None;
    }
    bytes.chunks(2).map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

/// A header's value: borrowed, or joined with its continuation lines.
type Value<'a> = Cow<'a, [u8]>;

/// Parses a complete head (as delimited by [`head_len`]).
pub fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let invalid = || HttpError::bad_request("invalid request");
    let mut lines = head.split(|&b| b == b'\n');
    let first = trim(lines.next().unwrap_or_default());
    let mut tokens = first.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(invalid());
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err(invalid());
    }
    let method = match method {
        b"GET" => Method::Get,
        b"POST" => Method::Post,
        _ => return Err(invalid()),
    };

    let decoded = percent_decode(target);
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Err(HttpError::bad_request("invalid request (path is not UTF-8)"));
    };
    if decoded.contains('\0') {
        return Err(invalid());
    }
    let path = decoded.trim_start_matches('/');
    if path == STATUS_PATH {
        return Ok(Head::Status);
    }

    let mut headers: Vec<(&[u8], Value<'_>)> = Vec::with_capacity(32);
    for line in lines {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            let more = trim(line);
            if more.is_empty() {
                break;
            }
            let Some((_, value)) = headers.last_mut() else { break };
            let mut joined = value.to_vec();
            joined.push(b' ');
            joined.extend_from_slice(more);
            *value = Cow::Owned(joined);
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                (trim(name), trim(value.get(1..).unwrap_or_default()))
            }
            None => (trim(line), &b""[..]),
        };
        if name.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::bad_request(format!("invalid request (more than {MAX_HEADERS} headers)")));
        }
        headers.push((name, Cow::Borrowed(value)));
    }
    let header = |wanted: &str| -> Option<String> {
        headers
            .iter()
            .rev()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };

    let line_delim = match header("X-GP-LINE-DELIM-STR") {
        Some(value) => Some(hex_decode(&value).ok_or_else(|| HttpError::bad_request("invalid EOL encoding"))?),
        None => None,
    };
    let line_delim_length = header("X-GP-LINE-DELIM-LENGTH").map_or(-1, |v| c_int(&v));
    if let Ok(wanted) = usize::try_from(line_delim_length)
        && wanted > 0
        && line_delim.as_ref().is_none_or(|d| d.len() != wanted)
    {
        return Err(HttpError::bad_request("invalid EOL length"));
    }
    let seq = match header("X-GP-SEQ") {
        Some(value) => {
            let seq = c_atoi(&value);
            if seq <= 0 {
                return Err(HttpError::bad_request("invalid sequence number"));
            }
            Some(seq)
        }
        None => None,
    };
    let proto = match header("X-GP-PROTO") {
        None => 0,
        Some(value) => match c_strtol(&value) {
            0 => 0,
            1 => 1,
            _ => return Err(HttpError::bad_request("invalid request (invalid gp-proto)")),
        },
    };
    let tid = match (header("X-GP-XID"), header("X-GP-CID"), header("X-GP-SN")) {
        (Some(xid), Some(cid), Some(sn)) => Some(Tid { xid, cid, sn }),
        (None, None, None) => None,
        _ => return Err(HttpError::bad_request("invalid request (missing X-GP-* header)")),
    };
    if path.contains("..") || path.contains('\\') {
        return Err(HttpError::bad_request("invalid request due to relative path"));
    }
    if path.is_empty() {
        return Err(HttpError::bad_request("invalid request (unable to set path)"));
    }
    let csvopt = match header("X-GP-CSVOPT") {
        Some(value) if !value.is_empty() => Some(parse_csvopt(&value)?),
        _ => None,
    };
    let content_length = match header("Content-Length") {
        Some(value) => Some(value.parse::<u64>().map_err(|_| HttpError::bad_request("invalid Content-Length"))?),
        None => None,
    };
    Ok(Head::Request(Box::new(Request {
        method,
        path: path.to_string(),
        proto,
        tid,
        segment_id: header("X-GP-SEGMENT-ID").map(|v| c_int(&v)),
        segment_count: header("X-GP-SEGMENT-COUNT").map(|v| c_int(&v)),
        zstd_offered: header("X-GP-ZSTD").is_some_and(|v| c_atoi(&v) != 0),
        csvopt,
        line_delim,
        line_delim_length,
        user: header("X-GP-USER"),
        database: header("X-GP-DATABASE"),
        session_id: header("X-GP-SESSION-ID"),
        transform: header("X-GP-TRANSFORM"),
        seq,
        done: header("X-GP-DONE").is_some(),
        content_length,
        expect_continue: header("Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `01_read_csv__conn001__request.txt` of the GP 7.0.0 captures.
    const GP7_HEAD: &str = "GET /small.csv HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nAccept: */*\r\n\
        X-GP-XID: 24-0000000004\r\nX-GP-CID: 4\r\nX-GP-SN: 0\r\nX-GP-SEGMENT-ID: 0\r\nX-GP-SEGMENT-COUNT: 2\r\n\
        X-GP-LINE-DELIM-LENGTH: -1\r\nX-GP-ZSTD: 1\r\nX-GP-MASTER_HOST: 127.0.0.1\r\nX-GP-MASTER_PORT: 17000\r\n\
        X-GP-PROTO: 1\r\nX-GP-COORDINATOR_HOST: 127.0.0.1\r\nX-GP-COORDINATOR_PORT: 17000\r\n\
        X-GP-CSVOPT: m1x 34q 34n0h0\r\nX-GP_SEG_PG_CONF: /srv/gpdb/data/primary/gpseg0/postgresql.conf\r\n\
        X-GP_SEG_DATADIR: /srv/gpdb/data/primary/gpseg0\r\nX-GP_SEG_LOGDIR: log\r\nX-GP-DATABASE: postgres\r\n\
        X-GP-USER: gpadmin\r\nX-GP-SEG-PORT: 17002\r\nX-GP-SESSION-ID: 24\r\n\r\n";

    fn request(head: &str) -> Request {
        match parse_head(head.as_bytes()) {
            Ok(Head::Request(request)) => *request,
            other => panic!("{other:?}"),
        }
    }

    fn error(head: &str) -> HttpError {
        parse_head(head.as_bytes()).expect_err("must be refused")
    }

    fn minimal(extra: &str) -> String {
        format!("GET /job/0 HTTP/1.1\r\nX-GP-XID: 112\r\nX-GP-CID: 6\r\nX-GP-SN: 0\r\nX-GP-PROTO: 1\r\n{extra}\r\n")
    }

    #[test]
    fn a_gp7_head_from_the_captures() {
        assert_eq!(head_len(GP7_HEAD.as_bytes()), Some(GP7_HEAD.len()));
        let r = request(GP7_HEAD);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "small.csv");
        assert_eq!(r.proto, 1);
        assert_eq!(r.tid, Some(Tid { xid: "24-0000000004".into(), cid: "4".into(), sn: "0".into() }));
        assert_eq!(r.tid_key().as_deref(), Some("24-0000000004.4.0.1"));
        assert_eq!((r.segment_id, r.segment_count), (Some(0), Some(2)));
        assert!(r.zstd_offered);
        assert_eq!(r.csvopt, Some(CsvOpt { csv: true, escape: 34, quote: 34, eol: 0, header: false }));
        assert_eq!((r.line_delim.as_deref(), r.line_delim_length), (None, -1));
        assert_eq!(r.user.as_deref(), Some("gpadmin"));
        assert_eq!(r.database.as_deref(), Some("postgres"));
        assert_eq!(r.session_id.as_deref(), Some("24"));
        assert_eq!((r.seq, r.done, r.content_length, r.expect_continue), (None, false, None, false));
    }

    #[test]
    fn head_end_rules() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_len(b"GET / HTTP/1.1\nA: b\n\nrest"), Some(21));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n \t\r\nX"), Some(20));
        assert_eq!(head_len(b"\n"), Some(1));
    }

    #[test]
    fn plain_decimal_xid_and_names_in_any_case() {
        let r = request(
            "GET /small.csv HTTP/1.1\r\nx-gp-xid: 112\r\nX-Gp-Cid: b\r\nx-gp-sn:2\r\nx-gp-proto:   1  \r\n\r\n",
        );
        assert_eq!(r.tid_key().as_deref(), Some("112.b.2.1"));
        assert!(!r.zstd_offered);
        assert_eq!(r.csvopt, None);
    }

    #[test]
    fn csvopt_forms() {
        let text = CsvOpt { csv: false, escape: 92, quote: 0, eol: 0, header: false };
        assert_eq!(parse_csvopt("m0x 92q  0n0h0"), Ok(text));
        assert_eq!(parse_csvopt("m0x92q0n0h0"), Ok(text));
        assert_eq!(
            parse_csvopt("m1x 34q 34n1h1"),
            Ok(CsvOpt { csv: true, escape: 34, quote: 34, eol: 1, header: true })
        );
        // GP4 order.
        assert_eq!(parse_csvopt("m1x34q34h1n3"), Ok(CsvOpt { csv: true, escape: 34, quote: 34, eol: 3, header: true }));
        assert_eq!(parse_csvopt("m0x 79q  0n0h0").map(|o| o.escape), Ok(79));
        let refused = parse_csvopt("csv please").unwrap_err();
        assert_eq!(refused.to_string(), "400 bad request, csvopt doesn't match the format");
        assert_eq!(error(&minimal("X-GP-CSVOPT: m1\r\n")).status, 400);
    }

    #[test]
    fn line_delimiter() {
        let r = request(&minimal("X-GP-LINE-DELIM-STR: 0D0a\r\nX-GP-LINE-DELIM-LENGTH: 2\r\n"));
        assert_eq!(r.line_delim.as_deref(), Some(&b"\r\n"[..]));
        assert_eq!(r.line_delim_length, 2);
        assert_eq!(error(&minimal("X-GP-LINE-DELIM-STR: 0A0\r\n")).reason, "invalid EOL encoding");
        assert_eq!(error(&minimal("X-GP-LINE-DELIM-STR: zz\r\n")).reason, "invalid EOL encoding");
        assert_eq!(
            error(&minimal("X-GP-LINE-DELIM-STR: 0A\r\nX-GP-LINE-DELIM-LENGTH: 2\r\n")).reason,
            "invalid EOL length"
        );
        assert_eq!(error(&minimal("X-GP-LINE-DELIM-LENGTH: 1\r\n")).reason, "invalid EOL length");
    }

    #[test]
    fn proto_defaults_to_0_and_is_read_like_strtol() {
        let no_proto = "GET /job HTTP/1.1\r\nX-GP-XID: 1\r\nX-GP-CID: 1\r\nX-GP-SN: 0\r\n\r\n";
        assert_eq!(request(no_proto).proto, 0);
        let with = |proto: &str| format!("GET /job HTTP/1.1\r\nX-GP-PROTO: {proto}\r\n\r\n");
        assert_eq!(error(&with("2")).to_string(), "400 invalid request (invalid gp-proto)");
        assert_eq!(error(&with("-1")).reason, "invalid request (invalid gp-proto)");
        assert_eq!(request(&with("0x1")).proto, 1);
        assert_eq!(request(&with("0")).proto, 0);
        assert_eq!(request(&with("junk")).proto, 0, "strtol reads no digits as 0, as gpfdist does");
    }

    #[test]
    fn all_three_ids_or_none() {
        let partial = "GET /job HTTP/1.1\r\nX-GP-XID: 1\r\nX-GP-SN: 0\r\nX-GP-PROTO: 1\r\n\r\n";
        assert_eq!(error(partial).to_string(), "400 invalid request (missing X-GP-* header)");
        let plain = request("GET /job HTTP/1.0\r\nX-GP-PROTO: 1\r\n\r\n");
        assert_eq!(plain.tid, None);
        assert_eq!(plain.tid_key(), None);
    }

    #[test]
    fn request_line_rules() {
        for head in [
            "PUT /job HTTP/1.1\r\nX-GP-PROTO: 1\r\n\r\n",
            "GET /job\r\nX-GP-PROTO: 1\r\n\r\n",
            "GET /job HTTP/2\r\nX-GP-PROTO: 1\r\n\r\n",
            "GET /job HTTP/1.1 extra\r\nX-GP-PROTO: 1\r\n\r\n",
            "get /job HTTP/1.1\r\nX-GP-PROTO: 1\r\n\r\n",
            "\r\n",
        ] {
            assert_eq!(error(head).to_string(), "400 invalid request", "{head:?}");
        }
        // A TLS client hello is garbage to us.
        let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n";
        assert_eq!(parse_head(garbage).unwrap_err().status, 400);
    }

    #[test]
    fn paths() {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nX-GP-PROTO: 1\r\n\r\n");
        assert_eq!(request(&get("/flow%2Fjob%20a/0")).path, "flow/job a/0");
        assert_eq!(request(&get("//job")).path, "job");
        assert_eq!(request(&get("/100%")).path, "100%", "an invalid escape stays");
        assert_eq!(request(&get("/a%zzb")).path, "a%zzb");
        assert_eq!(error(&get("/../etc/passwd")).to_string(), "400 invalid request due to relative path");
        assert_eq!(error(&get("/a/%2e%2e/b")).reason, "invalid request due to relative path");
        assert_eq!(error(&get("/a%5cb")).reason, "invalid request due to relative path");
        assert_eq!(error(&get("/")).reason, "invalid request (unable to set path)");
        assert_eq!(error(&get("/%ff")).reason, "invalid request (path is not UTF-8)");
        assert_eq!(error(&get("/a%00b")).reason, "invalid request");
        // The status endpoint needs no X-GP header.
        assert_eq!(parse_head(b"GET /gpfdist/status HTTP/1.1\r\n\r\n"), Ok(Head::Status));
        assert_eq!(parse_head(b"GET /gpfdist%2fstatus HTTP/1.0\r\n\r\n"), Ok(Head::Status));
    }

    #[test]
    fn header_count_and_continuations() {
        let many: String = (0..MAX_HEADERS - 5).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
        assert!(parse_head(minimal(&many).as_bytes()).is_ok());
        let too_many: String = (0..MAX_HEADERS).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
        assert_eq!(error(&minimal(&too_many)).to_string(), "400 invalid request (more than 50 headers)");
        let r = request(&minimal("X-GP-USER: a\r\n\tb\r\nX-GP-DATABASE: d\r\n"));
        assert_eq!(r.user.as_deref(), Some("a b"));
        assert_eq!(r.database.as_deref(), Some("d"));
        // The last of repeated headers wins.
        assert_eq!(request(&minimal("X-GP-USER: a\r\nX-GP-USER: z\r\n")).user.as_deref(), Some("z"));
    }

    #[test]
    fn write_headers() {
        // `05_write_csv__conn001__request.txt`.
        let head = "POST /written_out.csv HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nAccept: */*\r\n\
            X-GP-XID: 34-0000000004\r\nX-GP-CID: 4\r\nX-GP-SN: 0\r\nX-GP-SEGMENT-ID: 0\r\nX-GP-SEGMENT-COUNT: 2\r\n\
            X-GP-LINE-DELIM-LENGTH: -1\r\nX-GP-ZSTD: 1\r\nX-GP-PROTO: 0\r\nX-GP-SEQ: 1\r\nContent-Type: text/xml\r\n\
            Content-Length: 0\r\n\r\n";
        let r = request(head);
        assert_eq!((r.method, r.proto, r.seq, r.content_length), (Method::Post, 0, Some(1), Some(0)));
        let r =
            request(&minimal("X-GP-SEQ: 2\r\nX-GP-DONE: 1\r\nContent-Length: 4294967226\r\nExpect: 100-continue\r\n"));
        assert_eq!((r.seq, r.done, r.content_length, r.expect_continue), (Some(2), true, Some(4294967226), true));
        assert_eq!(error(&minimal("X-GP-SEQ: 0\r\n")).reason, "invalid sequence number");
        assert_eq!(error(&minimal("Content-Length: -5\r\n")).reason, "invalid Content-Length");
    }

    /// Random bytes, every prefix of a real head, and multi-byte or odd bytes
    /// at every position of it: an answer each time, never a panic.
    #[test]
    fn no_head_panics_the_parser() {
        let real = GP7_HEAD.as_bytes();
        let oddities: [&[u8]; 8] =
            [b"\xc3\xa9", "\u{20ac}".as_bytes(), "\u{1f600}".as_bytes(), b"\xff", b"%", b"%e2%82", b"\n", b":"];
        for end in 0..=real.len() {
            let _ = head_len(&real[..end]);
            let _ = parse_head(&real[..end]);
            for odd in oddities {
                let mut changed = real[..end].to_vec();
                changed.extend_from_slice(odd);
                changed.extend_from_slice(&real[end..]);
                let _ = parse_head(&changed);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"GET /:%0aXx-GP-PROTO\r\n \t0123456789-+\xff\xc3";
        for _ in 0..5000 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let _ = head_len(&bytes);
            let _ = parse_head(&bytes);
            let _ = parse_csvopt(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn numbers_past_an_int_saturate() {
        let r = request(&minimal("X-GP-SEGMENT-ID: 4294967296\r\nX-GP-SEGMENT-COUNT: -99999999999999999999\r\n"));
        assert_eq!((r.segment_id, r.segment_count), (Some(i32::MAX), Some(i32::MIN)));
        assert_eq!(
            parse_csvopt("m1x99999999999q-99999999999999999999n0h0").map(|o| (o.escape, o.quote)),
            Ok((i32::MAX, i32::MIN))
        );
        assert_eq!(
            error(&minimal("X-GP-LINE-DELIM-STR: 0A\r\nX-GP-LINE-DELIM-LENGTH: 4294967297\r\n")).reason,
            "invalid EOL length"
        );
        assert_eq!(c_strtol("-0x8000000000000000"), -i64::MAX);
    }

    #[test]
    fn c_number_readers() {
        assert_eq!(c_strtol(" 010"), 8);
        assert_eq!(c_strtol("0x1f"), 31);
        assert_eq!(c_strtol("-12abc"), -12);
        assert_eq!(c_strtol("0x"), 0);
        assert_eq!(c_atoi("  42 "), 42);
        assert_eq!(c_atoi("-1"), -1);
        assert_eq!(c_atoi("x"), 0);
    }
}

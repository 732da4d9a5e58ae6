//! Response framing: the bytes gpfdist sends, written into a caller's
//! `Vec<u8>` (appended, never cleared).
//!
//! Heads are HTTP/1.0 with `Connection: close` and no `Content-Length` on a
//! data response: the body ends when the server closes. Header names, order
//! and values are gpfdist's (`http_ok`, `http_empty`, `http_error`), checked
//! against the GP 7.0.0 captures; only `X-GPFDIST-VERSION` differs.
//!
//! Protocol-1 body: messages `type:u8 len:i32be payload[len]`:
//! - before every data block `F` (a file name, ≤ 256 bytes: we send the
//!   request path), `O` (i64 byte offset of the block in the batch), `L` (i64
//!   row number of the block's first row, 1-based), then `D` (len) and the
//!   block's bytes, whole rows only; with zstd `D.len` is the UNcompressed
//!   length and one complete zstd frame follows;
//! - `D` with length 0 ends the response; `E <text>` instead reports an error
//!   the segment raises as `gpfdist error - <text>`.

/// `X-GPFDIST-VERSION` of our answers.
pub const VERSION: &str = concat!("flowserver ", env!("CARGO_PKG_VERSION"));
/// Longest `F` payload a segment accepts ("filename too long" beyond).
pub const MAX_FILENAME: usize = 256;
/// Largest block header [`block_header`] writes: `F` with 256 bytes, `O`, `L`, `D`.
pub const MAX_BLOCK_HEADER: usize = 5 + MAX_FILENAME + 13 + 13 + 5;
/// Longest reason phrase we send; longer ones are cut.
pub const MAX_REASON: usize = 512;

/// The 200 head of a protocol-1 read (`http_ok`), with `X-GP-ZSTD: 1` after
/// `Connection: close` when the `D` payloads are zstd frames.
pub fn ok_head(buf: &mut Vec<u8>, zstd: bool) {
    ok_head_proto(buf, 1, zstd);
}

/// The 200 head of a read in `proto` (0: raw rows until the connection closes).
pub fn ok_head_proto(buf: &mut Vec<u8>, proto: u8, zstd: bool) {
    buf.extend_from_slice(b"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\nExpires: 0\r\nX-GPFDIST-VERSION: ");
    buf.extend_from_slice(VERSION.as_bytes());
    buf.extend_from_slice(if proto == 0 { b"\r\nX-GP-PROTO: 0" } else { b"\r\nX-GP-PROTO: 1" });
    buf.extend_from_slice(b"\r\nCache-Control: no-cache\r\nConnection: close\r\n");
    if zstd {
        buf.extend_from_slice(b"X-GP-ZSTD: 1\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// gpfdist's `http_empty` (form 1 of the "no data" answers): `200 ok`,
/// `Content-length: 0`, no `X-GP-PROTO`. We answer late segments with form 2
/// instead ([`ok_head`] + [`eof`]); this is here for emulators and tests.
pub fn empty_head(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\nContent-length: 0\r\nExpires: 0\r\n");
    buf.extend_from_slice(b"X-GPFDIST-VERSION: ");
    buf.extend_from_slice(VERSION.as_bytes());
    buf.extend_from_slice(b"\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n");
}

/// An error answer (`http_error`): `HTTP/1.0 <status> <reason>`. Control
/// characters in `reason` become spaces (the path is part of some reasons)
/// and it is cut at [`MAX_REASON`] bytes.
pub fn error_head(buf: &mut Vec<u8>, status: u16, reason: &str) {
    buf.extend_from_slice(format!("HTTP/1.0 {status} ").as_bytes());
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    buf.extend(reason[..cut].bytes().map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }));
    buf.extend_from_slice(b"\r\nContent-length: 0\r\nExpires: 0\r\nX-GPFDIST-VERSION: ");
    buf.extend_from_slice(VERSION.as_bytes());
    buf.extend_from_slice(b"\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n");
}

/// The head of a `/gpfdist/status` answer: a 200 without `X-GP-PROTO`, with
/// the length of the text body that follows.
pub fn status_head(buf: &mut Vec<u8>, content_length: usize) {
    buf.extend_from_slice(b"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n");
    buf.extend_from_slice(format!("Content-length: {content_length}\r\n").as_bytes());
    buf.extend_from_slice(b"Expires: 0\r\nX-GPFDIST-VERSION: ");
    buf.extend_from_slice(VERSION.as_bytes());
    buf.extend_from_slice(b"\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n");
}

fn message(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// `F O L D(len)`: what precedes a block of `data_len` bytes starting at byte
/// `offset` of the batch, whose first row is row `line` (1-based). `file` is
/// cut to [`MAX_FILENAME`] bytes.
pub fn block_header(buf: &mut Vec<u8>, file: &[u8], offset: u64, line: u64, data_len: u32) {
    message(buf, b'F', &file[..file.len().min(MAX_FILENAME)]);
    message(buf, b'O', &offset.to_be_bytes());
    message(buf, b'L', &line.to_be_bytes());
    buf.push(b'D');
    buf.extend_from_slice(&data_len.to_be_bytes());
}

/// `D 0`: end of data for this request.
pub fn eof(buf: &mut Vec<u8>) {
    message(buf, b'D', &[]);
}

/// `E <text>`: an error after the 200 head; the segment aborts the query.
pub fn error_message(buf: &mut Vec<u8>, text: &str) {
    message(buf, b'E', text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[u8]) -> String {
        String::from_utf8(buf.to_vec()).unwrap().replace(VERSION, "<version>")
    }

    #[test]
    fn ok_heads_match_the_captures() {
        let mut buf = Vec::new();
        ok_head(&mut buf, false);
        assert_eq!(
            text(&buf),
            "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\nExpires: 0\r\nX-GPFDIST-VERSION: <version>\r\n\
             X-GP-PROTO: 1\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        buf.clear();
        ok_head(&mut buf, true);
        assert!(text(&buf).ends_with("Connection: close\r\nX-GP-ZSTD: 1\r\n\r\n"));
        assert!(VERSION.starts_with("flowserver 0."));
    }

    #[test]
    fn empty_and_error_heads_match_the_captures() {
        let mut buf = Vec::new();
        empty_head(&mut buf);
        assert_eq!(
            text(&buf),
            "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\nContent-length: 0\r\nExpires: 0\r\n\
             X-GPFDIST-VERSION: <version>\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        buf.clear();
        error_head(&mut buf, 404, "file not found");
        assert_eq!(
            text(&buf),
            "HTTP/1.0 404 file not found\r\nContent-length: 0\r\nExpires: 0\r\nX-GPFDIST-VERSION: <version>\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn reasons_cannot_inject_headers() {
        let mut buf = Vec::new();
        error_head(&mut buf, 404, "no batch ready on /a\r\nX-GP-PROTO: 1");
        assert!(text(&buf).starts_with("HTTP/1.0 404 no batch ready on /a  X-GP-PROTO: 1\r\nContent-length: 0\r\n"));
        buf.clear();
        error_head(&mut buf, 400, &"é".repeat(400));
        let line = text(&buf).lines().next().unwrap().to_string();
        assert_eq!(line.len(), "HTTP/1.0 400 ".len() + MAX_REASON);
    }

    #[test]
    fn block_framing_matches_the_worked_example() {
        // gpfdist-protocol.md §1.5: F "/srv/load/a.csv", O 0, L 1, D 14, then D 0.
        let mut buf = Vec::new();
        block_header(&mut buf, b"/srv/load/a.csv", 0, 1, 14);
        buf.extend_from_slice(b"1,alice\n2,bob\n");
        eof(&mut buf);
        let expected: Vec<u8> = [
            &[0x46, 0, 0, 0, 0x0f][..],
            b"/srv/load/a.csv",
            &[0x4f, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x4c, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0x44, 0, 0, 0, 0x0e],
            b"1,alice\n2,bob\n",
            &[0x44, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn long_file_names_are_cut_and_errors_framed() {
        let mut buf = Vec::new();
        block_header(&mut buf, &[b'x'; 300], 7, 9, 1);
        assert_eq!(buf.len(), MAX_BLOCK_HEADER);
        assert_eq!(&buf[..5], &[b'F', 0, 0, 1, 0]);
        buf.clear();
        error_message(&mut buf, "line too long");
        assert_eq!(buf, b"E\0\0\0\x0dline too long");
    }
}

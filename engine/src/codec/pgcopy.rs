//! PostgreSQL binary `COPY` framing.
//!
//! A binary COPY stream is [`COPY_HEADER`], then tuples, then [`COPY_TRAILER`].
//! A tuple is an i16 field count followed by that many fields; a field is an
//! i32 byte length (-1 for NULL) followed by the value in the type's binary
//! `send`/`recv` format. Everything is big-endian.
//!
//! The helpers here only append to a caller-owned `Vec<u8>`; they never clear
//! it, so many tuples can be packed into one reused buffer.

/// `PGCOPY\n\xff\r\n\0`, flags (i32 0), header extension length (i32 0).
pub const COPY_HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A field count of -1 ends the stream.
pub const COPY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Starts a tuple of `field_count` fields.
#[inline]
pub fn begin_row(buf: &mut Vec<u8>, field_count: u16) {
    buf.extend_from_slice(&field_count.to_be_bytes());
}

/// Appends a NULL field.
#[inline]
pub fn put_null(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i32).to_be_bytes());
}

/// Appends a field holding `bytes`.
///
/// # Panics
/// If `bytes` is longer than `i32::MAX`, which no PostgreSQL value can be.
#[inline]
pub fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = i32::try_from(bytes.len()).expect("a COPY field is at most 1 GB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// Reserves a field's length word; write the value after it, then call
/// [`end_field`] with the returned position. Lets a value be encoded in place
/// when its length is not known up front.
#[inline]
pub fn begin_field(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    start
}

/// Back-patches the length word written by [`begin_field`] at `start`.
///
/// # Panics
/// If the value written since `begin_field` is longer than `i32::MAX`.
#[inline]
pub fn end_field(buf: &mut [u8], start: usize) {
    let len = i32::try_from(buf.len() - start - 4).expect("a COPY field is at most 1 GB");
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// `int2send`.
#[inline]
pub fn put_i16(buf: &mut Vec<u8>, v: i16) {
    put_field(buf, &v.to_be_bytes());
}

/// `int4send`, also `date_send` (days since 2000-01-01).
#[inline]
pub fn put_i32(buf: &mut Vec<u8>, v: i32) {
    put_field(buf, &v.to_be_bytes());
}

/// `int8send`, also `timestamp[tz]_send` (µs since 2000-01-01 00:00:00).
#[inline]
pub fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_field(buf, &v.to_be_bytes());
}

/// `float4send`: the IEEE 754 bits.
#[inline]
pub fn put_f32(buf: &mut Vec<u8>, v: f32) {
    put_field(buf, &v.to_bits().to_be_bytes());
}

/// `float8send`: the IEEE 754 bits.
#[inline]
pub fn put_f64(buf: &mut Vec<u8>, v: f64) {
    put_field(buf, &v.to_bits().to_be_bytes());
}

/// `boolsend`.
#[inline]
pub fn put_bool(buf: &mut Vec<u8>, v: bool) {
    put_field(buf, &[u8::from(v)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_trailer_match_the_protocol() {
        assert_eq!(&COPY_HEADER[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&COPY_HEADER[11..], &[0u8; 8]);
        assert_eq!(COPY_TRAILER, [0xff, 0xff]);
    }

    #[test]
    fn fields_and_rows() {
        let mut buf = vec![0xaa];
        begin_row(&mut buf, 3);
        put_null(&mut buf);
        put_field(&mut buf, b"ab");
        let start = begin_field(&mut buf);
        buf.extend_from_slice(b"xyz");
        end_field(&mut buf, start);
        assert_eq!(buf, [0xaa, 0, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 3, b'x', b'y', b'z']);
    }

    #[test]
    fn fixed_width_helpers_match_the_send_functions() {
        // SELECT int2send('-32768'), int4send('12'), int8send('-1'), float4send('1.1'),
        //        float8send('1.1'), boolsend(true)
        let mut buf = Vec::new();
        put_i16(&mut buf, -32768);
        put_i32(&mut buf, 12);
        put_i64(&mut buf, -1);
        put_f32(&mut buf, 1.1);
        put_f64(&mut buf, 1.1);
        put_bool(&mut buf, true);
        let expected: Vec<u8> = [
            &[0, 0, 0, 2, 0x80, 0x00][..],
            &[0, 0, 0, 4, 0, 0, 0, 0x0c],
            &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 4, 0x3f, 0x8c, 0xcc, 0xcd],
            &[0, 0, 0, 8, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
            &[0, 0, 0, 1, 1],
        ]
        .concat();
        assert_eq!(buf, expected);
    }
}

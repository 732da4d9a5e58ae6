//! The gpfdist listener in-process: glommio shards with a `GpfdistServer` on
//! 127.0.0.1, batches written with `fsrow`, emulated GP7 segments
//! (`flowserver_tests::segment`). No database, no broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowserver_engine::gpfdist::{GpfdistConfig, ServedBatch};
use flowserver_tests::segment::*;

fn config(block_size: usize, compression: bool) -> GpfdistConfig {
    GpfdistConfig { block_size, compression, ..GpfdistConfig::default() }
}

fn batch(first: u64, rows: u64) -> Arc<ServedBatch> {
    Arc::new(sample_batch(first, rows))
}

/// Every answer well-formed; the ids of all rows, sorted.
fn all_ids(responses: &[anyhow::Result<ScanResponse>]) -> Vec<u64> {
    let mut ids = Vec::new();
    for response in responses {
        let response = response.as_ref().expect("segment scan");
        assert_eq!(response.status, 200, "{response:?}");
        assert!(response.eof && response.error.is_none(), "{:?} {:?}", response.error, response.headers);
        assert!(response.closed_by_server && response.trailing == 0);
        ids.extend(sample_ids(&response.rows).expect("rows intact"));
    }
    ids.sort_unstable();
    ids
}

/// `ids` is exactly `expected`, each once (without printing a million numbers).
fn assert_ids(ids: &[u64], expected: impl IntoIterator<Item = u64>, what: &str) {
    let expected: Vec<u64> = expected.into_iter().collect();
    if ids != expected {
        let first = ids.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(ids.len().min(expected.len()));
        panic!(
            "{what}: {} rows, expected {}; first difference at {first}: {:?} vs {:?}",
            ids.len(),
            expected.len(),
            ids.get(first),
            expected.get(first)
        );
    }
}

fn scan_with(
    locations: &[SocketAddr],
    segments: usize,
    xid: &str,
    cid: &str,
    sn: &str,
    path: &str,
) -> Vec<anyhow::Result<ScanResponse>> {
    run_segments(
        locations,
        segments,
        |i, _| SegmentRequest::gp7(path, xid, cid, sn, i as u32, segments as u32),
        &ReadOptions { columns: Some(5), ..ReadOptions::default() },
    )
}

/// Framing of one data answer: `F O L D` per block, `O` the byte offset and
/// `L` the first row (1-based) of the block in the batch, then `D 0`.
fn check_framing(response: &ScanResponse, path: &str, batch: &ServedBatch) {
    let frames = &response.frames;
    assert_eq!(frames.last(), Some(&Frame::D { len: 0, wire: 0 }));
    let mut i = 0;
    while i + 1 < frames.len() {
        let (Frame::F(file), Frame::O(offset), Frame::L(line), Frame::D { len, .. }) =
            (&frames[i], &frames[i + 1], &frames[i + 2], &frames[i + 3])
        else {
            panic!("not F O L D at {i}: {:?}", &frames[i..]);
        };
        assert_eq!(file, format!("/{path}").as_bytes());
        let offset = *offset as usize;
        let first_row = *line as usize - 1;
        let start = if first_row == 0 { 0 } else { batch.row_ends[first_row - 1] as usize };
        assert_eq!(start, offset, "O is the block's offset");
        let end = u32::try_from(offset + *len as usize).unwrap();
        assert!(batch.row_ends.binary_search(&end).is_ok(), "block ends on a row boundary");
        i += 4;
    }
}

#[test]
fn one_to_eight_segments_on_one_and_two_shards_get_every_row_once() {
    let shards = [TestShard::start(config(16 * 1024, false)), TestShard::start(config(16 * 1024, false))];
    // Shard k serves rows k*100_000 .. + 20_000 on its own location.
    for (k, shard) in shards.iter().enumerate() {
        shard.publish("job/orders", batch(k as u64 * 100_000, 20_000));
    }
    let mut xid = 200;
    for shard_count in [1, 2] {
        let locations: Vec<SocketAddr> = shards[..shard_count].iter().map(|s| s.addr).collect();
        for segments in [1, 2, 8] {
            if segments < shard_count {
                // Greenplum refuses a LOCATION with more URIs than segments.
                continue;
            }
            xid += 1;
            let responses = scan_with(&locations, segments, &xid.to_string(), "6", "0", "/job/orders");
            let expected: Vec<u64> = (0..shard_count as u64).flat_map(|k| k * 100_000..k * 100_000 + 20_000).collect();
            assert_ids(&all_ids(&responses), expected, &format!("{segments} segments, {shard_count} shards"));
            for (i, response) in responses.iter().enumerate() {
                let response = response.as_ref().unwrap();
                if response.row_count > 0 {
                    let batch = sample_batch((i % shard_count) as u64 * 100_000, 20_000);
                    check_framing(response, "job/orders", &batch);
                }
                assert_eq!(response.status_line, "HTTP/1.0 200 ok");
                assert_eq!(response.header("X-GP-PROTO"), Some("1"));
                assert_eq!(response.header("X-GP-ZSTD"), None, "compression is off");
            }
        }
    }
    for shard in &shards {
        let stats = shard.stats("job/orders");
        assert_eq!(stats.scans_aborted, 0);
        assert_eq!(stats.scans_bound, stats.scans_finished);
        assert_eq!(stats.rows_served, 20_000 * stats.scans_bound);
    }
    assert_eq!(shards[0].stats("/job/orders").scans_bound, 5);
    assert_eq!(shards[1].stats("job/orders").scans_bound, 2);
}

#[test]
fn blocks_hold_whole_rows_within_the_block_size() {
    let shard = TestShard::start(config(1000, false));
    let b = batch(0, 500);
    shard.publish("t", b.clone());
    let responses = scan_with(&[shard.addr], 3, "7", "4", "0", "/t");
    assert_ids(&all_ids(&responses), 0..500, "rows");
    for response in &responses {
        let response = response.as_ref().unwrap();
        for frame in &response.frames {
            if let Frame::D { len, .. } = frame {
                assert!(*len as usize <= 1000, "block of {len} bytes");
            }
        }
    }
    // A row larger than the block size is a block of its own.
    let shard = TestShard::start(config(10, false));
    shard.publish("t", batch(0, 5));
    let r = scan(shard.addr, &SegmentRequest::gp7("/t", "8", "4", "0", 0, 1), &ReadOptions::default()).unwrap();
    assert_eq!(r.blocks(), 5);
    assert_eq!(sample_ids(&r.rows).unwrap(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn more_segments_than_blocks_some_get_the_empty_answer() {
    let shard = TestShard::start(config(2000, false));
    shard.publish("few", batch(0, 60)); // ~4,700 bytes: 3 blocks
    let responses = scan_with(&[shard.addr], 8, "300", "6", "0", "/few");
    assert_ids(&all_ids(&responses), 0..60, "rows");
    let empty = responses.iter().filter(|r| r.as_ref().unwrap().row_count == 0).count();
    assert!(empty >= 5, "{empty} segments without rows");
    for response in &responses {
        let response = response.as_ref().unwrap();
        if response.row_count == 0 {
            assert_eq!(response.no_data_form(), Some(2), "{response:?}");
        }
    }
    let stats = shard.stats("few");
    assert_eq!((stats.scans_bound, stats.scans_finished, stats.requests), (1, 1, 8));
}

#[test]
fn a_late_segment_gets_the_empty_answer_and_never_the_next_batch() {
    let shard = TestShard::start(config(4096, false));
    shard.publish("late", batch(0, 1000));
    let responses = scan_with(&[shard.addr], 2, "24-0000000004", "4", "0", "/late");
    assert_ids(&all_ids(&responses), 0..1000, "rows");
    let late_before = shard.stats("late").late_requests;
    // The next batch is published; a segment of the finished scan arrives.
    shard.publish("late", batch(5000, 1000));
    let late = SegmentRequest::gp7("/late", "24-0000000004", "4", "0", 1, 2);
    let r = scan(shard.addr, &late, &ReadOptions::default()).unwrap();
    assert_eq!(r.no_data_form(), Some(2), "{r:?}");
    assert_eq!(r.rows.len(), 0);
    let stats = shard.stats("late");
    assert_eq!((stats.scans_bound, stats.late_requests), (1, late_before + 1));
    // The next transaction reads the new batch.
    let next = scan_with(&[shard.addr], 2, "24-0000000008", "4", "0", "/late");
    assert_ids(&all_ids(&next), 5000..6000, "rows");
}

#[test]
fn two_scans_in_one_transaction_and_a_retry_each_read_the_whole_batch() {
    let shard = TestShard::start(config(8192, false));
    shard.publish("tx", batch(0, 3000));
    // Scenario 10 of the captures: XID 113, CID 9 / SN 1 then CID b / SN 2.
    for (xid, cid, sn) in [("113", "9", "1"), ("113", "b", "2"), ("114", "9", "1")] {
        let responses = scan_with(&[shard.addr], 2, xid, cid, sn, "/tx");
        assert_ids(&all_ids(&responses), 0..3000, &format!("{xid} {cid} {sn}"));
    }
    let stats = shard.stats("tx");
    assert_eq!((stats.scans_bound, stats.scans_finished, stats.rows_served), (3, 3, 9000));
}

#[test]
fn compressed_when_offered_and_enabled_only() {
    let on = TestShard::start(config(32 * 1024, true));
    let off = TestShard::start(config(32 * 1024, false));
    on.publish("z", batch(0, 10_000));
    off.publish("z", batch(0, 10_000));
    // Offered and enabled: X-GP-ZSTD: 1 after Connection: close, zstd frames.
    let responses = scan_with(&[on.addr], 2, "1", "1", "0", "/z");
    assert_ids(&all_ids(&responses), 0..10_000, "rows");
    for response in &responses {
        let response = response.as_ref().unwrap();
        assert!(response.zstd);
        assert_eq!(response.header_names().last(), Some(&"X-GP-ZSTD"));
        if response.row_count > 0 {
            assert!(response.wire_bytes < response.data_bytes, "compressed");
        }
    }
    let stats = on.stats("z");
    assert!(stats.wire_bytes < stats.bytes_served);
    // Offered, not enabled.
    let responses = scan_with(&[off.addr], 2, "2", "1", "0", "/z");
    assert_ids(&all_ids(&responses), 0..10_000, "rows");
    assert!(responses.iter().all(|r| !r.as_ref().unwrap().zstd));
    // Enabled, not offered.
    let mut request = SegmentRequest::gp7("/z", "3", "1", "0", 0, 1);
    request.zstd = false;
    let r = scan(on.addr, &request, &ReadOptions::default()).unwrap();
    assert!(!r.zstd);
    assert_eq!(r.header("X-GP-ZSTD"), None);
    assert_eq!(sample_ids(&r.rows).unwrap().len(), 10_000);
}

#[test]
fn unknown_paths_and_retracted_batches_get_404() {
    let shard = TestShard::start(GpfdistConfig::default());
    let r = scan(shard.addr, &SegmentRequest::gp7("/nope", "1", "1", "0", 0, 1), &ReadOptions::default()).unwrap();
    assert_eq!(r.status_line, "HTTP/1.0 404 no batch ready on /nope");
    assert_eq!(r.header_names(), ["Content-length", "Expires", "X-GPFDIST-VERSION", "Cache-Control", "Connection"]);
    shard.publish("gone", batch(0, 1));
    shard.retract("gone");
    let r = scan(shard.addr, &SegmentRequest::gp7("/gone", "1", "1", "0", 0, 1), &ReadOptions::default()).unwrap();
    assert_eq!(r.status_line, "HTTP/1.0 404 no batch ready on /gone (retracted)");
}

fn exchange(addr: SocketAddr, bytes: &[u8]) -> ScanResponse {
    raw_exchange(addr, bytes, &ReadOptions::default()).expect("an answer")
}

#[test]
fn malformed_oversized_and_incomplete_heads_get_400() {
    let shard = TestShard::start(GpfdistConfig::default());
    let r = exchange(shard.addr, b"HELLO\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request");
    let r = exchange(shard.addr, b"GET /x HTTP/1.1\r\nX-GP-PROTO: 1\r\nX-GP-XID: 5\r\nX-GP-SN: 0\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request (missing X-GP-* header)");
    // Without X-GP-PROTO the request is protocol 0 (here: nothing published on /x).
    let r = exchange(shard.addr, b"GET /x HTTP/1.1\r\nX-GP-XID: 5\r\nX-GP-CID: 1\r\nX-GP-SN: 0\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.0 404 no batch ready on /x");
    let r = exchange(shard.addr, b"GET /x HTTP/1.1\r\nX-GP-PROTO: 7\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request (invalid gp-proto)");
    let r = exchange(shard.addr, b"GET /../x HTTP/1.1\r\nX-GP-PROTO: 1\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request due to relative path");
    let mut big = b"GET /x HTTP/1.1\r\n".to_vec();
    while big.len() < 5000 {
        big.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let r = exchange(shard.addr, &big);
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request (head larger than 4096 bytes)");
    let r = exchange(shard.addr, &minimal_head_with_many_headers(60));
    assert_eq!(r.status_line, "HTTP/1.0 400 invalid request (more than 50 headers)");
    // Still serving.
    shard.publish("ok", batch(0, 10));
    let r = scan(shard.addr, &SegmentRequest::gp7("/ok", "1", "1", "0", 0, 1), &ReadOptions::default()).unwrap();
    assert_eq!(sample_ids(&r.rows).unwrap().len(), 10);
}

fn minimal_head_with_many_headers(count: usize) -> Vec<u8> {
    let mut head = b"GET /x HTTP/1.1\r\nX-GP-PROTO: 1\r\n".to_vec();
    for i in 0..count {
        head.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[test]
fn a_segment_that_disconnects_mid_body_ends_the_session_and_the_shard_serves_on() {
    let shard = TestShard::start(config(64 * 1024, false));
    let rows = 400_000; // ~31 MB: more than the socket buffers hold
    shard.publish("d", batch(0, rows));
    let (quitter, stayer) = std::thread::scope(|scope| {
        let quitter = scope.spawn(|| {
            let options = ReadOptions { disconnect_after: Some(300_000), ..ReadOptions::default() };
            scan(shard.addr, &SegmentRequest::gp7("/d", "9", "1", "0", 0, 2), &options)
        });
        let stayer = scope.spawn(|| {
            let mut request = SegmentRequest::gp7("/d", "9", "1", "0", 1, 2);
            request.zstd = false;
            let mut stream = TcpStream::connect(shard.addr).unwrap();
            stream.write_all(&request.head()).unwrap();
            // Read slowly at first so that the quitter's failure lands mid-scan.
            std::thread::sleep(Duration::from_millis(300));
            read_response(stream, &ReadOptions { columns: Some(5), ..ReadOptions::default() })
        });
        (quitter.join().unwrap(), stayer.join().unwrap())
    });
    assert!(quitter.unwrap().error.is_none());
    let stayer = stayer.unwrap();
    assert!(stayer.eof, "the other segment gets D 0: {:?}", stayer.error);
    let stats = shard.wait_stats("d", Duration::from_secs(10), |s| s.scans_aborted == 1);
    assert_eq!((stats.scans_aborted, stats.scans_finished), (1, 0), "{stats:?}");
    assert!(stats.rows_served < rows, "the session ended early: {stats:?}");
    // A late segment of the failed scan gets the empty answer.
    let late = scan(shard.addr, &SegmentRequest::gp7("/d", "9", "1", "0", 1, 2), &ReadOptions::default()).unwrap();
    assert_eq!(late.no_data_form(), Some(2));
    // The retried transaction reads everything.
    let retry = scan_with(&[shard.addr], 2, "10", "1", "0", "/d");
    assert_ids(&all_ids(&retry), 0..rows, "rows");
    assert_eq!(shard.connections(), 0);
}

#[test]
fn a_client_that_sends_nothing_gets_408_while_others_are_served() {
    let timeout = Duration::from_secs(2);
    let shard = TestShard::start(GpfdistConfig { head_timeout: timeout, ..GpfdistConfig::default() });
    shard.publish("busy", batch(0, 5000));
    let started = Instant::now();
    let mut idle = TcpStream::connect(shard.addr).unwrap();
    // Another client sends half a head and stalls: it gets 408 too.
    let mut half = TcpStream::connect(shard.addr).unwrap();
    half.write_all(b"GET /busy HTTP/1.1\r\nX-GP-PROTO: 1\r\n").unwrap();
    let responses = scan_with(&[shard.addr], 2, "1", "1", "0", "/busy");
    let served_after = started.elapsed();
    assert_ids(&all_ids(&responses), 0..5000, "rows");
    for stream in [&mut idle, &mut half] {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 408 time out\r\n"), "{answer:?}");
    }
    let timed_out_after = started.elapsed();
    assert!(served_after < timeout, "the scan was served while the silent clients waited: {served_after:?}");
    assert!(timed_out_after >= timeout && timed_out_after < timeout * 5, "{timed_out_after:?}");
}

#[test]
fn status_endpoint_answers() {
    let shard = TestShard::start(GpfdistConfig::default());
    shard.publish("s", batch(0, 10));
    let _ = scan_with(&[shard.addr], 1, "1", "1", "0", "/s");
    let r = exchange(shard.addr, b"GET /gpfdist/status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.proto, 0);
    let text = String::from_utf8(r.data).unwrap();
    assert!(text.contains("total_bytes "), "{text}");
    assert!(text.contains("path /s published=true scans_bound=1 scans_finished=1"), "{text}");
}

#[test]
fn plain_http_clients_get_a_private_session() {
    let shard = TestShard::start(GpfdistConfig::default());
    shard.publish("p", batch(0, 100));
    for _ in 0..2 {
        let r = exchange(shard.addr, b"GET /p HTTP/1.0\r\nX-GP-PROTO: 1\r\n\r\n");
        assert_eq!(sample_ids(&r.rows).unwrap(), (0..100).collect::<Vec<_>>());
    }
    assert_eq!(shard.stats("p").scans_bound, 2);
}

#[test]
fn shutdown_cancels_stalled_connections() {
    let mut shard = TestShard::start(config(64 * 1024, false));
    shard.publish("big", batch(0, 400_000));
    // A segment that never reads its answer.
    let mut stalled = TcpStream::connect(shard.addr).unwrap();
    stalled.write_all(&SegmentRequest::gp7("/big", "1", "1", "0", 0, 1).head()).unwrap();
    let stats = shard.wait_stats("big", Duration::from_secs(5), |s| s.blocks_served > 0);
    assert!(stats.blocks_served > 0);
    let started = Instant::now();
    shard.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    // The connection was closed: reading ends (before D 0).
    let mut sink = Vec::new();
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stalled.read_to_end(&mut sink);
    assert!(TcpStream::connect_timeout(&shard.addr, Duration::from_millis(500)).is_err(), "no longer listening");
}

#[test]
fn a_stalled_reader_times_out_and_ends_its_session() {
    let shard = TestShard::start(GpfdistConfig {
        block_size: 64 * 1024,
        write_timeout: Duration::from_millis(500),
        ..GpfdistConfig::default()
    });
    shard.publish("w", batch(0, 400_000));
    let mut stalled = TcpStream::connect(shard.addr).unwrap();
    stalled.write_all(&SegmentRequest::gp7("/w", "1", "1", "0", 0, 1).head()).unwrap();
    let stats = shard.wait_stats("w", Duration::from_secs(10), |s| s.scans_aborted == 1);
    assert_eq!(stats.scans_aborted, 1, "{stats:?}");
    assert_eq!(shard.connections(), 0);
    drop(stalled);
    assert_ids(&all_ids(&scan_with(&[shard.addr], 1, "2", "1", "0", "/w")), 0..400_000, "retry");
}

//! Conformance against real bytes: every request of
//! `shared/fixtures/gpfdist-captures/` (Greenplum 7.0.0 segments talking to
//! gpfdist 7.0.0) is replayed, verbatim, against our listener, and our answer
//! is compared with gpfdist's captured answer.
//!
//! Setup: one shard without compression stands for `gpfdist -p 18080`
//! (scenarios 01-05, 08-11) and one with compression for `gpfdist --compress`
//! (06, 07). For each read scenario a batch of sample rows is published at the
//! captured path (`small.csv`, `medium.csv`, …) — except `no_such_file.csv`
//! (04), which stays unknown. Connections of one session (same XID/CID/SN)
//! that received data in the capture are opened first, together, and read
//! only once all of them have joined (so that each gets blocks, as in 08);
//! those that got a "no data" answer are replayed after the scan ended.
//!
//! # What must be equal
//!
//! - the status line's form `HTTP/1.0 <code> <reason>` and the code; for
//!   200 answers the whole line (`HTTP/1.0 200 ok`);
//! - header names and their order, and every value except
//!   `X-GPFDIST-VERSION`: `Content-type: text/plain`, `Expires: 0`,
//!   `X-GP-PROTO: 1`, `Cache-Control: no-cache`, `Connection: close`,
//!   `Content-length: 0` on errors, `X-GP-ZSTD: 1` last when compressing;
//! - framing of data answers: `F O L D` before every block, the first block
//!   at `O` = 0 and `L` = 1, `D` payloads that are zstd frames exactly when the
//!   capture's are, and `D 0` at the end, after which the server closes;
//! - "no data" answers: gpfdist sends either form (1: `Content-length: 0`
//!   without `X-GP-PROTO`; 2: the protocol-1 head with only `D 0`); we always
//!   send form 2, whose body is the same 5 bytes `44 00 00 00 00`. Where the
//!   capture has form 2, the head must equal it; where it has form 1, ours
//!   must be exactly the protocol-1 head (plus `X-GP-ZSTD: 1` when compressing).
//!
//! # What may differ
//!
//! The version string, the reason text of errors (ours names the path:
//! `404 no batch ready on /no_such_file.csv`, gpfdist's `404 file not
//! found`), the `F` payload (gpfdist sends its absolute file path, we send the
//! request path), the data bytes (CSV there, FORMAT.md rows here), block sizes
//! and counts, and which segment gets which block.
//!
//! Writes (`POST`, scenarios 05 and 07): we serve readable tables only, so
//! each gets `405` with a reason saying so — never `100 Continue`, even to an
//! `Expect: 100-continue` request.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flowserver_engine::gpfdist::GpfdistConfig;
use flowserver_tests::segment::*;
use flowserver_tests::workspace_root;

/// The captures live beside the repository, in `../shared/fixtures/` from the
/// workspace root, and are read from there only: a test that found them at
/// some other place on one machine would pass or fail by where it ran.
fn captures_dir() -> PathBuf {
    workspace_root().join("../shared/fixtures/gpfdist-captures")
}

/// One captured head (request or response) and what the file says about the body.
#[derive(Debug, Default)]
struct Captured {
    lines: Vec<String>,
    header_block_bytes: usize,
    body: Vec<u8>,
    /// Framing summary: `F`, `O <value>`, `L <value>`, `D <len>` (`Dz` when zstd).
    framing: Vec<String>,
}

impl Captured {
    fn parse(text: &str) -> Captured {
        let mut captured = Captured::default();
        let mut in_head = false;
        for line in text.lines() {
            match line {
                "----- BEGIN HEADER BLOCK -----" => in_head = true,
                "----- END HEADER BLOCK -----" => in_head = false,
                _ if in_head => captured.lines.push(line.to_string()),
                _ => {
                    if let Some(n) = line.strip_prefix("header_block_bytes: ") {
                        captured.header_block_bytes = n.parse().expect("header_block_bytes");
                    } else if let Some(hex) = line.strip_prefix("0000").and_then(|l| l.split_once(": ")) {
                        // `00000010: 2d30 312d …  text`: hex groups before the double space.
                        let groups = hex.1.split("  ").next().unwrap_or_default();
                        let digits: String = groups.split_whitespace().collect();
                        for pair in digits.as_bytes().chunks(2) {
                            let pair = std::str::from_utf8(pair).unwrap();
                            captured.body.push(u8::from_str_radix(pair, 16).expect("hex"));
                        }
                    } else if let Some(frame) = line.strip_prefix("  ") {
                        fn value(f: &str) -> Option<&str> {
                            f.split("value=").nth(1).and_then(|v| v.split_whitespace().next())
                        }
                        if frame.starts_with("F len=") {
                            captured.framing.push("F".into());
                        } else if frame.starts_with("O len=8") {
                            captured.framing.push(format!("O {}", value(frame).unwrap_or("?")));
                        } else if frame.starts_with("L len=8") {
                            captured.framing.push(format!("L {}", value(frame).unwrap_or("?")));
                        } else if let Some(rest) = frame.strip_prefix("D len=") {
                            let len = rest.split_whitespace().next().unwrap_or("?");
                            let kind = if rest.contains("zstd frame") { "Dz" } else { "D" };
                            captured.framing.push(format!("{kind} {len}"));
                        }
                    }
                }
            }
        }
        captured
    }

    fn head_bytes(&self) -> Vec<u8> {
        let mut head = self.lines.join("\r\n").into_bytes();
        head.extend_from_slice(b"\r\n\r\n");
        head
    }

    fn status_line(&self) -> &str {
        &self.lines[0]
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.lines[1..]
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_string(), v.trim().to_string())
            })
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn has_data(&self) -> bool {
        self.framing.iter().any(|f| f.starts_with('D') && !f.ends_with(" 0"))
    }
}

#[derive(Debug)]
struct Connection {
    name: String,
    request: Captured,
    /// The final answer (after an interim `100 Continue`, if any).
    response: Captured,
    interim: Option<Captured>,
}

fn load() -> BTreeMap<String, Vec<Connection>> {
    let dir = captures_dir();
    let mut scenarios: BTreeMap<String, Vec<Connection>> = BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the gpfdist captures are missing: cannot read {} ({e}); they belong in shared/fixtures/gpfdist-captures/ \
                 beside the repository",
                dir.display()
            )
        })
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("__request.txt"))
        .collect();
    names.sort();
    for name in names {
        let stem = name.trim_end_matches("__request.txt");
        let read = |suffix: &str| std::fs::read_to_string(dir.join(format!("{stem}{suffix}"))).ok();
        let required = |suffix: &str| {
            read(suffix)
                .unwrap_or_else(|| panic!("the capture {} is missing", dir.join(format!("{stem}{suffix}")).display()))
        };
        let request = Captured::parse(&required("__request.txt"));
        let first = Captured::parse(&required("__response.txt"));
        let (response, interim) = match read("__response-2.txt") {
            Some(second) => (Captured::parse(&second), Some(first)),
            None => (first, None),
        };
        let scenario = stem.split("__").next().unwrap().to_string();
        scenarios.entry(scenario).or_default().push(Connection { name: stem.to_string(), request, response, interim });
    }
    scenarios
}

/// Rows served at each captured path.
fn rows_for(path: &str) -> Option<u64> {
    match path {
        "small.csv" => Some(10),
        "fixed.txt" => Some(20),
        "medium.csv" => Some(20_000),
        "rows1m.csv" => Some(400_000),
        _ => None,
    }
}

fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(bytes).expect("send the captured request");
    stream
}

fn names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(n, _)| n.as_str()).collect()
}

/// Equal names in order, equal values except the version.
fn assert_same_headers(ours: &ScanResponse, theirs: &[(String, String)], what: &str) {
    assert_eq!(ours.header_names(), names(theirs), "{what}: header names and order");
    for ((name, ours), (_, theirs)) in ours.headers.iter().zip(theirs) {
        if name == "X-GPFDIST-VERSION" {
            assert!(ours.starts_with("flowserver "), "{what}: {ours}");
        } else {
            assert_eq!(ours, theirs, "{what}: value of {name}");
        }
    }
}

const PROTO1_HEAD: [&str; 6] =
    ["Content-type", "Expires", "X-GPFDIST-VERSION", "X-GP-PROTO", "Cache-Control", "Connection"];

fn check_read(connection: &Connection, ours: &ScanResponse, compressing: bool) {
    let what = connection.name.as_str();
    let theirs = &connection.response;
    let zstd = compressing && connection.request.header("X-GP-ZSTD").as_deref() == Some("1");
    if !theirs.status_line().starts_with("HTTP/1.0 200") {
        // 04: gpfdist `404 file not found`; we: 404 naming the path.
        let code = theirs.status_line().split_whitespace().nth(1).unwrap();
        assert!(ours.status_line.starts_with(&format!("HTTP/1.0 {code} ")), "{what}: {}", ours.status_line);
        assert_same_headers(ours, &theirs.headers(), what);
        assert!(ours.data.is_empty(), "{what}: error bodies are empty");
        return;
    }
    assert_eq!(ours.status_line, theirs.status_line(), "{what}");
    assert!(ours.error.is_none() && ours.eof, "{what}: {:?}", ours.error);
    assert!(ours.closed_by_server && ours.trailing == 0, "{what}: closes after D 0");
    if theirs.has_data() {
        assert_same_headers(ours, &theirs.headers(), what);
        assert!(ours.row_count > 0, "{what}: got rows, as in the capture");
        // F O L D first. gpfdist's first block of a file is at O 0 / L 1, or after
        // the skipped header line with CSV HEADER (`h1`: O 36 / L 2 in 03);
        // FORMAT.md has no header row, so ours start at O 0 / L 1 (checked per session).
        assert_eq!(theirs.framing[0], "F", "{what}: captured framing");
        assert!(theirs.framing[1].starts_with("O ") && theirs.framing[2].starts_with("L "), "{what}");
        assert!(
            matches!(ours.frames[..4], [Frame::F(_), Frame::O(_), Frame::L(_), Frame::D { .. }]),
            "{what}: {:?}",
            &ours.frames[..4]
        );
        for block in ours.frames[..ours.frames.len() - 1].chunks(4) {
            assert!(
                matches!(block, [Frame::F(_), Frame::O(_), Frame::L(_), Frame::D { len, .. }] if *len > 0),
                "{what}: {block:?}"
            );
        }
        let captured_zstd = theirs.framing.iter().any(|f| f.starts_with("Dz"));
        assert_eq!(captured_zstd, zstd, "{what}: the capture's compression is what we negotiate");
        assert_eq!(ours.zstd, zstd, "{what}");
        assert_eq!(theirs.body[0], b'F');
    } else {
        // A "no data" answer; ours is form 2.
        assert_eq!(ours.no_data_form(), Some(2), "{what}: {ours:?}");
        assert_eq!(theirs.body, [0x44, 0, 0, 0, 0], "{what}: the captured body is D 0 in both forms");
        match theirs.header("X-GP-PROTO") {
            Some(_) => assert_same_headers(ours, &theirs.headers(), what),
            None => {
                assert_eq!(theirs.header("Content-length").as_deref(), Some("0"), "{what}: form 1");
                let mut expected: Vec<&str> = PROTO1_HEAD.to_vec();
                if zstd {
                    expected.push("X-GP-ZSTD");
                }
                assert_eq!(ours.header_names(), expected, "{what}");
            }
        }
    }
}

#[test]
fn replays_every_capture() {
    let scenarios = load();
    assert_eq!(scenarios.len(), 11, "scenarios 01-11");
    let plain = TestShard::start(GpfdistConfig::default());
    let compressing = TestShard::start(GpfdistConfig { compression: true, ..GpfdistConfig::default() });
    let mut replayed = 0;
    for (scenario, connections) in &scenarios {
        let shard = if scenario.starts_with("06") || scenario.starts_with("07") { &compressing } else { &plain };
        let compress = std::ptr::eq(shard, &compressing);
        for connection in connections {
            // Our rebuilt head is the captured one, byte for byte.
            assert_eq!(
                connection.request.head_bytes().len(),
                connection.request.header_block_bytes,
                "{}",
                connection.name
            );
        }
        if connections[0].request.status_line().starts_with("POST ") {
            for connection in connections {
                let mut bytes = connection.request.head_bytes();
                bytes.extend_from_slice(&connection.request.body);
                let ours = read_response(send(shard.addr, &bytes), &ReadOptions::default()).expect("an answer");
                let what = &connection.name;
                assert!(connection.response.status_line().starts_with("HTTP/1.0 "), "{what}");
                assert_eq!(ours.status, 405, "{what}: {}", ours.status_line);
                assert_eq!(
                    ours.status_line, "HTTP/1.0 405 flowserver serves readable external tables only (POST refused)",
                    "{what}"
                );
                assert_eq!(
                    ours.header_names(),
                    ["Content-length", "Expires", "X-GPFDIST-VERSION", "Cache-Control", "Connection"],
                    "{what}"
                );
                if connection.interim.is_some() {
                    assert!(connection.request.header("Expect").is_some(), "{what}");
                }
                replayed += 1;
            }
            continue;
        }
        let path_of = |c: &Connection| {
            c.request.status_line().split_whitespace().nth(1).unwrap().trim_start_matches('/').to_string()
        };
        for connection in connections {
            if let Some(rows) = rows_for(&path_of(connection)) {
                shard.publish(&path_of(connection), Arc::new(sample_batch(0, rows)));
            }
        }
        // Sessions in capture order.
        let mut sessions: Vec<(String, Vec<&Connection>)> = Vec::new();
        for connection in connections {
            let r = &connection.request;
            let key = format!(
                "{}.{}.{}",
                r.header("X-GP-XID").unwrap(),
                r.header("X-GP-CID").unwrap(),
                r.header("X-GP-SN").unwrap()
            );
            match sessions.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(connection),
                None => sessions.push((key, vec![connection])),
            }
        }
        for (_, session) in sessions {
            let path = path_of(session[0]);
            let (with_data, without): (Vec<&Connection>, Vec<&Connection>) =
                session.into_iter().partition(|c| c.response.has_data());
            let before = shard.stats(&path).requests;
            let streams: Vec<TcpStream> = with_data.iter().map(|c| send(shard.addr, &c.request.head_bytes())).collect();
            let joined =
                shard.wait_stats(&path, Duration::from_secs(10), |s| s.requests >= before + streams.len() as u64);
            assert!(
                joined.requests >= before + streams.len() as u64 || rows_for(&path).is_none(),
                "{scenario}: {} of {} joined: {joined:?}",
                joined.requests - before,
                streams.len()
            );
            let options = ReadOptions { keep: Keep::Count, columns: Some(5), ..ReadOptions::default() };
            let answers: Vec<ScanResponse> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    streams.into_iter().map(|s| scope.spawn(|| read_response(s, &options).expect("answer"))).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (connection, ours) in with_data.iter().zip(&answers) {
                check_read(connection, ours, compress);
                replayed += 1;
            }
            if !with_data.is_empty() {
                let header_skipped = with_data[0].request.header("X-GP-CSVOPT").is_some_and(|o| o.ends_with("h1"));
                let first = if header_skipped { "L 2" } else { "L 1" };
                let starts = with_data.iter().filter(|c| c.response.framing[2] == first).count();
                assert_eq!(starts, 1, "{scenario}: in the capture one segment got the file's first block");
            }
            if !answers.is_empty() && rows_for(&path).is_some() {
                let starts = answers.iter().filter(|a| a.frames.get(1..3) == Some(&[Frame::O(0), Frame::L(1)])).count();
                assert_eq!(starts, 1, "{scenario}: exactly one segment got the batch's first block (O 0, L 1)");
                let rows: u64 = answers.iter().map(|a| a.row_count).sum();
                assert_eq!(rows, rows_for(&path).unwrap(), "{scenario}: the whole batch, once");
            }
            for connection in without {
                let ours = read_response(send(shard.addr, &connection.request.head_bytes()), &options).expect("answer");
                check_read(connection, &ours, compress);
                replayed += 1;
            }
        }
    }
    let total: usize = scenarios.values().map(Vec::len).sum();
    assert_eq!(replayed, total);
    assert_eq!(total, 39, "every captured request was replayed");
    // Each session bound once and read everything (scenario 10: three sessions on small.csv).
    let small = plain.stats("small.csv");
    assert_eq!(small.scans_aborted, 0);
    assert_eq!(small.rows_served, 10 * small.scans_bound);
}

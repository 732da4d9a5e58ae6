//! The glommio side: one listening socket per shard, one task per connection.
//! Everything protocol-shaped lives in the sans-I/O modules; this file reads
//! heads, writes bytes and keeps every wait bounded.
//!
//! Per connection:
//! 1. read the head: at most [`MAX_HEAD`] bytes (more → `400`) within
//!    `head_timeout` for the whole head (→ `408 time out`);
//! 2. dispatch: `/gpfdist/status`; `POST` → `405` (we serve readable tables
//!    only); `GET` with `X-GP-PROTO: 1` → the session table; errors → their
//!    HTTP answer;
//! 3. serve: the 200 head, then `F O L D` + block for every block the session
//!    hands this request, then `D 0`; with zstd (offered by the segment and
//!    `compression` on) each payload is one zstd frame, `D.len` uncompressed;
//! 4. close: detach from the session at once, half-close, and wait at most
//!    `close_timeout` for the peer to close (reading and discarding).
//!
//! Writes time out when the peer reads nothing for `write_timeout` (glommio's
//! socket write timeout: no progress, not total time). [`GpfdistServer::shutdown`]
//! stops the accept loop and cancels every pending read and write.
//! At most `max_connections` connections are open; beyond that a new one gets
//! `503` (one non-blocking write) and is closed (after a drain of at most 1 s,
//! for at most 64 refused connections at a time, so that the peer can read it).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::request::{Head, HttpError, MAX_HEAD, Method, Request, head_len, parse_head};
use super::response;
use super::session::{Attach, Next, Outcome, SessionConfig, SessionId, SessionTable};
pub use super::session::{PathStats, ServedBatch};

/// Listener settings. [`Default`] gives the production values.
#[derive(Debug, Clone)]
pub struct GpfdistConfig {
    /// Target `D` block size: whole rows, at most this many bytes unless a
    /// single row is larger. Default 256 KiB (gpfdist's default `-m` is 32 KiB).
    pub block_size: usize,
    /// Answer `X-GP-ZSTD: 1` offers with zstd-compressed blocks.
    pub compression: bool,
    /// zstd level when compressing (default 1).
    pub compression_level: i32,
    /// The whole request head must arrive within this time (default 5 s, gpfdist's `-t`).
    pub head_timeout: Duration,
    /// A write fails when the peer accepts no byte for this long (default 300 s).
    pub write_timeout: Duration,
    /// After `D 0`: how long to wait for the peer to close (default 60 s, as gpfdist).
    pub close_timeout: Duration,
    /// How long ended sessions are remembered (default 300 s).
    pub session_retention: Duration,
    /// At most this many ended sessions are remembered (default 65,536).
    pub max_remembered_sessions: usize,
    /// Connections open at once (default 1024).
    pub max_connections: usize,
}

impl Default for GpfdistConfig {
    fn default() -> Self {
        GpfdistConfig {
            block_size: 256 * 1024,
            compression: false,
            compression_level: 1,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(300),
            close_timeout: Duration::from_secs(60),
            session_retention: Duration::from_secs(300),
            max_remembered_sessions: 65_536,
            max_connections: 1024,
        }
    }
}

/// One shard's gpfdist listener. `!Send`: it lives on the shard's executor.
pub struct GpfdistServer {
    local_addr: SocketAddr,
    config: GpfdistConfig,
    table: RefCell<SessionTable>,
    /// Closed on shutdown; every wait races `stopped.recv()`.
    stop: Sender<()>,
    stopped: Receiver<()>,
    connections: Cell<usize>,
    refusing: Cell<usize>,
}

impl std::fmt::Debug for GpfdistServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpfdistServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl GpfdistServer {
    /// Listens on `addr` and starts the accept loop on the current executor.
    pub async fn bind(addr: SocketAddr, config: GpfdistConfig) -> io::Result<Rc<GpfdistServer>> {
        let listener = TcpListener::bind(addr).map_err(io::Error::from)?;
        let local_addr = listener.local_addr().map_err(io::Error::from)?;
        let (stop, stopped) = async_channel::bounded(1);
        let table = SessionTable::new(SessionConfig {
            block_size: config.block_size,
            retention: config.session_retention,
            max_remembered: config.max_remembered_sessions,
        });
        let server = Rc::new(GpfdistServer {
            local_addr,
            config,
            table: RefCell::new(table),
            stop,
            stopped,
            connections: Cell::new(0),
            refusing: Cell::new(0),
        });
        glommio::spawn_local(accept_loop(Rc::downgrade(&server), listener, server.stopped.clone())).detach();
        tracing::info!(%local_addr, "gpfdist listening");
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &GpfdistConfig {
        &self.config
    }

    /// The batch new scans of `path` (with or without its leading `/`) bind to.
    /// A batch whose `row_ends` do not match its data is refused (logged, and
    /// the path is retracted) rather than served wrong.
    pub fn publish(&self, path: &str, batch: Arc<ServedBatch>) {
        if let Err(error) = batch.check() {
            tracing::error!(path, %error, "refusing to serve an inconsistent batch");
            self.table.borrow_mut().retract(path);
            return;
        }
        self.table.borrow_mut().publish(path, batch);
    }

    /// Nothing for new scans of `path`; running scans keep their batch.
    pub fn retract(&self, path: &str) {
        self.table.borrow_mut().retract(path);
    }

    /// Scans bound and finished, bytes and rows served on `path`.
    pub fn stats(&self, path: &str) -> PathStats {
        self.table.borrow().stats(path)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    /// Stops accepting, cancels every connection's pending I/O and forgets
    /// every batch. Idempotent.
    pub fn shutdown(&self) {
        self.stop.close();
        self.table.borrow_mut().clear();
    }

    fn is_stopped(&self) -> bool {
        self.stop.is_closed()
    }

    fn status_text(&self) -> String {
        let table = self.table.borrow();
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let total: u64 = table.all_stats().map(|(_, s)| s.bytes_served).sum();
        let mut text = format!(
            "{}\nrequst_time {unix}\nread_bytes 0\ntotal_bytes {total}\ntotal_sessions {}\nconnections {}\n",
            response::VERSION,
            table.active_sessions(),
            self.connections.get(),
        );
        for (path, s) in table.all_stats() {
            text.push_str(&format!(
                "path /{path} published={} scans_bound={} scans_finished={} scans_aborted={} requests={} \
                 late_requests={} rows_served={} bytes_served={}\n",
                s.published,
                s.scans_bound,
                s.scans_finished,
                s.scans_aborted,
                s.requests,
                s.late_requests,
                s.rows_served,
                s.bytes_served
            ));
        }
        text
    }
}

impl Drop for GpfdistServer {
    fn drop(&mut self) {
        self.stop.close();
    }
}

/// Runs `work` unless the server stops first (`None` then).
async fn unless_stopped<T>(stopped: &Receiver<()>, work: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(work.await) }, async {
        let _ = stopped.recv().await;
        None
    })
    .await
}

async fn accept_loop(server: Weak<GpfdistServer>, listener: TcpListener, stopped: Receiver<()>) {
    while let Some(accepted) = unless_stopped(&stopped, listener.accept()).await {
        let Some(server) = server.upgrade() else { break };
        match accepted {
            Ok(stream) => {
                if server.connections.get() >= server.config.max_connections {
                    refuse_busy(&server, stream).await;
                    continue;
                }
                server.connections.set(server.connections.get() + 1);
                glommio::spawn_local(connection(server, stream)).detach();
            }
            Err(error) => {
                tracing::warn!(%error, "gpfdist accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!("gpfdist accept loop ended");
}

/// Connections being refused at once; beyond this they are just closed.
const MAX_REFUSING: usize = 64;

/// `503` to a connection over the limit: one non-blocking write, then (while
/// few are being refused) a short close that lets the peer read it.
async fn refuse_busy(server: &Rc<GpfdistServer>, mut stream: TcpStream) {
    let mut busy = Vec::new();
    response::error_head(&mut busy, 503, "too many connections");
    if !matches!(future::poll_once(stream.write_all(&busy)).await, Some(Ok(()))) {
        return;
    }
    if server.refusing.get() >= MAX_REFUSING {
        return;
    }
    server.refusing.set(server.refusing.get() + 1);
    let server = Rc::clone(server);
    glommio::spawn_local(async move {
        let _ = stream.shutdown(Shutdown::Write).await;
        let mut sink = [0u8; 512];
        let drain = async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = unless_stopped(&server.stopped, future::or(drain, glommio::timer::sleep(Duration::from_secs(1)))).await;
        server.refusing.set(server.refusing.get() - 1);
    })
    .detach();
}

/// Decrements the connection count however the task ends.
struct Counted(Rc<GpfdistServer>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get().saturating_sub(1));
    }
}

/// Detaches from the session however the task ends; `Failed` unless marked done.
struct Attached {
    server: Rc<GpfdistServer>,
    id: SessionId,
    outcome: Option<Outcome>,
}

impl Attached {
    fn finish(&mut self, outcome: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
            self.server.table.borrow_mut().detach(self.id, outcome, Instant::now());
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.finish(Outcome::Failed);
    }
}

enum HeadRead {
    Head(usize),
    TooLarge,
    Closed,
    TimedOut,
}

async fn read_head(stream: &mut TcpStream, buf: &mut [u8], timeout: Duration) -> HeadRead {
    let read = async {
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                return HeadRead::TooLarge;
            }
            match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(n) => filled += n,
            }
            if let Some(len) = head_len(&buf[..filled]) {
                return HeadRead::Head(len);
            }
        }
    };
    future::or(read, async {
        glommio::timer::sleep(timeout).await;
        HeadRead::TimedOut
    })
    .await
}

async fn write(server: &GpfdistServer, stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    match unless_stopped(&server.stopped, stream.write_all(bytes)).await {
        Some(result) => result,
        None => Err(io::Error::other("gpfdist server shut down")),
    }
}

/// Half-closes, then waits (bounded) for the peer to close, discarding what it sends.
async fn close(server: &GpfdistServer, mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write).await;
    let mut sink = [0u8; 1024];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ =
        unless_stopped(&server.stopped, future::or(drain, glommio::timer::sleep(server.config.close_timeout))).await;
}

async fn answer_error(server: &GpfdistServer, mut stream: TcpStream, error: &HttpError) {
    let mut head = Vec::with_capacity(256);
    response::error_head(&mut head, error.status, &error.reason);
    if write(server, &mut stream, &head).await.is_ok() {
        close(server, stream).await;
    }
}

async fn connection(server: Rc<GpfdistServer>, mut stream: TcpStream) {
    let _counted = Counted(Rc::clone(&server));
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(server.config.write_timeout));
    let mut buf = vec![0u8; MAX_HEAD];
    let read = unless_stopped(&server.stopped, read_head(&mut stream, &mut buf, server.config.head_timeout)).await;
    let len = match read {
        None | Some(HeadRead::Closed) => return,
        Some(HeadRead::TimedOut) => {
            tracing::debug!(?peer, "gpfdist request head timed out");
            return answer_error(&server, stream, &HttpError::new(408, "time out")).await;
        }
        Some(HeadRead::TooLarge) => {
            let error = HttpError::bad_request(format!("invalid request (head larger than {MAX_HEAD} bytes)"));
            return answer_error(&server, stream, &error).await;
        }
        Some(HeadRead::Head(len)) => len,
    };
    let request = match parse_head(&buf[..len]) {
        Ok(Head::Status) => {
            let text = server.status_text();
            let mut out = Vec::with_capacity(256 + text.len());
            response::status_head(&mut out, text.len());
            out.extend_from_slice(text.as_bytes());
            if write(&server, &mut stream, &out).await.is_ok() {
                close(&server, stream).await;
            }
            return;
        }
        Ok(Head::Request(request)) => request,
        Err(error) => {
            tracing::debug!(?peer, %error, "gpfdist request refused");
            return answer_error(&server, stream, &error).await;
        }
    };
    drop(buf);
    if let Err(error) = check_readable(&request) {
        tracing::debug!(?peer, path = request.path, %error, "gpfdist request refused");
        return answer_error(&server, stream, &error).await;
    }
    let attach = {
        let mut table = server.table.borrow_mut();
        let key = table.key_for(request.tid_key(), &request.path);
        table.attach(key, Instant::now())
    };
    match attach {
        Attach::Refused(error) => {
            tracing::debug!(?peer, path = request.path, %error, "gpfdist scan refused");
            answer_error(&server, stream, &error).await
        }
        Attach::Ended => {
            let mut out = Vec::with_capacity(256);
            if request.proto == 0 {
                response::ok_head_proto(&mut out, 0, false);
            } else {
                response::ok_head(&mut out, request.zstd_offered && server.config.compression);
                response::eof(&mut out);
            }
            if write(&server, &mut stream, &out).await.is_ok() {
                close(&server, stream).await;
            }
        }
        Attach::Joined { id, batch } => {
            let attached = Attached { server: Rc::clone(&server), id, outcome: None };
            serve(&server, stream, &request, attached, &batch).await;
        }
    }
}

/// What a listener that serves readable tables only refuses.
fn check_readable(request: &Request) -> Result<(), HttpError> {
    if request.method == Method::Post {
        return Err(HttpError::new(405, "flowserver serves readable external tables only (POST refused)"));
    }
    if request.transform.is_some() {
        return Err(HttpError::bad_request("invalid request (unsupported input #transform)"));
    }
    Ok(())
}

async fn serve(
    server: &GpfdistServer,
    mut stream: TcpStream,
    request: &Request,
    mut attached: Attached,
    batch: &ServedBatch,
) {
    // Protocol 0 has no framing for compressed lengths: raw rows only.
    let raw = request.proto == 0;
    let mut compressor = match request.zstd_offered && server.config.compression && !raw {
        true => match zstd::bulk::Compressor::new(server.config.compression_level) {
            Ok(compressor) => Some(compressor),
            Err(error) => {
                tracing::warn!(%error, "zstd unavailable; serving uncompressed");
                None
            }
        },
        false => None,
    };
    let mut head = Vec::with_capacity(response::MAX_BLOCK_HEADER.max(256));
    response::ok_head_proto(&mut head, request.proto, compressor.is_some());
    if write(server, &mut stream, &head).await.is_err() {
        return; // `attached` detaches as failed
    }
    let file = format!("/{}", request.path);
    // Block header followed by the compressed payload: one write per block.
    let mut packed = Vec::new();
    loop {
        let next = server.table.borrow_mut().next_block(attached.id);
        let block = match next {
            Next::Block(block) => block,
            Next::End => break,
        };
        let payload = &batch.data[block.start..block.end];
        if raw {
            if let Err(error) = write(server, &mut stream, payload).await {
                tracing::info!(path = request.path, %error, "gpfdist client lost mid-body; session ends");
                return;
            }
            server.table.borrow_mut().block_sent(attached.id, &block, payload.len());
            glommio::yield_if_needed().await;
            continue;
        }
        head.clear();
        response::block_header(
            &mut head,
            file.as_bytes(),
            block.start as u64,
            block.first_row as u64 + 1,
            block.len() as u32,
        );
        let (written, wire_len) = match compressor.as_mut() {
            None => {
                let written = match write(server, &mut stream, &head).await {
                    Ok(()) => write(server, &mut stream, payload).await,
                    Err(error) => Err(error),
                };
                (written, payload.len())
            }
            Some(compressor) => {
                let need = head.len() + zstd::zstd_safe::compress_bound(payload.len());
                if packed.len() < need {
                    packed.resize(need, 0);
                }
                packed[..head.len()].copy_from_slice(&head);
                match compressor.compress_to_buffer(payload, &mut packed[head.len()..need]) {
                    Ok(n) => (write(server, &mut stream, &packed[..head.len() + n]).await, n),
                    Err(error) => {
                        tracing::error!(%error, "zstd compression failed");
                        head.clear();
                        response::error_message(&mut head, "flowserver: zstd compression failed");
                        let _ = write(server, &mut stream, &head).await;
                        return;
                    }
                }
            }
        };
        if let Err(error) = written {
            tracing::info!(path = request.path, segment = request.segment_id, %error, "gpfdist segment lost mid-body; session ends");
            return;
        }
        server.table.borrow_mut().block_sent(attached.id, &block, wire_len);
        glommio::yield_if_needed().await;
    }
    if !raw {
        head.clear();
        response::eof(&mut head);
        if write(server, &mut stream, &head).await.is_err() {
            return;
        }
    }
    attached.finish(Outcome::Completed);
    drop(attached);
    if !server.is_stopped() {
        close(server, stream).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::codec::fsrow::put_row;

    /// Runs a server with `batch` published at `job` and `client` on a thread.
    fn with_server<T: Send + 'static>(
        config: GpfdistConfig,
        batch: Option<ServedBatch>,
        client: impl FnOnce(SocketAddr) -> T + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let server = GpfdistServer::bind("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
                if let Some(batch) = batch {
                    server.publish("/job", Arc::new(batch));
                }
                let addr = server.local_addr();
                let handle = std::thread::spawn(move || client(addr));
                while !handle.is_finished() {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
                server.shutdown();
                handle.join().unwrap()
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    }

    const GET: &[u8] =
        b"GET /job HTTP/1.1\r\nX-GP-XID: 1\r\nX-GP-CID: 1\r\nX-GP-SN: 0\r\nX-GP-PROTO: 1\r\nX-GP-ZSTD: 1\r\n\r\n";

    fn two_rows() -> ServedBatch {
        let mut data = Vec::new();
        put_row(&mut data, &[Some(b"ab"), None]);
        put_row(&mut data, &[Some(b"c"), Some(b"")]);
        ServedBatch::from_rows(data).unwrap()
    }

    #[test]
    fn serves_a_batch_byte_for_byte() {
        let batch = two_rows();
        let data = batch.data.clone();
        let answer = with_server(GpfdistConfig::default(), Some(batch), |addr| exchange(addr, GET));
        let mut expected = Vec::new();
        response::ok_head(&mut expected, false);
        response::block_header(&mut expected, b"/job", 0, 1, data.len() as u32);
        expected.extend_from_slice(&data);
        response::eof(&mut expected);
        assert_eq!(answer, expected);
    }

    #[test]
    fn compresses_when_offered_and_enabled() {
        let batch = two_rows();
        let data = batch.data.clone();
        let config = GpfdistConfig { compression: true, ..GpfdistConfig::default() };
        let answer = with_server(config, Some(batch), |addr| exchange(addr, GET));
        let mut head = Vec::new();
        response::ok_head(&mut head, true);
        assert!(answer.starts_with(&head));
        let mut framing = Vec::new();
        response::block_header(&mut framing, b"/job", 0, 1, data.len() as u32);
        let body = &answer[head.len()..];
        assert!(body.starts_with(&framing));
        let frame = &body[framing.len()..body.len() - 5];
        assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        assert_eq!(zstd::bulk::decompress(frame, data.len()).unwrap(), data);
        assert_eq!(&body[body.len() - 5..], b"D\0\0\0\0");
    }

    #[test]
    fn late_request_of_the_same_scan_gets_only_d0() {
        let answers = with_server(GpfdistConfig::default(), Some(two_rows()), |addr| {
            let first = exchange(addr, GET);
            (first, exchange(addr, GET))
        });
        let mut form2 = Vec::new();
        response::ok_head(&mut form2, false);
        response::eof(&mut form2);
        assert!(answers.0.len() > form2.len());
        assert_eq!(answers.1, form2);
    }

    #[test]
    fn silent_clients_get_408() {
        let config = GpfdistConfig { head_timeout: Duration::from_millis(200), ..GpfdistConfig::default() };
        let (answer, waited) = with_server(config, None, |addr| {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            (answer, started.elapsed())
        });
        assert!(answer.starts_with("HTTP/1.0 408 time out\r\nContent-length: 0\r\n"), "{answer}");
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn errors_and_refusals() {
        let answers = with_server(GpfdistConfig::default(), None, |addr| {
            [
                exchange(addr, b"GET /job HTTP/1.1\r\nX-GP-PROTO: 1\r\n\r\n"),
                exchange(addr, b"POST /job HTTP/1.1\r\nX-GP-PROTO: 0\r\nX-GP-SEQ: 1\r\nContent-Length: 0\r\n\r\n"),
                exchange(addr, b"GET /job HTTP/1.1\r\nX-GP-PROTO: 0\r\n\r\n"),
                exchange(addr, b"GET /job HTTP/1.1\r\nX-GP-PROTO: 1\r\nX-GP-TRANSFORM: t\r\n\r\n"),
                exchange(addr, &[b'x'; 5000]),
                exchange(addr, b"GET /gpfdist/status HTTP/1.1\r\n\r\n"),
            ]
            .map(|a| String::from_utf8_lossy(&a).into_owned())
        });
        let first_line = |a: &String| a.lines().next().unwrap_or_default().to_string();
        assert_eq!(first_line(&answers[0]), "HTTP/1.0 404 no batch ready on /job");
        assert_eq!(
            first_line(&answers[1]),
            "HTTP/1.0 405 flowserver serves readable external tables only (POST refused)"
        );
        // Protocol 0: the head, no framing; nothing is published on /job.
        assert_eq!(first_line(&answers[2]), "HTTP/1.0 404 no batch ready on /job");
        assert_eq!(first_line(&answers[3]), "HTTP/1.0 400 invalid request (unsupported input #transform)");
        assert_eq!(first_line(&answers[4]), "HTTP/1.0 400 invalid request (head larger than 4096 bytes)");
        assert_eq!(first_line(&answers[5]), "HTTP/1.0 200 ok");
        assert!(answers[5].contains("\r\n\r\nflowserver "), "{}", answers[5]);
    }

    #[test]
    fn a_client_without_x_gp_proto_reads_raw_rows_in_protocol_0() {
        let mut data = Vec::new();
        let mut row_ends = Vec::new();
        for i in 0..3i32 {
            put_row(&mut data, &[Some(&i.to_be_bytes())]);
            row_ends.push(data.len() as u32);
        }
        let expected = data.clone();
        let answer = with_server(GpfdistConfig::default(), Some(ServedBatch { data, row_ends }), |addr| {
            exchange(addr, b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n")
        });
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let head = String::from_utf8_lossy(&answer[..split]);
        assert!(head.starts_with("HTTP/1.0 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\nX-GP-PROTO: 0\r\n"), "{head}");
        // No F/O/L/D framing and no end block: the rows, then the connection closes.
        assert_eq!(&answer[split..], &expected[..]);
    }

    #[test]
    fn connections_beyond_the_limit_get_503() {
        let config = GpfdistConfig { max_connections: 1, ..GpfdistConfig::default() };
        let answer = with_server(config, None, |addr| {
            let _held = TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            exchange(addr, GET)
        });
        assert!(answer.starts_with(b"HTTP/1.0 503 too many connections\r\n"), "{}", String::from_utf8_lossy(&answer));
    }

    #[test]
    fn inconsistent_batches_are_not_served() {
        let bad = ServedBatch { data: vec![0; 10], row_ends: vec![4] };
        let answer = with_server(GpfdistConfig::default(), Some(bad), |addr| exchange(addr, GET));
        assert!(answer.starts_with(b"HTTP/1.0 404 no batch ready on /job (retracted)\r\n"));
    }
}

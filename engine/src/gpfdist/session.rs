//! The session table: which batch each scan reads and who gets which block.
//! Pure logic, no I/O and no clock of its own (callers pass `now`).
//!
//! # Contract
//!
//! - **Paths and batches.** The shard publishes at most one batch per path
//!   ([`SessionTable::publish`]); [`SessionTable::retract`] leaves the path
//!   with none. The table only ever reads a batch (`Arc<ServedBatch>`).
//! - **Sessions.** A session is one scan of one external table location:
//!   gpfdist's key `XID.CID.SN.PROTO` + path ([`SessionKey`]). The first request
//!   of a new key **binds** the session to the batch published on its path at
//!   that moment; publishing or retracting later changes nothing for it. A
//!   request with no batch to bind gets `404` naming the path:
//!   `no batch ready on /<path>` when the path was never published, and
//!   `no batch ready on /<path> (retracted)` when it was but is empty now.
//! - **Sharing.** All requests of a session (the segments mapped to this
//!   location) take blocks of the one batch, first come first served. A block
//!   is a run of whole rows of at most `block_size` bytes; a row larger than
//!   that is a block of its own. Every row goes to exactly one request.
//! - **End.** When every block has been handed out, each attached request gets
//!   `End` (it sends `D 0`). A request that arrives after that — a late
//!   segment — gets [`Attach::Ended`]: the empty answer (a proto-1 head and `D
//!   0`), never the next batch. Ended sessions are remembered for
//!   `retention` (default 300 s, gpfdist's idle-session clean-up time) and
//!   at most `max_remembered` of them, oldest forgotten first.
//! - **New scans.** A new key — a retried transaction (new XID) or a second
//!   scan in the same transaction (same XID, new CID/SN) — binds the batch
//!   published now and reads all of it.
//! - **Failure.** A request that fails before its `D 0` (the segment
//!   disconnected, a write timed out) may have lost the rows of the block it
//!   was sending, so the whole session ends, as gpfdist does (`local_send`
//!   ends the session on a peer reset): nobody gets more blocks; the others
//!   get `D 0` on their next block and late requests the empty answer. The
//!   segment that failed fails its query, so the transaction the batch
//!   belonged to does not commit and the shard's batch is served again to
//!   the retried transaction (a new session). [`PathStats::scans_aborted`]
//!   counts these.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::HttpError;
use crate::codec::fsrow::{FsRowError, FsRowReader};

/// The rows one batch serves: FORMAT.md rows back to back, and where each ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedBatch {
    /// FORMAT.md rows.
    pub data: Vec<u8>,
    /// End offset of each row in `data`, strictly increasing, the last one
    /// `data.len()`.
    pub row_ends: Vec<u32>,
}

/// Why a [`ServedBatch`] cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch of {0} bytes is larger than 4 GiB")]
    TooLarge(usize),
    #[error("row {row} ends at {end}, not after the previous row")]
    NotIncreasing { row: usize, end: u32 },
    #[error("rows end at {rows_end} but the batch holds {data} bytes")]
    LengthMismatch { rows_end: usize, data: usize },
    #[error("{0}")]
    Row(#[from] FsRowError),
}

impl ServedBatch {
    /// Indexes `data` (FORMAT.md rows), checking every row.
    pub fn from_rows(data: Vec<u8>) -> Result<ServedBatch, BatchError> {
        if u32::try_from(data.len()).is_err() {
            return Err(BatchError::TooLarge(data.len()));
        }
        let mut row_ends = Vec::new();
        let mut reader = FsRowReader::new(&data);
        while let Some(row) = reader.next() {
            row?;
            row_ends.push(reader.position() as u32);
        }
        Ok(ServedBatch { data, row_ends })
    }

    /// Checks `row_ends` against `data` (not the rows themselves).
    pub fn check(&self) -> Result<(), BatchError> {
        if u32::try_from(self.data.len()).is_err() {
            return Err(BatchError::TooLarge(self.data.len()));
        }
        let mut previous = 0u32;
        for (row, &end) in self.row_ends.iter().enumerate() {
            if end <= previous {
                return Err(BatchError::NotIncreasing { row, end });
            }
            previous = end;
        }
        if previous as usize != self.data.len() {
            return Err(BatchError::LengthMismatch { rows_end: previous as usize, data: self.data.len() });
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.row_ends.len()
    }

    /// The block starting at row `row`: whole rows, at most `block_size`
    /// bytes unless its single row is larger. `None` past the last row.
    pub fn block_at(&self, row: usize, block_size: usize) -> Option<Block> {
        if row >= self.row_ends.len() {
            return None;
        }
        let start = if row == 0 { 0 } else { self.row_ends[row - 1] as usize };
        let limit = start.saturating_add(block_size);
        let fitting = self.row_ends[row..].partition_point(|&end| end as usize <= limit);
        let end_row = row + fitting.max(1);
        let end = (self.row_ends[end_row - 1] as usize).min(self.data.len());
        Some(Block { first_row: row, end_row, start: start.min(end), end })
    }
}

/// Rows `first_row..end_row` (0-based), bytes `start..end` of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub first_row: usize,
    pub end_row: usize,
    pub start: usize,
    pub end: usize,
}

impl Block {
    pub fn rows(&self) -> usize {
        self.end_row - self.first_row
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Target block size in bytes (clamped to 1 B ..= 1 GiB).
    pub block_size: usize,
    /// How long an ended session is remembered, so that its late segments get
    /// the empty answer instead of binding a newer batch.
    pub retention: Duration,
    /// At most this many ended sessions are remembered.
    pub max_remembered: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { block_size: 256 * 1024, retention: Duration::from_secs(300), max_remembered: 65_536 }
    }
}

/// gpfdist's session key: `XID.CID.SN.PROTO` and the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub tid: String,
    pub path: String,
}

pub type SessionId = u64;

/// The answer to a request joining its session.
#[derive(Debug)]
pub enum Attach {
    /// Serve blocks of `batch` taken with [`SessionTable::next_block`].
    Joined { id: SessionId, batch: Arc<ServedBatch> },
    /// The session has ended: the empty answer.
    Ended,
    /// No batch to bind: answer this error.
    Refused(HttpError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Block(Block),
    /// No more blocks for this request: send `D 0`.
    End,
}

/// How a joined request left its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It sent `D 0`.
    Completed,
    /// It stopped before `D 0`: rows may be lost; the session ends.
    Failed,
}

/// Counters of one path, since it was first published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// A batch is published now.
    pub published: bool,
    /// Sessions created (scans that bound a batch).
    pub scans_bound: u64,
    /// Sessions that handed out every block and whose requests all sent `D 0`.
    pub scans_finished: u64,
    /// Sessions ended by a failed request.
    pub scans_aborted: u64,
    /// Requests that joined a session, late ones included.
    pub requests: u64,
    /// Requests that found their session ended (empty answer).
    pub late_requests: u64,
    /// Requests refused for want of a batch.
    pub refused_requests: u64,
    /// Data blocks, rows and bytes (uncompressed) completely written.
    pub blocks_served: u64,
    pub rows_served: u64,
    pub bytes_served: u64,
    /// `D` payload bytes on the wire (compressed size when zstd is on).
    pub wire_bytes: u64,
}

#[derive(Debug, Default)]
struct PathEntry {
    batch: Option<Arc<ServedBatch>>,
    stats: PathStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// Every block handed out.
    Exhausted,
    /// A request failed.
    Aborted,
}

#[derive(Debug)]
struct Session {
    key: SessionKey,
    /// Dropped when the session has ended and nobody is attached.
    batch: Option<Arc<ServedBatch>>,
    next_row: usize,
    attached: u32,
    state: State,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SessionTable {
    config: SessionConfig,
    paths: HashMap<String, PathEntry>,
    keys: HashMap<SessionKey, SessionId>,
    sessions: HashMap<SessionId, Session>,
    /// Ended sessions nobody is attached to, oldest first.
    retired: VecDeque<(Instant, SessionId)>,
    next_id: SessionId,
    next_auto_tid: u64,
}

fn normalize(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl SessionTable {
    pub fn new(mut config: SessionConfig) -> SessionTable {
        config.block_size = config.block_size.clamp(1, 1 << 30);
        SessionTable {
            config,
            paths: HashMap::new(),
            keys: HashMap::new(),
            sessions: HashMap::new(),
            retired: VecDeque::new(),
            next_id: 1,
            next_auto_tid: 0,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The key of a request: its `XID.CID.SN.PROTO` (or, for a plain HTTP
    /// client without them, a key of its own) and its path.
    pub fn key_for(&mut self, tid: Option<String>, path: &str) -> SessionKey {
        let tid = tid.unwrap_or_else(|| {
            self.next_auto_tid += 1;
            format!("auto-tid.{}", self.next_auto_tid)
        });
        SessionKey { tid, path: normalize(path).to_string() }
    }

    /// The batch new scans of `path` bind to, from now on.
    pub fn publish(&mut self, path: &str, batch: Arc<ServedBatch>) {
        let entry = self.paths.entry(normalize(path).to_string()).or_default();
        entry.batch = Some(batch);
        entry.stats.published = true;
    }

    /// New scans of `path` get `404` until the next publish; running scans
    /// keep their batch. The path is known from then on.
    pub fn retract(&mut self, path: &str) {
        let entry = self.paths.entry(normalize(path).to_string()).or_default();
        entry.batch = None;
        entry.stats.published = false;
    }

    pub fn stats(&self, path: &str) -> PathStats {
        self.paths.get(normalize(path)).map_or_else(PathStats::default, |entry| entry.stats)
    }

    /// Sessions with requests attached.
    pub fn active_sessions(&self) -> usize {
        self.sessions.values().filter(|s| s.attached > 0).count()
    }

    /// Sessions remembered (active or ended).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Every path's counters, for the status page.
    pub fn all_stats(&self) -> impl Iterator<Item = (&str, &PathStats)> {
        self.paths.iter().map(|(path, entry)| (path.as_str(), &entry.stats))
    }

    /// Forgets ended sessions older than the retention time, and the oldest
    /// ones beyond `max_remembered`.
    pub fn purge(&mut self, now: Instant) {
        while let Some(&(ended, id)) = self.retired.front() {
            let expired = now.saturating_duration_since(ended) >= self.config.retention;
            if !expired && self.retired.len() <= self.config.max_remembered {
                break;
            }
            self.retired.pop_front();
            if let Some(session) = self.sessions.remove(&id) {
                self.keys.remove(&session.key);
            }
        }
    }

    /// A request of `key` arrives.
    pub fn attach(&mut self, key: SessionKey, now: Instant) -> Attach {
        self.purge(now);
        if let Some(&id) = self.keys.get(&key)
            && let Some(session) = self.sessions.get_mut(&id)
        {
            let entry = self.paths.entry(key.path.clone()).or_default();
            entry.stats.requests += 1;
            if let (State::Serving, Some(batch)) = (session.state, &session.batch) {
                session.attached += 1;
                return Attach::Joined { id, batch: Arc::clone(batch) };
            }
            entry.stats.late_requests += 1;
            return Attach::Ended;
        }
        let Some(entry) = self.paths.get_mut(&key.path) else {
            return Attach::Refused(HttpError::new(404, format!("no batch ready on /{}", key.path)));
        };
        let Some(batch) = entry.batch.clone() else {
            entry.stats.refused_requests += 1;
            return Attach::Refused(HttpError::new(404, format!("no batch ready on /{} (retracted)", key.path)));
        };
        entry.stats.scans_bound += 1;
        entry.stats.requests += 1;
        let id = self.next_id;
        self.next_id += 1;
        self.keys.insert(key.clone(), id);
        self.sessions.insert(
            id,
            Session { key, batch: Some(Arc::clone(&batch)), next_row: 0, attached: 1, state: State::Serving },
        );
        Attach::Joined { id, batch }
    }

    /// The next block for a request of session `id`.
    pub fn next_block(&mut self, id: SessionId) -> Next {
        let block_size = self.config.block_size;
        let Some(session) = self.sessions.get_mut(&id) else { return Next::End };
        if session.state != State::Serving {
            return Next::End;
        }
        match session.batch.as_ref().and_then(|batch| batch.block_at(session.next_row, block_size)) {
            Some(block) => {
                session.next_row = block.end_row;
                Next::Block(block)
            }
            None => {
                session.state = State::Exhausted;
                Next::End
            }
        }
    }

    /// A block of session `id` was completely written (`wire_len` payload
    /// bytes on the wire).
    pub fn block_sent(&mut self, id: SessionId, block: &Block, wire_len: usize) {
        let Some(session) = self.sessions.get(&id) else { return };
        if let Some(entry) = self.paths.get_mut(&session.key.path) {
            entry.stats.blocks_served += 1;
            entry.stats.rows_served += block.rows() as u64;
            entry.stats.bytes_served += block.len() as u64;
            entry.stats.wire_bytes += wire_len as u64;
        }
    }

    /// A joined request of session `id` is done, well or not.
    pub fn detach(&mut self, id: SessionId, outcome: Outcome, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        session.attached = session.attached.saturating_sub(1);
        let entry = self.paths.entry(session.key.path.clone()).or_default();
        // A request that did not finish, or (defensively) the last one leaving
        // blocks behind, ends the session.
        let lost = outcome == Outcome::Failed || (session.state == State::Serving && session.attached == 0);
        if lost && session.state != State::Aborted {
            session.state = State::Aborted;
            entry.stats.scans_aborted += 1;
        }
        if session.attached == 0 {
            if session.state == State::Exhausted {
                entry.stats.scans_finished += 1;
            }
            session.batch = None;
            self.retired.push_back((now, id));
        }
    }

    /// Ends every session and forgets every batch (server shutdown).
    pub fn clear(&mut self) {
        for entry in self.paths.values_mut() {
            entry.batch = None;
            entry.stats.published = false;
        }
        for session in self.sessions.values_mut() {
            session.state = State::Aborted;
            session.batch = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::fsrow::put_row;

    fn batch(rows: usize, value_len: usize) -> Arc<ServedBatch> {
        let mut data = Vec::new();
        for i in 0..rows {
            let value = vec![b'a' + (i % 26) as u8; value_len];
            put_row(&mut data, &[Some(&(i as u32).to_be_bytes()), Some(&value)]);
        }
        Arc::new(ServedBatch::from_rows(data).unwrap())
    }

    fn table(block_size: usize) -> SessionTable {
        SessionTable::new(SessionConfig { block_size, ..SessionConfig::default() })
    }

    fn key(table: &mut SessionTable, xid: &str, cid: &str, sn: &str, path: &str) -> SessionKey {
        table.key_for(Some(format!("{xid}.{cid}.{sn}.1")), path)
    }

    fn joined(attach: Attach) -> (SessionId, Arc<ServedBatch>) {
        match attach {
            Attach::Joined { id, batch } => (id, batch),
            other => panic!("{other:?}"),
        }
    }

    fn drain(table: &mut SessionTable, id: SessionId) -> Vec<Block> {
        let mut blocks = Vec::new();
        while let Next::Block(block) = table.next_block(id) {
            table.block_sent(id, &block, block.len());
            blocks.push(block);
        }
        blocks
    }

    #[test]
    fn blocks_are_whole_rows_within_the_size() {
        // Rows of 4 + 2 + 8 + 4 + 10 = 28 bytes.
        let b = batch(10, 10);
        assert_eq!(b.row_ends[0], 28);
        assert_eq!(b.block_at(0, 100), Some(Block { first_row: 0, end_row: 3, start: 0, end: 84 }));
        assert_eq!(b.block_at(3, 84), Some(Block { first_row: 3, end_row: 6, start: 84, end: 168 }));
        assert_eq!(b.block_at(9, 1000), Some(Block { first_row: 9, end_row: 10, start: 252, end: 280 }));
        // A row larger than the block size is its own block.
        assert_eq!(b.block_at(2, 5), Some(Block { first_row: 2, end_row: 3, start: 56, end: 84 }));
        assert_eq!(b.block_at(10, 100), None);
        assert_eq!(ServedBatch::default().block_at(0, 100), None);
    }

    #[test]
    fn batch_checks() {
        assert_eq!(batch(3, 1).check(), Ok(()));
        let bad = ServedBatch { data: vec![0; 10], row_ends: vec![4, 4, 10] };
        assert_eq!(bad.check(), Err(BatchError::NotIncreasing { row: 1, end: 4 }));
        let bad = ServedBatch { data: vec![0; 10], row_ends: vec![4, 8] };
        assert_eq!(bad.check().unwrap_err().to_string(), "rows end at 8 but the batch holds 10 bytes");
        assert!(ServedBatch::from_rows(vec![0, 0, 0, 9, 0]).is_err());
        assert_eq!(ServedBatch::default().check(), Ok(()));
    }

    #[test]
    fn requests_of_one_session_share_the_batch_exactly_once() {
        let mut t = table(60);
        t.publish("/job/0", batch(25, 10));
        let now = Instant::now();
        let k = key(&mut t, "112", "6", "0", "job/0");
        let (a, _) = joined(t.attach(k.clone(), now));
        let (b, _) = joined(t.attach(k.clone(), now));
        assert_eq!(a, b);
        let mut rows = Vec::new();
        // Alternate the two requests.
        loop {
            let x = t.next_block(a);
            let y = t.next_block(b);
            for next in [x, y] {
                if let Next::Block(block) = next {
                    rows.extend(block.first_row..block.end_row);
                }
            }
            if x == Next::End && y == Next::End {
                break;
            }
        }
        assert_eq!(rows, (0..25).collect::<Vec<_>>());
        t.detach(a, Outcome::Completed, now);
        assert_eq!(t.stats("job/0").scans_finished, 0, "one request is still attached");
        t.detach(b, Outcome::Completed, now);
        let stats = t.stats("job/0");
        assert_eq!((stats.scans_bound, stats.scans_finished, stats.requests, stats.scans_aborted), (1, 1, 2, 0));
    }

    #[test]
    fn late_requests_get_the_empty_answer_not_the_next_batch() {
        let mut t = table(1000);
        t.publish("job", batch(5, 3));
        let now = Instant::now();
        let k = key(&mut t, "24-0000000004", "4", "0", "job");
        let (id, _) = joined(t.attach(k.clone(), now));
        assert_eq!(drain(&mut t, id).len(), 1);
        t.detach(id, Outcome::Completed, now);
        t.publish("job", batch(7, 3));
        assert!(matches!(t.attach(k.clone(), now + Duration::from_secs(10)), Attach::Ended));
        let stats = t.stats("job");
        assert_eq!((stats.late_requests, stats.scans_bound, stats.rows_served), (1, 1, 5));
        // Once forgotten (after the retention time), the key would bind again.
        assert!(matches!(t.attach(k, now + Duration::from_secs(301)), Attach::Joined { .. }));
    }

    #[test]
    fn a_request_joining_after_the_last_block_was_handed_out_gets_end() {
        let mut t = table(1000);
        t.publish("job", batch(5, 3));
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "job");
        let (a, _) = joined(t.attach(k.clone(), now));
        assert!(matches!(t.next_block(a), Next::Block(_)));
        assert_eq!(t.next_block(a), Next::End);
        // a is still writing its last block; the session has no more blocks.
        assert!(matches!(t.attach(k, now), Attach::Ended));
        t.detach(a, Outcome::Completed, now);
        assert_eq!(t.stats("job").scans_finished, 1);
    }

    #[test]
    fn new_keys_read_the_whole_current_batch() {
        let mut t = table(1000);
        t.publish("job", batch(4, 3));
        let now = Instant::now();
        for (xid, cid, sn) in [("113", "9", "1"), ("113", "b", "2"), ("114", "9", "1")] {
            let k = key(&mut t, xid, cid, sn, "job");
            let (id, b) = joined(t.attach(k, now));
            let rows: usize = drain(&mut t, id).iter().map(Block::rows).sum();
            assert_eq!(rows, b.rows());
            t.detach(id, Outcome::Completed, now);
        }
        let stats = t.stats("job");
        assert_eq!((stats.scans_bound, stats.scans_finished, stats.rows_served), (3, 3, 12));
    }

    #[test]
    fn a_session_keeps_its_batch_across_publish_and_retract() {
        let mut t = table(28);
        t.publish("job", batch(3, 10));
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "job");
        let (a, first) = joined(t.attach(k.clone(), now));
        assert!(matches!(t.next_block(a), Next::Block(_)));
        t.publish("job", batch(50, 10));
        let (b, also_first) = joined(t.attach(k.clone(), now));
        assert!(Arc::ptr_eq(&first, &also_first));
        t.retract("job");
        assert_eq!(drain(&mut t, b).len(), 2);
        t.detach(a, Outcome::Completed, now);
        t.detach(b, Outcome::Completed, now);
        assert_eq!(t.stats("job").rows_served, 2);
    }

    #[test]
    fn refusals_name_the_path() {
        let mut t = table(1000);
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "nope");
        match t.attach(k, now) {
            Attach::Refused(e) => assert_eq!(e.to_string(), "404 no batch ready on /nope"),
            other => panic!("{other:?}"),
        }
        t.publish("job", batch(1, 1));
        t.retract("job");
        let k = key(&mut t, "1", "1", "0", "job");
        match t.attach(k, now) {
            Attach::Refused(e) => assert_eq!(e.to_string(), "404 no batch ready on /job (retracted)"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.stats("job").refused_requests, 1);
        assert!(!t.stats("job").published);
    }

    #[test]
    fn a_failed_request_ends_the_session_for_everyone() {
        let mut t = table(28);
        t.publish("job", batch(10, 10));
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "job");
        let (a, _) = joined(t.attach(k.clone(), now));
        let (b, _) = joined(t.attach(k.clone(), now));
        assert!(matches!(t.next_block(a), Next::Block(_)));
        assert!(matches!(t.next_block(b), Next::Block(_)));
        t.detach(a, Outcome::Failed, now);
        assert_eq!(t.next_block(b), Next::End);
        t.detach(b, Outcome::Completed, now);
        assert!(matches!(t.attach(k, now), Attach::Ended));
        let stats = t.stats("job");
        assert_eq!((stats.scans_aborted, stats.scans_finished, stats.late_requests), (1, 0, 1));
        // The batch is still published: a retried transaction reads all of it.
        let k = key(&mut t, "2", "1", "0", "job");
        let (c, _) = joined(t.attach(k, now));
        assert_eq!(drain(&mut t, c).iter().map(Block::rows).sum::<usize>(), 10);
    }

    #[test]
    fn retention_is_bounded_in_count_too() {
        let mut t = SessionTable::new(SessionConfig { block_size: 100, max_remembered: 2, ..SessionConfig::default() });
        t.publish("job", batch(1, 1));
        let now = Instant::now();
        for xid in ["1", "2", "3"] {
            let k = key(&mut t, xid, "1", "0", "job");
            let (id, _) = joined(t.attach(k, now));
            drain(&mut t, id);
            t.detach(id, Outcome::Completed, now);
        }
        t.purge(now);
        assert_eq!(t.sessions(), 2);
        let oldest = key(&mut t, "1", "1", "0", "job");
        assert!(matches!(t.attach(oldest, now), Attach::Joined { .. }), "forgotten, so it binds again");
        let newest = key(&mut t, "3", "1", "0", "job");
        assert!(matches!(t.attach(newest, now), Attach::Ended));
    }

    #[test]
    fn plain_clients_get_private_sessions() {
        let mut t = table(1000);
        t.publish("job", batch(2, 1));
        let now = Instant::now();
        let k1 = t.key_for(None, "/job");
        let k2 = t.key_for(None, "job");
        assert_ne!(k1, k2);
        let (a, _) = joined(t.attach(k1, now));
        let (b, _) = joined(t.attach(k2, now));
        assert_ne!(a, b);
        assert_eq!(drain(&mut t, a).len(), 1);
        assert_eq!(drain(&mut t, b).len(), 1);
    }

    #[test]
    fn an_empty_batch_ends_at_once() {
        let mut t = table(1000);
        t.publish("job", Arc::new(ServedBatch::default()));
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "job");
        let (id, _) = joined(t.attach(k, now));
        assert_eq!(t.next_block(id), Next::End);
        t.detach(id, Outcome::Completed, now);
        assert_eq!(t.stats("job").scans_finished, 1);
    }

    #[test]
    fn clear_ends_everything() {
        let mut t = table(1000);
        t.publish("job", batch(2, 1));
        let now = Instant::now();
        let k = key(&mut t, "1", "1", "0", "job");
        let (id, _) = joined(t.attach(k.clone(), now));
        t.clear();
        assert_eq!(t.next_block(id), Next::End);
        assert!(matches!(t.attach(k, now), Attach::Ended));
        let k = key(&mut t, "2", "1", "0", "job");
        assert!(matches!(t.attach(k, now), Attach::Refused(_)));
    }
}

//! The gpfdist listener: shards serve batches of rows straight to
//! WarehousePG / Greenplum segments, which read them with
//! `INSERT INTO target SELECT … FROM ext` where `ext` is a readable external
//! table `LOCATION ('gpfdist://<host>:<port>/<path>') FORMAT 'CUSTOM'
//! (formatter='fs_formatter_in')`.
//!
//! # Contract
//!
//! - **Ownership.** Each shard owns one [`GpfdistServer`] (one port) and the
//!   batches it publishes on it. The shard decides *what* is served:
//!   [`GpfdistServer::publish`] makes an `Arc<ServedBatch>` the batch that new
//!   scans of a path bind to, [`GpfdistServer::retract`] stops that. The
//!   server decides *who gets which rows*. Nothing is shared between shards.
//! - **One scan = one session.** A scan of a location is a gpfdist session,
//!   keyed by the segments' `X-GP-XID`, `X-GP-CID`, `X-GP-SN`, `X-GP-PROTO`
//!   and the path. The session binds, at its first request, the batch then
//!   published; all its requests (one per segment mapped to the location)
//!   share that batch block by block, first come first served, and every row
//!   goes to exactly one segment. Blocks hold whole rows (FORMAT.md rows, at
//!   most `block_size` bytes, a larger row alone).
//! - **Ordering.** Blocks leave in batch order; which segment gets which block
//!   is timing. `O` and `L` of each block say where it lies in the batch.
//! - **End.** When every block is out, each request gets `D 0` and the
//!   server half-closes. A segment arriving after that — late — gets a 200
//!   with only `D 0` (it reads no rows), never the next batch: ended sessions
//!   are remembered for `session_retention`. A new transaction (new XID) or
//!   a second scan in one transaction (new CID/SN) is a new session and reads
//!   the whole currently published batch.
//! - **Failure.** A segment that disconnects or stalls (no write progress for
//!   `write_timeout`) mid-body ends its session, as in gpfdist: the others get
//!   `D 0` after their current block and late segments the empty answer. That
//!   segment's query fails, so its transaction does not commit; the retry is
//!   a new session and reads the batch again. No batch published → `404 no
//!   batch ready on /<path>` (see [`session`]). A misbehaving client never
//!   blocks the shard: every read and write has a timeout, and
//!   [`GpfdistServer::shutdown`] cancels them all.
//!
//! # Modules
//!
//! Sans-I/O: [`request`] (heads → [`Request`]), [`response`] (heads and
//! block framing), [`session`] (the session table). [`listener`] is the thin
//! glommio part (sockets, timeouts, zstd).

pub mod listener;
pub mod request;
pub mod response;
pub mod session;

pub use listener::{GpfdistConfig, GpfdistServer};
pub use request::{CsvOpt, Head, HttpError, Method, Request, Tid};
pub use session::{PathStats, ServedBatch};

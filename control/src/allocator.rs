//! The process allocator of every binary that links this crate (`flowserver`
//! and the perf runs): jemalloc, unprefixed, so that librdkafka's C code
//! allocates with it too.
//!
//! Why: librdkafka allocates each fetched message on its broker thread and a
//! shard frees it. Under glibc that cross-thread free takes the broker
//! thread's arena lock, and the two threads contend on it for every message —
//! about a third of a shard's time (perf/RESULTS.md, issue 4). jemalloc frees
//! into the freeing thread's cache and returns memory in batches.
//!
//! The configuration keeps RSS within the memory bounds the engine promises
//! (ARCHITECTURE.md, "Backpressure and memory bounds"): a background thread
//! returns unused pages a second after they are freed, off the shards'
//! threads. (jemalloc's default, 10 s and no background thread, let RSS reach
//! 311 MB in the 60 s stall of `memory_backpressure` against a 256 MB budget;
//! a 200 ms decay cost 5–13 % of engine throughput.)
//! `MALLOC_CONF` in the environment still overrides it.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this symbol at start-up; a NUL-terminated option string.
#[allow(unsafe_code)]
// SAFETY: jemalloc declares `const char *malloc_conf` as a weak symbol for
// the program to define; this is a thin pointer to a static NUL-terminated
// string, never written.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

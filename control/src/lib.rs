//! flowserver's control plane, on tokio: the gRPC job-control service, job
//! files to validated plans, the generated SQL, database sessions, the batch
//! commit protocol and offsets. It talks to the engine's shards only through
//! the links of `flowserver_engine::events`, never shares their state.
//!
//! Map: [`jobspec`] (job files) → [`load_plan`] (what shards compute, which SQL
//! runs) → [`job`] (start checks, supervisor) → [`committer`] (one per job and
//! shard: transactions, offsets, error rows); [`registry`] keeps jobs and
//! their state across restarts; [`service`] is the gRPC surface, behind
//! [`rpc_guard`] (request limits, panics answered INTERNAL); [`config`]
//! reads flow_server.json.

pub mod allocator;
pub mod committer;
pub mod config;
pub mod db;
pub mod error;
pub mod greenplum;
pub mod job;
pub mod jobspec;
pub mod kafka_admin;
pub mod liveness;
pub mod load_plan;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod rpc_guard;
pub mod service;
pub mod sql;

//! flowserver's data plane: glommio shards that read Kafka partitions,
//! decode messages and encode rows. It never depends on tokio and never talks
//! to a database; the control plane loads what the shards produce.
//!
//! Map: [`runtime`] (shard threads) runs [`job_task`] per job and shard, which
//! reads through [`kafka`], encodes with [`codec`] into a [`batch`], and talks
//! to the control plane with the messages of [`events`]; [`stats`] is what
//! the control plane may read directly; [`plan`] is what it hands a shard.

pub mod batch;
pub mod codec;
pub mod events;
pub mod gpfdist;
pub mod job_task;
pub mod kafka;
pub mod plan;
pub mod runtime;
pub mod stats;

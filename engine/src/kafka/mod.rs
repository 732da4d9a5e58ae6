//! Reading Kafka: [`consumer`] is the librdkafka consumer a shard waits on
//! (group membership, offset commits, and the fetch path for jobs the
//! native fetcher does not take); [`wire`] is the sans-I/O protocol the
//! native fetcher ([`fetcher`]) speaks to partition leaders from the shard
//! itself.

pub mod consumer;
pub mod fetcher;
pub mod wire;

pub use consumer::*;

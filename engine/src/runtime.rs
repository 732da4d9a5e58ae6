//! The shards: one glommio executor thread each, optionally pinned to a CPU.
//!
//! The control plane talks to a shard only through its bounded command
//! channel, and to a job on a shard only through that job's link (see
//! [`crate::events`]). Shards share nothing with each other.

use std::sync::Arc;

use async_channel::{Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};

use crate::events::{ControlReply, ShardEvent};
use crate::job_task::{self, ShardSide};
use crate::plan::ShardJobPlan;
use crate::stats::ShardJobStats;

/// Capacity of each link direction; small on purpose: a sealed batch can be
/// large, and the in-flight rule keeps at most one per link anyway.
const LINK_CAPACITY: usize = 8;
const COMMAND_CAPACITY: usize = 64;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub shards: usize,
    /// Pin shard `i` to CPU `i % cpus`.
    pub pin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start shard {shard}: {reason}")]
    ShardStart { shard: usize, reason: String },
    #[error("shard {0} is not running")]
    ShardGone(usize),
}

enum ShardCommand {
    StartJob { plan: Arc<ShardJobPlan>, side: ShardSide },
}

struct ShardHandle {
    commands: Sender<ShardCommand>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// The control plane's end of one (job, shard) link.
pub struct JobLink {
    pub shard: usize,
    pub events: Receiver<ShardEvent>,
    pub replies: Sender<ControlReply>,
    pub stats: Arc<ShardJobStats>,
}

pub struct Engine {
    shards: Vec<ShardHandle>,
}

impl Engine {
    pub fn start(config: &EngineConfig) -> Result<Engine, EngineError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut shards = Vec::with_capacity(config.shards);
        for shard in 0..config.shards.max(1) {
            let placement = if config.pin { Placement::Fixed(shard % cpus) } else { Placement::Unbound };
            let (commands, inbox) = async_channel::bounded(COMMAND_CAPACITY);
            let thread = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{shard}"))
                .spawn(move || shard_main(shard, inbox))
                .map_err(|error| EngineError::ShardStart { shard, reason: error.to_string() })?;
            shards.push(ShardHandle { commands, thread: Some(thread) });
        }
        Ok(Engine { shards })
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Starts `plan` on every shard and returns one link per shard.
    pub async fn start_job(&self, plan: Arc<ShardJobPlan>) -> Result<Vec<JobLink>, EngineError> {
        let mut links = Vec::with_capacity(self.shards.len());
        for (shard, handle) in self.shards.iter().enumerate() {
            let (event_tx, event_rx) = async_channel::bounded(LINK_CAPACITY);
            let (reply_tx, reply_rx) = async_channel::bounded(LINK_CAPACITY);
            let stats = Arc::new(ShardJobStats::default());
            let side = ShardSide { events: event_tx, replies: reply_rx, stats: stats.clone() };
            handle
                .commands
                .send(ShardCommand::StartJob { plan: plan.clone(), side })
                .await
                .map_err(|_| EngineError::ShardGone(shard))?;
            links.push(JobLink { shard, events: event_rx, replies: reply_tx, stats });
        }
        Ok(links)
    }

    /// Ends every shard. Jobs should be stopped first: tasks still running
    /// are dropped with their executor.
    pub fn shutdown(mut self) {
        for handle in &mut self.shards {
            handle.commands.close();
        }
        for (shard, handle) in self.shards.iter_mut().enumerate() {
            if let Some(thread) = handle.thread.take()
                && let Err(error) = thread.join()
            {
                tracing::warn!(shard, %error, "shard ended with an error");
            }
        }
    }
}

async fn shard_main(shard: usize, inbox: Receiver<ShardCommand>) {
    tracing::debug!(shard, "shard started");
    while let Ok(command) = inbox.recv().await {
        match command {
            ShardCommand::StartJob { plan, side } => {
                glommio::spawn_local(job_task::run(plan, side, shard)).detach();
            }
        }
    }
    tracing::debug!(shard, "shard stopped");
}

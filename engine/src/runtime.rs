//! The shards: one glommio executor thread each, optionally pinned to a CPU.
//!
//! The control plane talks to a shard only through its bounded command
//! channel, and to a job on a shard only through that job's link (see
//! [`crate::events`]). Shards share nothing with each other.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};

use crate::gpfdist::{GpfdistConfig, GpfdistServer};

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
    /// Each shard's gpfdist listener, for WarehousePG / Greenplum targets.
    pub gpfdist: Option<GpfdistListen>,
}

/// Where shard `i` listens: `host:(base_port + i)`, or any free port when
/// `base_port` is 0.
#[derive(Debug, Clone)]
pub struct GpfdistListen {
    /// Empty: every interface.
    pub host: String,
    pub base_port: u16,
    pub config: GpfdistConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start shard {shard}: {reason}")]
    ShardStart { shard: usize, reason: String },
    #[error("shard {0} is not running")]
    ShardGone(usize),
    #[error(
        "shard {shard} would listen for gpfdist on port {base_port} + {shard}, past 65535: lower Gpfdist.Port or Shards"
    )]
    GpfdistPort { shard: usize, base_port: u16 },
    #[error("cannot listen for gpfdist on {address} (shard {shard}): {reason}")]
    GpfdistListen { shard: usize, address: String, reason: String },
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
    /// The address each shard's gpfdist listener is bound to.
    gpfdist_addresses: Vec<SocketAddr>,
}

impl Engine {
    pub fn start(config: &EngineConfig) -> Result<Engine, EngineError> {
        // Refuse a port range past 65535 before any shard starts.
        if let Some(listen) = &config.gpfdist
            && listen.base_port != 0
        {
            let last = config.shards.max(1) - 1;
            if u16::try_from(last).ok().and_then(|offset| listen.base_port.checked_add(offset)).is_none() {
                return Err(EngineError::GpfdistPort { shard: last, base_port: listen.base_port });
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut shards = Vec::with_capacity(config.shards);
        let mut gpfdist_addresses = Vec::new();
        for shard in 0..config.shards.max(1) {
            let placement = if config.pin { Placement::Fixed(shard % cpus) } else { Placement::Unbound };
            let (commands, inbox) = async_channel::bounded(COMMAND_CAPACITY);
            let (bound_tx, bound_rx) = std::sync::mpsc::channel();
            let listen = match &config.gpfdist {
                None => None,
                Some(listen) => {
                    let port = if listen.base_port == 0 {
                        0
                    } else {
                        u16::try_from(shard)
                            .ok()
                            .and_then(|offset| listen.base_port.checked_add(offset))
                            .ok_or(EngineError::GpfdistPort { shard, base_port: listen.base_port })?
                    };
                    let host = if listen.host.is_empty() { "0.0.0.0".to_string() } else { listen.host.clone() };
                    Some((format!("{host}:{port}"), listen.config.clone()))
                }
            };
            let thread = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{shard}"))
                .spawn(move || async move {
                    let server = match listen {
                        None => None,
                        Some((address, config)) => match bind_gpfdist(&address, config).await {
                            Ok(server) => {
                                let _ = bound_tx.send(Ok(Some(server.local_addr())));
                                Some(server)
                            }
                            Err(reason) => {
                                let _ = bound_tx.send(Err((address, reason)));
                                return;
                            }
                        },
                    };
                    if server.is_none() {
                        let _ = bound_tx.send(Ok(None));
                    }
                    shard_main(shard, inbox, server).await
                })
                .map_err(|error| EngineError::ShardStart { shard, reason: error.to_string() })?;
            match bound_rx.recv() {
                Ok(Ok(Some(address))) => gpfdist_addresses.push(address),
                Ok(Ok(None)) => {}
                Ok(Err((address, reason))) => return Err(EngineError::GpfdistListen { shard, address, reason }),
                Err(_) => return Err(EngineError::ShardStart { shard, reason: "the shard thread ended".into() }),
            }
            shards.push(ShardHandle { commands, thread: Some(thread) });
        }
        Ok(Engine { shards, gpfdist_addresses })
    }

    /// The bound address of each shard's gpfdist listener (empty without listeners).
    pub fn gpfdist_addresses(&self) -> &[SocketAddr] {
        &self.gpfdist_addresses
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

async fn bind_gpfdist(address: &str, config: GpfdistConfig) -> Result<Rc<GpfdistServer>, String> {
    use std::net::ToSocketAddrs;
    let address = address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "the host resolves to no address".to_string())?;
    GpfdistServer::bind(address, config).await.map_err(|e| e.to_string())
}

async fn shard_main(shard: usize, inbox: Receiver<ShardCommand>, gpfdist: Option<Rc<GpfdistServer>>) {
    tracing::debug!(shard, "shard started");
    while let Ok(command) = inbox.recv().await {
        match command {
            ShardCommand::StartJob { plan, side } => {
                glommio::spawn_local(job_task::run(plan, side, shard, gpfdist.clone())).detach();
            }
        }
    }
    if let Some(server) = gpfdist {
        server.shutdown();
    }
    tracing::debug!(shard, "shard stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpfdist_port_range_past_65535_is_a_clear_error_before_any_shard_starts() {
        let listen =
            |base_port| GpfdistListen { host: "127.0.0.1".into(), base_port, config: GpfdistConfig::default() };
        let config = EngineConfig { shards: 3, pin: false, gpfdist: Some(listen(65534)) };
        let error = Engine::start(&config).err().expect("refused");
        assert_eq!(
            error.to_string(),
            "shard 2 would listen for gpfdist on port 65534 + 2, past 65535: lower Gpfdist.Port or Shards"
        );
        let config = EngineConfig { shards: 70_000, pin: false, gpfdist: Some(listen(1)) };
        assert!(matches!(Engine::start(&config), Err(EngineError::GpfdistPort { shard: 69_999, base_port: 1 })));
    }
}

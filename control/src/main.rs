//! `flowserver [-c flow_server.json] [-l log-dir]`: starts the engine's
//! shards, the gRPC job-control service and, when configured, the metrics
//! endpoint; resumes the jobs that were running; stops cleanly on SIGINT or
//! SIGTERM (jobs load what they hold and stay marked running for next time).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use flowserver_control::config::ServerConfig;
use flowserver_control::job::ServerContext;
use flowserver_control::registry::Registry;
use flowserver_control::service::Service;
use flowserver_control::{logging, metrics, rpc_guard};
use flowserver_engine::gpfdist::GpfdistConfig;
use flowserver_engine::runtime::{Engine, EngineConfig, GpfdistListen};
use flowserver_proto::v1::flow_server_server::FlowServerServer;

#[derive(Debug, Parser)]
#[command(
    name = "flowserver",
    version,
    about = "Streaming loader from Kafka into WarehousePG, Greenplum and PostgreSQL"
)]
struct Args {
    /// flow_server.json; the built-in defaults apply without it.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Directory for the server's (and, with SplitLogByJob, each job's) log files.
    #[arg(short = 'l', long = "log-dir")]
    log_dir: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("flowserver: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = ServerConfig::load(args.config.as_deref())?;
    let log_dir = args.log_dir.unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join("gpAdminLogs")
    });
    logging::init(&config.logging, &log_dir).map_err(anyhow::Error::msg)?;
    // From here on a panic on any thread reaches the log files.
    rpc_guard::install_panic_hook();
    for key in &config.unknown_keys {
        tracing::warn!(key = %key, "unknown key in the server configuration; ignored");
    }
    if config.debug_port.is_some() {
        tracing::warn!("DebugPort is accepted but flowserver serves no profiling endpoint");
    }

    let gpfdist = GpfdistListen {
        host: config.gpfdist.host.clone(),
        base_port: config.gpfdist.port,
        config: GpfdistConfig {
            block_size: config.gpfdist.block_size,
            compression: config.gpfdist.compression,
            ..GpfdistConfig::default()
        },
    };
    let engine =
        Engine::start(&EngineConfig { shards: config.shards, pin: config.pin_shards, gpfdist: Some(gpfdist) })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("control")
        .build()
        .context("cannot start the control plane's runtime")?;
    let engine = runtime.block_on(serve(config, engine))?;
    if let Some(engine) = engine {
        engine.shutdown();
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}

async fn serve(config: ServerConfig, engine: Engine) -> anyhow::Result<Option<Engine>> {
    let server = ServerContext {
        gpfdist_ports: engine.gpfdist_addresses().iter().map(|a| a.port()).collect(),
        advertise_host: config.gpfdist.advertise_host.clone(),
        reuse_tables: config.gpfdist.reuse_tables,
        batch_max_bytes: config.batch_max_bytes,
        fetch_queue_max_bytes: config.fetch_queue_max_bytes,
        native_fetch: config.kafka_fetch == flowserver_control::config::KafkaFetch::Native,
        shards: config.shards,
    };
    let registry = Registry::open(config.state_dir.clone(), engine, server)?;
    let listener = tokio::net::TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc))?;
    let address = listener.local_addr()?;
    // Both reflection versions: older grpcurl and Python's grpcio-reflection speak only v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flowserver_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flowserver_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("cannot build the reflection service (v1alpha)")?;
    if let Some(prometheus) = config.prometheus.clone() {
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(prometheus, registry).await {
                tracing::error!(%error, "metrics endpoint stopped");
            }
        });
    }
    registry.resume().await;
    tracing::info!(%address, shards = config.shards, state_dir = %config.state_dir.display(), "flowserver ready");

    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down: stopping jobs");
    };
    // The guard refuses an over-size message at its prefix; tonic's own
    // limit (OUT_OF_RANGE) is the same and so never reached first.
    let flow_server =
        FlowServerServer::new(Service::new(registry.clone())).max_decoding_message_size(config.max_request_bytes);
    tonic::transport::Server::builder()
        .layer(rpc_guard::GuardLayer::new(config.max_request_bytes))
        .add_service(flow_server)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(tokio_stream_of(listener), shutdown)
        .await
        .context("the gRPC server failed")?;
    registry.shutdown().await;
    Ok(registry.into_engine())
}

/// The listener as the stream of connections tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

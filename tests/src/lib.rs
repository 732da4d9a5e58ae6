//! Test support: the real services (found through environment variables,
//! started when missing), the real `flowserver` and `flowcli` binaries, and
//! small helpers to produce messages and read tables.
//!
//! - `FLOW_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! - `FLOW_KAFKA_BROKERS` (default `127.0.0.1:9092`); when nothing answers,
//!   `scripts/kafka-up` installs and starts tansu. That broker is shared by
//!   every test and never stopped: a test that stops a broker runs its own
//!   ([`PrivateBroker`]; `FLOW_TANSU` names the binary, else
//!   `scripts/tansu-install` finds or installs it).
//!
//! The binaries are the ones `cargo build` put next to the test executable
//! (`scripts/test` builds them first).
//!
//! Every test uses its own topic, job names and tables (see [`unique`]), so
//! tests run in parallel against one broker and one database.

pub mod segment;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub fn pg_url() -> String {
    std::env::var("FLOW_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn kafka_brokers() -> String {
    std::env::var("FLOW_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Parts of `FLOW_PG_URL` for job files.
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

pub fn pg_target() -> PgTarget {
    let url = pg_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = auth.split(':').next().unwrap_or("postgres").to_string();
    let (hostport, dbname) = rest.split_once('/').unwrap_or((rest, "test"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    PgTarget {
        host: host.to_string(),
        port: port.parse().unwrap_or(5432),
        user,
        dbname: dbname.split('?').next().unwrap_or("test").to_string(),
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        (nanos % 1_000_000_000) as u64,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `target/<profile>/<name>`, next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

fn answers(address: &str) -> bool {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// Makes sure a broker answers, starting one with `scripts/kafka-up` if needed.
pub fn ensure_kafka() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let brokers = kafka_brokers();
        let first = brokers.split(',').next().unwrap_or_default().to_string();
        if !answers(&first) {
            let status =
                Command::new(workspace_root().join("scripts/kafka-up")).status().expect("run scripts/kafka-up");
            assert!(status.success(), "scripts/kafka-up failed");
        }
    });
}

pub fn pg() -> postgres::Client {
    postgres::Client::connect(&pg_url(), postgres::NoTls).expect("connect to FLOW_PG_URL")
}

/// Runs SQL statements (setup), panicking with the statement on failure.
pub fn sql(statements: &str) {
    pg().batch_execute(statements).unwrap_or_else(|e| panic!("{statements}: {e}"));
}

pub fn query_i64(query: &str) -> i64 {
    pg().query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get(0)
}

pub fn query_strings(query: &str) -> Vec<String> {
    pg().query(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).iter().map(|r| r.get(0)).collect()
}

pub fn create_topic(topic: &str, partitions: i32) {
    ensure_kafka();
    create_topic_on(&kafka_brokers(), topic, partitions);
}

/// [`create_topic`] on the brokers `brokers`.
pub fn create_topic_on(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics(&[new_topic], &options)).expect("create topic");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("create topic {name}: {code}"));
    }
}

pub fn producer() -> BaseProducer {
    ensure_kafka();
    producer_on(&kafka_brokers())
}

/// A producer for the brokers `brokers`.
pub fn producer_on(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Produces `payloads` to `topic`, message i to partition i % partitions, and waits for delivery.
pub fn produce(topic: &str, partitions: i32, payloads: impl IntoIterator<Item = Vec<u8>>) -> usize {
    produce_with(&producer(), topic, partitions, payloads)
}

/// [`produce`] through a producer of the caller's (compression, transactions).
pub fn produce_with(
    producer: &BaseProducer,
    topic: &str,
    partitions: i32,
    payloads: impl IntoIterator<Item = Vec<u8>>,
) -> usize {
    let mut count = 0;
    for (i, payload) in payloads.into_iter().enumerate() {
        let partition = (i as i32) % partitions;
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(partition).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
        count += 1;
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    count
}

/// Produces one message with an explicit timestamp.
pub fn produce_at(topic: &str, partition: i32, payload: &[u8], timestamp_ms: i64) {
    let producer = producer();
    let record: BaseRecord<'_, (), [u8]> =
        BaseRecord::to(topic).partition(partition).payload(payload).timestamp(timestamp_ms);
    producer.send(record).map_err(|(e, _)| e).expect("produce");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A flowserver process with its own state and log directories.
pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra_config: String,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// `extra_config`: more top-level JSON members for flow_server.json, e.g. `"Shards": 2`.
    pub fn start_with(extra_config: &str) -> Server {
        ensure_kafka();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server { port: free_port(), dir, child: None, extra_config: extra_config.to_string() };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let extra = if self.extra_config.is_empty() { String::new() } else { format!(",{}", self.extra_config) };
        let has_shards = self.extra_config.contains("\"Shards\"");
        let config = format!(
            r#"{{"Host": "127.0.0.1", "Port": {port}, "StateDir": "{state}", "PinShards": false{shards}{gpfdist},
               "Logging": {{"SplitLogByJob": true, "FrontendLevel": "info", "BackendLevel": "debug"}}{extra}}}"#,
            port = self.port,
            state = self.dir.path().join("state").display(),
            shards = if has_shards { "" } else { r#", "Shards": 1"# },
            gpfdist = if self.extra_config.contains("\"Gpfdist\"") {
                ""
            } else {
                r#", "Gpfdist": {"Host": "127.0.0.1", "Port": 0, "AdvertiseHost": "127.0.0.1"}"#
            },
        );
        let config_path = self.dir.path().join("flow_server.json");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .expect("log");
        let child = Command::new(binary("flowserver"))
            .arg("-c")
            .arg(&config_path)
            .arg("-l")
            .arg(self.dir.path().join("logs"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start flowserver (run `cargo build` first)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(&format!("127.0.0.1:{}", self.port)) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("flowserver exited with {status}:\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "flowserver did not listen in time:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the server process, bytes (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("stdout.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub fn job_log(&self, job: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{job}.log"))).unwrap_or_default()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and state directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Runs flowcli against this server.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli_at(self.port, args)
    }

    /// Runs flowcli and requires success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.success, "flowcli {args:?} failed ({}):\n{}\nserver:\n{}", out.code, out.stderr, self.output());
        out.stdout
    }

    pub fn status(&self, job: &str) -> serde_json::Value {
        let text = self.ok(&["status", job, "--output", "json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status json: {e}: {text}"))
    }

    pub fn state(&self, job: &str) -> String {
        self.status(job)["state"].as_str().unwrap_or_default().to_string()
    }

    /// Polls `status` until `done` holds, failing with the last status after `timeout`.
    pub fn wait_for(
        &self,
        job: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(job);
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {job}: {status:#}\nserver:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_state(&self, job: &str, state: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(job, timeout, |s| s["state"] == state)
    }

    pub fn submit_yaml(&self, name: &str, yaml: &str, extra: &[&str]) -> CliOutput {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write job file");
        let path = path.display().to_string();
        let mut args = vec!["submit", path.as_str(), "--name", name];
        args.extend_from_slice(extra);
        self.cli(&args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub success: bool,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn cli_at(port: u16, args: &[&str]) -> CliOutput {
    let output: Output = Command::new(binary("flowcli"))
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flowcli (run `cargo build` first)");
    CliOutput {
        success: output.status.success(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A job file for the local services. `value` is the source's format block
/// (indented under `value:`), `tables` the `tables:` list items.
pub fn job_yaml(topic: &str, value: &str, control: &str, batch: &str, tables: &str, extra_database: &str) -> String {
    let pg = pg_target();
    let brokers = kafka_brokers();
    format!(
        "version: v1.0
source:
  kafka:
    brokers:
      - {brokers}
    topic: {topic}
    value:
{value}
    control:
{control}
    task:
      batch_size:
{batch}
    properties:
      session.timeout.ms: 2000
      heartbeat.interval.ms: 500
      fetch.wait.max.ms: 20
target:
  database:
    host: {host}
    port: {port}
    user: {user}
    dbname: {dbname}
{extra_database}
    tables:
{tables}
",
        host = pg.host,
        port = pg.port,
        user = pg.user,
        dbname = pg.dbname,
    )
}

/// Polls `query` (a single bigint) until it equals `expected`.
pub fn wait_count(query: &str, expected: i64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let count = query_i64(query);
        if count == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{query}: {count}, expected {expected}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `condition` until it holds, failing with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: condition not met in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a script from `scripts/` with arguments.
pub fn script(name: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(workspace_root().join("scripts").join(name))
        .args(args)
        .output()
        .with_context(|| format!("run scripts/{name}"))?;
    if !output.status.success() {
        bail!("scripts/{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A tansu broker of one test's own, on a free port, that the test may kill
/// and start again (memory storage: a restart loses every topic, group and
/// committed offset, as a broker whose disk was wiped would).
pub struct PrivateBroker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = PrivateBroker { port: free_port(), dir, child: None };
        broker.spawn();
        broker
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers` and job files.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("broker log");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(&self.address()) {
            assert!(Instant::now() < deadline, "tansu did not listen on {} in time", self.address());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the broker is gone at once, with everything it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tansu binary: `FLOW_TANSU`, else what `scripts/tansu-install` finds or installs.
pub fn tansu_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let path = script("tansu-install", &[]).expect("scripts/tansu-install");
            PathBuf::from(path.trim())
        })
        .clone()
}

/// Offsets the consumer group `group` committed for `topic` (-1 where none).
pub fn group_committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    group_committed_on(&kafka_brokers(), group, topic, partitions)
}

/// [`group_committed`] on the brokers `brokers`.
pub fn group_committed_on(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Sum of the offsets stored in `flow_offsets` for a job.
pub fn stored_offsets(job: &str, topic: &str) -> Vec<(i32, i64)> {
    pg().query(
        "SELECT partition, next_offset FROM public.flow_offsets WHERE job = $1 AND topic = $2 ORDER BY partition",
        &[&job, &topic],
    )
    .expect("read flow_offsets")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// A `value:` block: the whole message as one column `value` of type `kind`
/// (`json` or `jsonb`).
pub fn json_value(kind: &str) -> String {
    format!("      json:\n        column:\n          name: value\n          type: {kind}")
}

/// One `tables:` item: insert into `public.<table>`, each (column, expression)
/// pair a line of its `mapping:`.
pub fn insert_table(table: &str, mapping: &[(&str, &str)]) -> String {
    let mut item =
        format!("    - table: {table}\n      schema: public\n      mode:\n        insert: {{}}\n      mapping:");
    for (column, expression) in mapping {
        item.push_str("\n        ");
        item.push_str(column);
        item.push_str(": ");
        item.push_str(expression);
    }
    item
}

/// The mapping most tests use: `(value->>'id')::int` into `table(id int, body text)`.
pub const SIMPLE_JSON_MAPPING: [(&str, &str); 2] = [("id", "(value->>'id')::int"), ("body", "value->>'body'")];

/// The JSON job most tests use: `SIMPLE_JSON_MAPPING` into `table`.
pub fn simple_json_job(topic: &str, table: &str, consistency: &str, batch: &str, extra_database: &str) -> String {
    job_yaml(
        topic,
        &json_value("json"),
        &format!("      consistency: {consistency}"),
        batch,
        &insert_table(table, &SIMPLE_JSON_MAPPING),
        extra_database,
    )
}

pub fn id_messages(range: std::ops::Range<i64>) -> impl Iterator<Item = Vec<u8>> {
    range.map(|i| format!(r#"{{"id": {i}, "body": "message {i}"}}"#).into_bytes())
}

/// Creates `topic` unless it exists.
pub fn create_topic_if_missing(topic: &str, partitions: i32) -> Result<()> {
    ensure_kafka();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in futures_executor::block_on(admin.create_topics(&[new_topic], &options))? {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Produces string payloads round-robin over the partitions.
pub fn produce_json_strings(topic: &str, partitions: i32, payloads: impl Iterator<Item = String>) -> Result<usize> {
    create_topic_if_missing(topic, partitions)?;
    Ok(produce(topic, partitions, payloads.map(String::into_bytes)))
}

/// `FLOW_GP_URL` (e.g. `postgres://gpadmin@127.0.0.1:17000/postgres`): a
/// WarehousePG / Greenplum cluster for the tests of the segment path. These
/// machines have none by default: those tests are `#[ignore = "needs
/// FLOW_GP_URL"]`, and `scripts/test` runs them only when it is set.
pub fn gp_url() -> Option<String> {
    std::env::var("FLOW_GP_URL").ok().filter(|u| !u.is_empty())
}

/// [`gp_url`], for a test that cannot run without it.
pub fn required_gp_url() -> String {
    gp_url().expect("FLOW_GP_URL is not set: this test needs a WarehousePG / Greenplum cluster")
}

pub fn gp() -> postgres::Client {
    let url = required_gp_url();
    postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| panic!("connect to FLOW_GP_URL {url}: {e}"))
}

/// A job file like [`job_yaml`] whose target is the `FLOW_GP_URL` cluster.
pub fn gp_job_yaml(topic: &str, value: &str, control: &str, batch: &str, tables: &str, extra_database: &str) -> String {
    let url = required_gp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (auth, rest) = rest.split_once('@').unwrap_or(("gpadmin", rest));
    let user = auth.split(':').next().unwrap_or("gpadmin");
    let (hostport, dbname) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let pg = pg_target();
    job_yaml(topic, value, control, batch, tables, extra_database).replace(
        &format!("    host: {}\n    port: {}\n    user: {}\n    dbname: {}\n", pg.host, pg.port, pg.user, pg.dbname),
        &format!("    host: {host}\n    port: {port}\n    user: {user}\n    dbname: {dbname}\n"),
    )
}

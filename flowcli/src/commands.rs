//! One function per `flowcli` verb, and the failures they report.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowserver_proto::v1::{
    JobState, JobStatus, ListRequest, MonitorRequest, RemoveRequest, StartOptions, StartRequest, StatusRequest,
    StopRequest, SubmitRequest, flow_server_client::FlowServerClient, start_options::Reset,
};
use tonic::transport::{Channel, Endpoint};

use crate::cli::{Command, Output, StartFlags, SubmitArgs};
use crate::output;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Update interval of the Monitor stream used by `--stop-at-eof`.
const WAIT_INTERVAL_MS: u32 = 1000;

pub type Client = FlowServerClient<Channel>;

/// A failure of a command: printed as one line `flowcli: <failure>`.
#[derive(Debug)]
pub enum Failure {
    /// The server could not be reached (exit 2).
    Unreachable { url: String, cause: String },
    /// The server answered with an error status (exit 1).
    Status(tonic::Status),
    /// A local file or directory could not be read (exit 2).
    Read { path: PathBuf, error: io::Error },
    /// The arguments are wrong in a way only visible at run time (exit 2).
    Usage(String),
    /// A job waited for with `--stop-at-eof` did not end in Success (exit 1).
    JobFailed(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Status(_) | Failure::JobFailed(_) => 1,
            Failure::Unreachable { .. } | Failure::Read { .. } | Failure::Usage(_) => 2,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable { url, cause } => {
                write!(f, "cannot reach flowserver at {url}: {cause}")
            }
            Failure::Status(status) if status.message().is_empty() => {
                write!(f, "{}", status.code())
            }
            Failure::Status(status) => f.write_str(&output::single_line(status.message())),
            Failure::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Failure::Usage(message) | Failure::JobFailed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Status(status)
    }
}

/// `http://HOST:PORT`, with an IPv6 literal put in brackets.
pub fn server_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// An error and its sources, joined with ": ", repeated texts left out.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Connects to the server, giving up after [`CONNECT_TIMEOUT`].
pub async fn connect(host: &str, port: u16) -> Result<Client, Failure> {
    let url = server_url(host, port);
    let unreachable = |cause: String| Failure::Unreachable { url: url.clone(), cause };
    let endpoint =
        Endpoint::from_shared(url.clone()).map_err(|e| unreachable(error_chain(&e)))?.connect_timeout(CONNECT_TIMEOUT);
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Err(_) => return Err(unreachable("timed out after 5 s".to_string())),
    };
    Ok(FlowServerClient::new(channel))
}

/// Runs one parsed command: local checks first (job files), then connects
/// to the server at `host`:`port` and makes the calls.
pub async fn run(host: &str, port: u16, command: Command) -> Result<(), Failure> {
    match command {
        Command::Submit(args) => {
            let requests = submit_requests(&args)?;
            let wait = args.start && args.flags.stop_at_eof;
            submit(&mut connect(host, port).await?, requests, wait).await
        }
        Command::Start { job, all, flags } => start(&mut connect(host, port).await?, job, all, &flags).await,
        Command::Stop { job, all } => stop(&mut connect(host, port).await?, job, all).await,
        Command::List { name_only, output } => list(&mut connect(host, port).await?, name_only, output).await,
        Command::Status { job, output } => status(&mut connect(host, port).await?, job, output).await,
        Command::Monitor { job, interval_ms, output } => {
            monitor(&mut connect(host, port).await?, job, interval_ms, output).await
        }
        Command::Remove { job } => remove(&mut connect(host, port).await?, job).await,
    }
}

/// Writes one line to stdout; a closed stdout (e.g. `| head`) is not an error.
fn say(line: impl fmt::Display) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

/// The proto options for a set of start flags.
pub fn start_options(flags: &StartFlags) -> StartOptions {
    let reset = if flags.reset.reset_to_earliest {
        Some(Reset::ResetToEarliest(true))
    } else if flags.reset.reset_to_latest {
        Some(Reset::ResetToLatest(true))
    } else {
        flags.reset.reset_to_timestamp.clone().map(Reset::ResetToTimestamp)
    };
    StartOptions { stop_at_eof: flags.stop_at_eof, reset, skip_explain: flags.skip_explain }
}

/// The job files of a directory: its `*.yaml` and `*.yml` files, by name.
pub fn job_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let read_error = |error| Failure::Read { path: dir.to_path_buf(), error };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The job name a file gets by default: its name without the extension.
pub fn default_job_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A job file's bytes as the text the server validates; bytes that are not
/// UTF-8 are refused here (a request carries text), in the server's terms.
fn job_file_text(path: &Path, bytes: Vec<u8>) -> Result<String, Failure> {
    String::from_utf8(bytes).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        let bytes = error.as_bytes();
        let before = std::str::from_utf8(bytes.get(..at).unwrap_or_default()).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        let byte = bytes.get(at).copied().unwrap_or_default();
        Failure::Usage(format!(
            "{} (line {line}): not a YAML text file: invalid UTF-8 (byte 0x{byte:02x}) at column {column}",
            path.display()
        ))
    })
}

/// Reads the job file(s) named by `submit` and builds one request per job.
pub fn submit_requests(args: &SubmitArgs) -> Result<Vec<SubmitRequest>, Failure> {
    let metadata = std::fs::metadata(&args.path).map_err(|error| Failure::Read { path: args.path.clone(), error })?;
    let files = if metadata.is_dir() {
        if args.name.is_some() {
            return Err(Failure::Usage(format!(
                "--name cannot be used when submitting a directory ({})",
                args.path.display()
            )));
        }
        let files = job_files(&args.path)?;
        if files.is_empty() {
            return Err(Failure::Usage(format!("no *.yaml or *.yml files in {}", args.path.display())));
        }
        files
    } else {
        vec![args.path.clone()]
    };

    let start_options = args.start.then(|| start_options(&args.flags));
    files
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(&file).map_err(|error| Failure::Read { path: file.clone(), error })?;
            let config = job_file_text(&file, bytes)?;
            Ok(SubmitRequest {
                name: args.name.clone().unwrap_or_else(|| default_job_name(&file)),
                config,
                file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                start: args.start,
                start_options: start_options.clone(),
            })
        })
        .collect()
}

/// Sends the submit requests in order, stopping at the first refusal; with
/// `wait`, then follows the started jobs to their end.
async fn submit(client: &mut Client, requests: Vec<SubmitRequest>, wait: bool) -> Result<(), Failure> {
    let mut started = Vec::new();
    for request in requests {
        let start = request.start;
        let requested = request.name.clone();
        let response = client.submit(request).await?.into_inner();
        let name = if response.name.is_empty() { requested } else { response.name };
        say(format_args!("submitted {name}"));
        if start {
            say(format_args!("started {name}"));
            started.push(name);
        }
    }
    if wait {
        wait_for_end(client, &started).await?;
    }
    Ok(())
}

async fn start(client: &mut Client, job: Option<String>, all: bool, flags: &StartFlags) -> Result<(), Failure> {
    let name = job.unwrap_or_default();
    let response =
        client.start(StartRequest { name: name.clone(), all, options: Some(start_options(flags)) }).await?.into_inner();
    let started = if response.started.is_empty() && !all { vec![name] } else { response.started };
    for name in &started {
        say(format_args!("started {name}"));
    }
    if flags.stop_at_eof {
        wait_for_end(client, &started).await?;
    }
    Ok(())
}

/// Follows each job until its Monitor stream ends, prints its final state,
/// and fails unless every job ended in Success.
async fn wait_for_end(client: &mut Client, names: &[String]) -> Result<(), Failure> {
    let mut first_failure = None;
    for name in names {
        let mut stream =
            client.monitor(MonitorRequest { name: name.clone(), interval_ms: WAIT_INTERVAL_MS }).await?.into_inner();
        let mut last: Option<JobStatus> = None;
        while let Some(status) = stream.message().await? {
            last = Some(status);
        }
        let Some(last) = last else {
            return Err(Failure::JobFailed(format!("the server sent no status for job \"{name}\"")));
        };
        say(output::final_line(&last));
        let failure = match JobState::try_from(last.state) {
            Ok(JobState::Success) => None,
            Ok(JobState::Error) if last.message.is_empty() => Some(format!("job \"{name}\" failed")),
            Ok(JobState::Error) => Some(format!("job \"{name}\" failed: {}", output::single_line(&last.message))),
            _ => Some(format!("job \"{name}\" ended in state {} instead of success", output::state_word(last.state))),
        };
        if first_failure.is_none() {
            first_failure = failure.map(Failure::JobFailed);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

async fn stop(client: &mut Client, job: Option<String>, all: bool) -> Result<(), Failure> {
    let name = job.unwrap_or_default();
    let response = client.stop(StopRequest { name: name.clone(), all }).await?.into_inner();
    let stopped = if response.stopped.is_empty() && !all { vec![name] } else { response.stopped };
    for name in stopped {
        say(format_args!("stopped {name}"));
    }
    Ok(())
}

async fn list(client: &mut Client, name_only: bool, format: Output) -> Result<(), Failure> {
    let jobs = client.list(ListRequest {}).await?.into_inner().jobs;
    let text = match (format, name_only) {
        (Output::Text, false) => output::list_text(&jobs),
        (Output::Text, true) => output::names_text(&jobs),
        (Output::Json, false) => output::list_json(&jobs) + "\n",
        (Output::Json, true) => output::names_json(&jobs) + "\n",
    };
    let _ = io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

async fn status(client: &mut Client, job: String, format: Output) -> Result<(), Failure> {
    let status = client.status(StatusRequest { name: job }).await?.into_inner();
    let text = match format {
        Output::Text => output::status_text(&status),
        Output::Json => output::status_json(&status) + "\n",
    };
    let _ = io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn monitor(client: &mut Client, job: String, interval_ms: u32, format: Output) -> Result<(), Failure> {
    let mut stream = client.monitor(MonitorRequest { name: job, interval_ms }).await?.into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            // A failure to install the handler disables this branch.
            Ok(()) = &mut ctrl_c => return Ok(()),
            message = stream.message() => match message? {
                Some(status) => say(match format {
                    Output::Text => output::monitor_line(now_ms(), &status),
                    Output::Json => output::status_json_line(&status),
                }),
                None => return Ok(()),
            },
        }
    }
}

async fn remove(client: &mut Client, job: String) -> Result<(), Failure> {
    client.remove(RemoveRequest { name: job.clone() }).await?;
    say(format_args!("removed {job}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ResetFlags;

    #[test]
    fn urls() {
        assert_eq!(server_url("localhost", 6060), "http://localhost:6060");
        assert_eq!(server_url("10.0.0.7", 1), "http://10.0.0.7:1");
        assert_eq!(server_url("::1", 6060), "http://[::1]:6060");
        assert_eq!(server_url("[::1]", 6060), "http://[::1]:6060");
    }

    #[test]
    fn job_files_must_be_utf8_text() {
        let path = Path::new("jobs/bad.yaml");
        assert_eq!(job_file_text(path, b"version: v1.0\n".to_vec()).ok().as_deref(), Some("version: v1.0\n"));
        let failure = job_file_text(path, b"version: v1.0\nsource:\n  k\xffafka: {}\n".to_vec()).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "jobs/bad.yaml (line 3): not a YAML text file: invalid UTF-8 (byte 0xff) at column 4"
        );
        assert_eq!(failure.exit_code(), 2);
    }

    #[test]
    fn failure_messages_and_codes() {
        let f = Failure::Status(tonic::Status::not_found("unknown job \"x\""));
        assert_eq!((f.to_string(), f.exit_code()), ("unknown job \"x\"".into(), 1));
        let f = Failure::Unreachable {
            url: "http://localhost:6060".into(),
            cause: "transport error: Connection refused".into(),
        };
        assert_eq!(
            f.to_string(),
            "cannot reach flowserver at http://localhost:6060: transport error: Connection refused"
        );
        assert_eq!(f.exit_code(), 2);
        let f = Failure::Read { path: "a.yaml".into(), error: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(f.to_string(), "cannot read a.yaml: entity not found");
        assert_eq!(f.exit_code(), 2);
        assert_eq!(Failure::JobFailed("job \"j\" failed".into()).exit_code(), 1);
    }

    #[test]
    fn options_from_flags() {
        let flags = StartFlags {
            stop_at_eof: true,
            reset: ResetFlags { reset_to_timestamp: Some("1700000000000".into()), ..ResetFlags::default() },
            skip_explain: false,
        };
        assert_eq!(
            start_options(&flags),
            StartOptions {
                stop_at_eof: true,
                reset: Some(Reset::ResetToTimestamp("1700000000000".into())),
                skip_explain: false,
            }
        );
        let flags = StartFlags {
            reset: ResetFlags { reset_to_earliest: true, ..ResetFlags::default() },
            ..StartFlags::default()
        };
        assert_eq!(start_options(&flags).reset, Some(Reset::ResetToEarliest(true)));
        assert_eq!(start_options(&StartFlags::default()).reset, None);
    }

    fn submit_args(path: &Path, name: Option<&str>, start: bool) -> SubmitArgs {
        SubmitArgs {
            path: path.to_path_buf(),
            name: name.map(str::to_string),
            start,
            flags: StartFlags { skip_explain: start, ..StartFlags::default() },
        }
    }

    #[test]
    fn directory_job_files() {
        let dir = std::env::temp_dir().join(format!("flowcli-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.yaml")).unwrap();
        for f in ["b.yml", "a.yaml", "c.json", "README", "a.b.yaml"] {
            std::fs::write(dir.join(f), format!("# {f}\n")).unwrap();
        }
        let files = job_files(&dir).unwrap();
        let names: Vec<String> = files.iter().map(|f| default_job_name(f)).collect();
        assert_eq!(names, ["a.b", "a", "b"]);

        let requests = submit_requests(&submit_args(&dir, None, true)).unwrap();
        let summary: Vec<(&str, &str, &str, bool)> =
            requests.iter().map(|r| (r.name.as_str(), r.file_name.as_str(), r.config.as_str(), r.start)).collect();
        assert_eq!(
            summary,
            [
                ("a.b", "a.b.yaml", "# a.b.yaml\n", true),
                ("a", "a.yaml", "# a.yaml\n", true),
                ("b", "b.yml", "# b.yml\n", true),
            ]
        );
        assert!(
            requests
                .iter()
                .all(|r| r.start_options == Some(StartOptions { skip_explain: true, ..StartOptions::default() }))
        );

        let one = submit_requests(&submit_args(&dir.join("b.yml"), Some("x"), false)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].name.as_str(), one[0].file_name.as_str()), ("x", "b.yml"));
        assert_eq!(one[0].start_options, None);
        let one = submit_requests(&submit_args(&dir.join("a.yaml"), None, false)).unwrap();
        assert_eq!(one[0].name, "a");

        let err = submit_requests(&submit_args(&dir, Some("x"), false)).unwrap_err();
        assert!(matches!(err, Failure::Usage(_)), "{err}");
        assert_eq!(err.exit_code(), 2);
        let err = submit_requests(&submit_args(&dir.join("sub.yaml"), None, false)).unwrap_err();
        assert_eq!(err.to_string(), format!("no *.yaml or *.yml files in {}", dir.join("sub.yaml").display()));

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            job_files(&dir),
            Err(Failure::Read { ref path, .. }) if *path == dir
        ));
        let err = submit_requests(&submit_args(&dir.join("a.yaml"), None, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read {}: No such file or directory (os error 2)", dir.join("a.yaml").display())
        );
        assert_eq!(err.exit_code(), 2);
    }
}

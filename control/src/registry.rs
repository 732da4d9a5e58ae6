//! The job registry: every submitted job, its state, and its files in
//! `StateDir` so jobs survive a restart of flowserver.
//!
//! States: Submitted → (start) → Running → Stopped | Success | Error, and
//! back to Running on the next start. The registry lock is never held across
//! a start check, so starting a slow job does not block other calls.
//! A job that was Running when flowserver went down is started again when it
//! comes back, and resumes from the offsets stored in the database.
//!
//! A job file is validated off the tokio workers (`spawn_blocking`) and
//! outside the registry lock: a submit of a big file never holds up another
//! call.
//!
//! `StateDir/jobs/<job>.json` holds the job file as submitted, database
//! password included: the `jobs` directory is 0700 and every file in it 0600,
//! set when it is created (a file is never readable by others, not even
//! between its creation and a chmod), and tightened at open when an older
//! version left them looser.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowserver_engine::runtime::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use crate::error::ControlError;
use crate::job::{JobRuntime, RunEnd, RunningJob, ServerContext, StartOptions};
use crate::jobspec::{self, JobConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Submitted,
    Running,
    Stopped,
    Success,
    Error,
}

impl JobState {
    pub fn word(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Running => "running",
            JobState::Stopped => "stopped",
            JobState::Success => "success",
            JobState::Error => "error",
        }
    }
}

/// What is kept on disk for a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    name: String,
    file_name: String,
    /// The job file exactly as submitted.
    config: String,
    state: JobState,
    message: String,
    options: StartOptions,
}

struct JobEntry {
    record: JobRecord,
    config: JobConfig,
    running: Option<RunningJob>,
    /// The last run's runtime, for its counters after it ended.
    last_run: Option<Arc<JobRuntime>>,
    starting: bool,
    runs: u64,
    state: watch::Sender<JobState>,
}

/// A consistent view of one job for status calls.
pub struct JobView {
    pub name: String,
    pub state: JobState,
    pub message: String,
    pub config: JobConfig,
    pub runtime: Option<Arc<JobRuntime>>,
    pub state_changes: watch::Receiver<JobState>,
}

pub struct Registry {
    jobs: Mutex<BTreeMap<String, JobEntry>>,
    engine: Engine,
    server: ServerContext,
    dir: PathBuf,
}

impl Registry {
    /// Loads the jobs kept in `state_dir`; call [`Registry::resume`] next.
    pub fn open(state_dir: PathBuf, engine: Engine, server: ServerContext) -> Result<Arc<Registry>, ControlError> {
        let dir = state_dir.join("jobs");
        let persist = |path: &Path, e: std::io::Error| ControlError::Persist(format!("{}: {e}", path.display()));
        // Directories created here are 0700 from the start; an existing
        // StateDir is left as it is (it may be shared), `jobs` is ours.
        std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(&dir).map_err(|e| persist(&dir, e))?;
        restrict(&dir, PRIVATE_DIR).map_err(|e| persist(&dir, e))?;
        let mut jobs = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| persist(&dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                restrict(&path, PRIVATE_FILE).map_err(|e| persist(&path, e))?;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record: JobRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot read a kept job; skipping it");
                    continue;
                }
            };
            let config = match jobspec::parse_job_file(&record.file_name, &record.config) {
                Ok(config) => config,
                Err(error) => {
                    tracing::error!(job = %record.name, %error, "a kept job no longer validates; skipping it");
                    continue;
                }
            };
            let (state, _) = watch::channel(record.state);
            jobs.insert(
                record.name.clone(),
                JobEntry { record, config, running: None, last_run: None, starting: false, runs: 0, state },
            );
        }
        Ok(Arc::new(Registry { jobs: Mutex::new(jobs), engine, server, dir }))
    }

    /// Starts again every job that was Running when flowserver stopped.
    pub async fn resume(self: &Arc<Self>) {
        let names: Vec<(String, StartOptions)> = {
            let jobs = self.jobs.lock().await;
            jobs.values()
                .filter(|e| e.record.state == JobState::Running)
                .map(|e| (e.record.name.clone(), e.record.options.clone()))
                .collect()
        };
        for (name, options) in names {
            let registry = self.clone();
            tokio::spawn(async move {
                tracing::info!(job = %name, "resuming a job that was running");
                if let Err(error) = registry.start_inner(&name, options, true).await {
                    tracing::error!(job = %name, %error, "cannot resume the job");
                    registry.set_final(&name, None, JobState::Error, error.to_string()).await;
                }
            });
        }
    }

    pub async fn submit(self: &Arc<Self>, name: &str, file_name: &str, text: &str) -> Result<String, ControlError> {
        let name = if name.is_empty() { default_name(file_name) } else { name.to_owned() };
        validate_name(&name)?;
        tracing::debug!(job = %name, file = %file_name, bytes = text.len(), "validating the job file");
        let (file, text) = (file_name.to_owned(), text.to_owned());
        let (config, text) =
            tokio::task::spawn_blocking(move || jobspec::parse_job_file(&file, &text).map(|config| (config, text)))
                .await
                .map_err(|e| {
                    ControlError::Internal(format!("the validation of {file_name} ended unexpectedly: {e}"))
                })??;
        let mut jobs = self.jobs.lock().await;
        if jobs.contains_key(&name) {
            return Err(ControlError::JobExists(name));
        }
        let record = JobRecord {
            name: name.clone(),
            file_name: file_name.to_owned(),
            config: text,
            state: JobState::Submitted,
            message: String::new(),
            options: StartOptions::default(),
        };
        self.save(&record)?;
        let (state, _) = watch::channel(JobState::Submitted);
        jobs.insert(
            name.clone(),
            JobEntry { record, config, running: None, last_run: None, starting: false, runs: 0, state },
        );
        tracing::info!(job = %name, "submitted");
        Ok(name)
    }

    pub async fn start(self: &Arc<Self>, name: &str, options: StartOptions) -> Result<(), ControlError> {
        self.start_inner(name, options, false).await
    }

    /// Starts every job that is not running; returns the started names and the failures.
    pub async fn start_all(self: &Arc<Self>, options: StartOptions) -> (Vec<String>, Vec<String>) {
        let names: Vec<String> = {
            let jobs = self.jobs.lock().await;
            jobs.values().filter(|e| e.running.is_none() && !e.starting).map(|e| e.record.name.clone()).collect()
        };
        let mut started = Vec::new();
        let mut failed = Vec::new();
        for name in names {
            match self.start(&name, options.clone()).await {
                Ok(()) => started.push(name),
                Err(error) => failed.push(format!("{name}: {error}")),
            }
        }
        (started, failed)
    }

    async fn start_inner(
        self: &Arc<Self>,
        name: &str,
        options: StartOptions,
        resuming: bool,
    ) -> Result<(), ControlError> {
        let config = {
            let mut jobs = self.jobs.lock().await;
            let entry = jobs.get_mut(name).ok_or_else(|| ControlError::UnknownJob(name.to_owned()))?;
            if entry.starting {
                return Err(ControlError::WrongState {
                    job: name.into(),
                    state: "starting",
                    hint: "wait for the start to finish",
                });
            }
            if entry.running.is_some() {
                return Err(ControlError::WrongState { job: name.into(), state: "running", hint: "stop it first" });
            }
            if entry.record.state == JobState::Running && !resuming {
                return Err(ControlError::WrongState { job: name.into(), state: "running", hint: "stop it first" });
            }
            entry.starting = true;
            entry.config.clone()
        };
        let prepared = JobRuntime::prepare(name, config, &options, &self.server).await;
        let mut jobs = self.jobs.lock().await;
        let Some(entry) = jobs.get_mut(name) else {
            return Err(ControlError::UnknownJob(name.to_owned())); // removed while starting
        };
        entry.starting = false;
        let runtime = prepared?;
        let running = RunningJob::launch(runtime, &self.engine, &options, &self.server).await?;
        let runtime = running.runtime.clone();
        let mut running = running;
        let ended = running.ended.take();
        entry.running = Some(running);
        entry.last_run = Some(runtime);
        entry.runs += 1;
        let run = entry.runs;
        entry.record.state = JobState::Running;
        entry.record.message.clear();
        entry.record.options = StartOptions { reset: None, ..options };
        let _ = entry.state.send(JobState::Running);
        self.save(&entry.record)?;
        drop(jobs);
        tracing::info!(job = %name, "started");

        let registry = self.clone();
        let name = name.to_owned();
        if let Some(ended) = ended {
            tokio::spawn(async move {
                let end = ended.await.unwrap_or(RunEnd::Error("the job's supervisor ended unexpectedly".into()));
                let (state, message) = match end {
                    RunEnd::Stopped => (JobState::Stopped, String::new()),
                    RunEnd::Success => (JobState::Success, String::new()),
                    RunEnd::Error(reason) => (JobState::Error, reason),
                };
                registry.set_final(&name, Some(run), state, message).await;
            });
        }
        Ok(())
    }

    /// Records how a run ended (ignored if a newer run started since).
    async fn set_final(&self, name: &str, run: Option<u64>, state: JobState, message: String) {
        let mut jobs = self.jobs.lock().await;
        let Some(entry) = jobs.get_mut(name) else { return };
        if run.is_some_and(|r| r != entry.runs) {
            return;
        }
        entry.running = None;
        entry.record.state = state;
        entry.record.message = message;
        tracing::info!(job = %name, state = state.word(), message = %entry.record.message, "job ended");
        if let Err(error) = self.save(&entry.record) {
            tracing::error!(job = %name, %error, "cannot save the job's state");
        }
        let _ = entry.state.send(state);
    }

    /// Stops a running job and waits until its last batch is loaded.
    pub async fn stop(&self, name: &str) -> Result<(), ControlError> {
        let mut changes = {
            let mut jobs = self.jobs.lock().await;
            let entry = jobs.get_mut(name).ok_or_else(|| ControlError::UnknownJob(name.to_owned()))?;
            let Some(running) = entry.running.as_mut() else {
                return Err(ControlError::WrongState {
                    job: name.into(),
                    state: entry.record.state.word(),
                    hint: "only a running job can be stopped",
                });
            };
            running.request_stop();
            entry.state.subscribe()
        };
        let _ = changes.wait_for(|state| *state != JobState::Running).await;
        Ok(())
    }

    pub async fn stop_all(&self) -> Vec<String> {
        let names: Vec<String> = {
            let jobs = self.jobs.lock().await;
            jobs.values().filter(|e| e.running.is_some()).map(|e| e.record.name.clone()).collect()
        };
        let mut stopped = Vec::new();
        for name in names {
            if self.stop(&name).await.is_ok() {
                stopped.push(name);
            }
        }
        stopped
    }

    /// Stops the job if it runs, forgets it and deletes its consumer group.
    pub async fn remove(&self, name: &str) -> Result<(), ControlError> {
        let running = {
            let jobs = self.jobs.lock().await;
            let entry = jobs.get(name).ok_or_else(|| ControlError::UnknownJob(name.to_owned()))?;
            if entry.starting {
                return Err(ControlError::WrongState {
                    job: name.into(),
                    state: "starting",
                    hint: "wait for the start to finish",
                });
            }
            entry.running.is_some()
        };
        if running {
            self.stop(name).await?;
        }
        let entry = self.jobs.lock().await.remove(name);
        let path = self.record_path(name);
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(ControlError::Persist(format!("{}: {error}", path.display())));
        }
        if let Some(entry) = entry {
            let source = &entry.config.source;
            let brokers = source.brokers.join(",");
            let properties = source.properties.clone();
            let group = properties
                .iter()
                .find(|(k, _)| k == "group.id")
                .map_or_else(|| format!("flowserver.{name}"), |(_, v)| v.clone());
            let job = name.to_owned();
            tokio::spawn(async move {
                let result = crate::kafka_admin::delete_group(&brokers, &properties, &group).await;
                match result {
                    Ok(()) => tracing::info!(job = %job, %group, "consumer group deleted"),
                    Err(error) => tracing::info!(job = %job, %group, %error, "consumer group not deleted"),
                }
            });
        }
        tracing::info!(job = %name, "removed");
        Ok(())
    }

    pub async fn view(&self, name: &str) -> Result<JobView, ControlError> {
        let jobs = self.jobs.lock().await;
        let entry = jobs.get(name).ok_or_else(|| ControlError::UnknownJob(name.to_owned()))?;
        Ok(view_of(entry))
    }

    pub async fn views(&self) -> Vec<JobView> {
        self.jobs.lock().await.values().map(view_of).collect()
    }

    /// Stops every job for a shutdown, keeping their Running state on disk so
    /// they are resumed on the next start.
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        {
            let mut jobs = self.jobs.lock().await;
            for entry in jobs.values_mut() {
                if let Some(running) = entry.running.as_mut() {
                    running.request_stop();
                    waits.push((entry.record.name.clone(), entry.state.subscribe()));
                }
            }
        }
        for (name, mut changes) in waits {
            let _ = changes.wait_for(|state| *state != JobState::Running).await;
            // The run ended because of the shutdown: keep it Running on disk.
            let mut jobs = self.jobs.lock().await;
            if let Some(entry) = jobs.get_mut(&name)
                && entry.record.state == JobState::Stopped
            {
                entry.record.state = JobState::Running;
                let _ = self.save(&entry.record);
            }
        }
    }

    pub fn into_engine(self: Arc<Self>) -> Option<Engine> {
        Arc::into_inner(self).map(|registry| registry.engine)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Writes the record to a new 0600 file and renames it over the old one.
    fn save(&self, record: &JobRecord) -> Result<(), ControlError> {
        let path = self.record_path(&record.name);
        let temporary = self.dir.join(format!(".{}.json.tmp", record.name));
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| ControlError::Persist(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            // A leftover of a crash may have other permissions: `mode` applies only to a new file.
            match std::fs::remove_file(&temporary) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&temporary)?;
            file.write_all(&bytes)?;
            drop(file);
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| ControlError::Persist(format!("{}: {e}", path.display())))
    }
}

/// `StateDir/jobs`: its owner only.
const PRIVATE_DIR: u32 = 0o700;
/// The files in it: read and written by their owner only.
const PRIVATE_FILE: u32 = 0o600;

/// Takes from `path` every permission bit beyond `mode`.
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
    }
    Ok(())
}

fn view_of(entry: &JobEntry) -> JobView {
    JobView {
        name: entry.record.name.clone(),
        state: entry.record.state,
        message: entry.record.message.clone(),
        config: entry.config.clone(),
        runtime: entry.last_run.clone(),
        state_changes: entry.state.subscribe(),
    }
}

/// The file name without directory and extension, as FlowServer names jobs.
fn default_name(file_name: &str) -> String {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => base.to_owned(),
    }
}

fn validate_name(name: &str) -> Result<(), ControlError> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ControlError::InvalidRequest(format!(
            "invalid job name {name:?}: use 1 to 100 letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names() {
        assert_eq!(default_name("jobs/orders.yaml"), "orders");
        assert_eq!(default_name("orders"), "orders");
        assert!(validate_name("orders_2026.v1").is_ok());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
    }
}

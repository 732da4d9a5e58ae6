//! The control plane's error type: every failure a gRPC call can report, each
//! mapped once to an [`ErrorKind`] (and so to one gRPC code).

use flowserver_proto::{ErrorKind, HasErrorKind};

use crate::db::DbError;
use crate::jobspec::JobFileError;
use crate::kafka_admin::KafkaAdminError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    InvalidJobFile(#[from] JobFileError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    #[error("job {0:?} already exists; remove it first or submit with another --name")]
    JobExists(String),
    #[error("job {job:?} is {state}; {hint}")]
    WrongState { job: String, state: &'static str, hint: &'static str },
    /// A start check failed: the target or the source does not fit the job.
    #[error("{0}")]
    StartCheck(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot save the job state: {0}")]
    Persist(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ControlError {
    pub fn database(error: DbError) -> ControlError {
        match error {
            DbError::Connect { .. } => ControlError::Unavailable(error.to_string()),
            DbError::Query { .. } => ControlError::StartCheck(error.to_string()),
        }
    }

    pub fn kafka(error: KafkaAdminError) -> ControlError {
        match error {
            KafkaAdminError::NoTopic { .. } => ControlError::StartCheck(error.to_string()),
            _ => ControlError::Unavailable(error.to_string()),
        }
    }
}

impl HasErrorKind for ControlError {
    fn kind(&self) -> ErrorKind {
        match self {
            ControlError::InvalidJobFile(_) | ControlError::InvalidRequest(_) => ErrorKind::InvalidArgument,
            ControlError::UnknownJob(_) => ErrorKind::NotFound,
            ControlError::JobExists(_) => ErrorKind::AlreadyExists,
            ControlError::WrongState { .. } | ControlError::StartCheck(_) => ErrorKind::FailedPrecondition,
            ControlError::Unavailable(_) => ErrorKind::Unavailable,
            ControlError::Persist(_) | ControlError::Internal(_) => ErrorKind::Internal,
        }
    }
}

//! The `flowserver.v1` gRPC API shared by `flowserver` (server side) and
//! `flowcli` (client side), and the one place where error kinds become gRPC
//! status codes.
//!
//! Library crates classify their errors with [`ErrorKind`]; the control plane
//! turns them into a [`tonic::Status`] with [`ErrorKind::status`]. No other
//! code chooses a gRPC code.

#![allow(clippy::derive_partial_eq_without_eq)]

pub mod codec;

/// Generated messages, client and server of `flowserver.v1`.
pub mod v1 {
    tonic::include_proto!("flowserver.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flowserver_descriptor.bin"));
}

/// What kind of failure an error is, as far as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or the job file is wrong; resending it unchanged fails again.
    InvalidArgument,
    /// The named job does not exist.
    NotFound,
    /// A job with that name exists already.
    AlreadyExists,
    /// The job's state, or the target database, forbids the call right now.
    FailedPrecondition,
    /// A source, the database or a shard could not be reached.
    Unavailable,
    /// A bug or an unexpected failure inside flowserver.
    Internal,
}

impl ErrorKind {
    /// The gRPC code for this kind.
    pub fn code(self) -> tonic::Code {
        match self {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// A status of this kind carrying `message`.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.code(), message)
    }
}

/// Implemented by every error that crosses the gRPC boundary.
pub trait HasErrorKind {
    fn kind(&self) -> ErrorKind;
}

/// Converts any classified error into a status, with its display text as the message.
pub fn to_status<E: HasErrorKind + std::fmt::Display>(error: &E) -> tonic::Status {
    error.kind().status(error.to_string())
}

/// The largest request message a server accepts unless configured otherwise
/// (16 MiB: job files are far smaller, and a larger message is buffered whole
/// before it can be judged).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;

/// Failures of a call as a whole, before or around its handler: the request
/// cannot be read, or the handler failed in a way it could not report.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The message does not decode; prost's text names the field.
    #[error("invalid request: {0}")]
    Undecodable(prost::DecodeError),
    /// The message is larger than the server accepts.
    #[error(
        "request message of {size} bytes exceeds the server's limit of {limit} bytes (MaxRequestBytes in flow_server.json)"
    )]
    TooLarge { size: u64, limit: usize },
    /// The handler of `method` panicked: a bug in flowserver.
    #[error("internal error in {method}: {message}; this is a bug, the server log has its location")]
    Panicked { method: String, message: String },
}

impl HasErrorKind for RequestError {
    fn kind(&self) -> ErrorKind {
        match self {
            RequestError::Undecodable(_) | RequestError::TooLarge { .. } => ErrorKind::InvalidArgument,
            RequestError::Panicked { .. } => ErrorKind::Internal,
        }
    }
}

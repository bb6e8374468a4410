//! Why an instance could not be had. The gateway turns each into a 503 (or a 400 for a bad key)
//! with `Retry-After` and a JSON body.

use std::time::Duration;
use valet_core::{InstanceState, KeyError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    /// The key from the request cannot be used (too long, empty, control characters).
    #[error("{0}")]
    BadKey(#[from] KeyError),
    /// `max_instances` live instances already.
    #[error("class {class} already runs its maximum of {max} instances")]
    ClassFull { class: String, max: u32 },
    /// `max_waiting` requests already wait for this instance.
    #[error("too many requests are waiting for this instance to start")]
    QueueFull { state: InstanceState },
    /// It failed to start or keeps crashing; a restart is pending or needs a new request.
    #[error("{message}")]
    Unavailable {
        state: InstanceState,
        message: String,
        retry_after: Duration,
        /// What clients may be told of the last start failure (see `Status::public_reason`).
        public_reason: Option<String>,
    },
    /// It did not become ready within the readiness timeout.
    #[error("instance did not become ready within {timeout:?}")]
    StartTimeout {
        state: InstanceState,
        timeout: Duration,
    },
    /// The client caused `server.cold_starts_per_client` starts in the current window.
    #[error("too many instance starts from this client; retry later")]
    TooManyStarts { retry_after: Duration },
    /// valet is stopping.
    #[error("valet is shutting down")]
    ShuttingDown,
}

impl AcquireError {
    /// Short machine-readable name for the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey(_) => "bad_instance_key",
            Self::ClassFull { .. } => "max_instances_reached",
            Self::QueueFull { .. } => "start_queue_full",
            Self::Unavailable { .. } => "instance_unavailable",
            Self::StartTimeout { .. } => "start_timeout",
            Self::TooManyStarts { .. } => "too_many_starts",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// The instance's state when this happened.
    pub fn state(&self) -> InstanceState {
        match self {
            Self::QueueFull { state }
            | Self::Unavailable { state, .. }
            | Self::StartTimeout { state, .. } => *state,
            Self::BadKey(_)
            | Self::ClassFull { .. }
            | Self::TooManyStarts { .. }
            | Self::ShuttingDown => InstanceState::Stopped,
        }
    }

    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Unavailable { retry_after, .. } | Self::TooManyStarts { retry_after } => {
                *retry_after
            }
            Self::StartTimeout { .. } => Duration::from_secs(5),
            _ => Duration::from_secs(1),
        }
    }

    /// What a client may be told. The detail of a failure (a driver error, a probe error) can
    /// name the command's path or other internals: it stays in the instance's status and the
    /// log, and clients get only what kind of failure it was.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable {
                public_reason: Some(reason),
                ..
            } => reason.clone(),
            Self::Unavailable {
                state: InstanceState::Backoff,
                ..
            } => "the instance keeps failing to start or crashing; a restart is pending".into(),
            Self::Unavailable { .. } => "the instance keeps failing to start or crashing".into(),
            other => other.to_string(),
        }
    }

    /// Whether the client is at fault (400) rather than the instance (503).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::BadKey(_))
    }
}

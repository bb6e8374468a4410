//! Engine errors as [`DriverError`]s: the engine's own answer stays in the message, and a
//! failure to reach the engine is retryable (dockerd may be restarting).

use crate::driver::DriverError;
use bollard::errors::Error;

/// An engine call failed; `context` says which.
pub fn engine(context: impl Into<String>, e: Error) -> DriverError {
    let context = context.into();
    match e {
        // The engine answered and said no: retrying the same request will not help.
        Error::DockerResponseServerError {
            status_code,
            message,
        } if (400..500).contains(&status_code) => {
            DriverError::Spec(format!("{context}: {}", message.trim()))
        }
        other => DriverError::io(context, std::io::Error::other(other)),
    }
}

/// The engine answered 404.
pub fn not_found(e: &Error) -> bool {
    matches!(
        e,
        Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The engine answered 409 (a name in use, a container already stopped).
pub fn conflict(e: &Error) -> bool {
    matches!(
        e,
        Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

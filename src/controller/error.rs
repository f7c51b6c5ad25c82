//! Reconcile errors, each with a stable category used as the Warning event reason and in logs.

use std::time::Duration;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write or read against the API server failed.
    #[error("failed to {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    /// An object could not be serialized for a write.
    #[error("failed to serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The Platform's own content cannot be turned into a workload (for example a malformed
    /// `spec.template`); waits for the user to change it.
    #[error("invalid platform spec: {0}")]
    InvalidSpec(String),
    /// The object from the cache has no namespace or name.
    #[error("object is missing {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// A stable, bounded name for the kind of failure.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 404 => "NotFound",
                kube::Error::Api(status) if status.code == 422 => "Invalid",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ApiUnavailable",
            },
            Error::Serialize { .. } => "SerializationFailed",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::MissingMetadata(_) => "InvalidObject",
        }
    }

    /// How long to wait before retrying: transient failures retry soon, permanent ones wait for
    /// a change of the object (and retry rarely in case the cause lies elsewhere).
    pub fn retry_after(&self) -> Duration {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => Duration::from_millis(200),
            Error::Kube { .. } => Duration::from_secs(2),
            Error::InvalidSpec(_) | Error::MissingMetadata(_) | Error::Serialize { .. } => {
                Duration::from_secs(300)
            }
        }
    }
}

/// Attaches the action to a kube error.
pub(crate) fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

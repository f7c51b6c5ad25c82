//! What can go wrong, and the exit code each means: 1 when the action is not possible or the
//! object is not there (as `kubectl get` of a missing object), 2 for a command line that does
//! not parse (clap's own, as kubectl's).

use platform_operator::api::problem::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotPossible(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Kube(String),
}

/// The exit code of every [`CliError`].
pub const EXIT_FAILED: u8 = 1;

impl CliError {
    /// What the API server said, without kube's debug framing.
    pub fn kube(error: kube::Error, doing: &str) -> CliError {
        match error {
            kube::Error::Api(status) => CliError::Kube(format!(
                "failed to {doing}: {} ({} {})",
                status.message, status.code, status.reason
            )),
            other => CliError::Kube(format!("failed to {doing}: {other}")),
        }
    }

    /// Why a plan could not be made, in the REST API's words (they do not depend on HTTP).
    pub fn from_plan(error: ApiError) -> CliError {
        match error {
            ApiError::UnknownPlatform { id } => {
                CliError::NotFound(format!("platform {id:?} not found"))
            }
            other => CliError::NotPossible(other.to_string()),
        }
    }
}

//! Alert routing: which channels receive which events.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Alert channels and the events that alert. Each channel receives at most a few alerts a
/// minute (the operator's per-channel rate limit); the ones over it are dropped and counted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.channels.all(c, self.channels.exists_one(d, d.name == c.name))")
        .message("channel names must be unique")
        .field_path(".channels")
)]
pub struct Alerts {
    /// Where alerts are sent.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub channels: Vec<AlertChannel>,
    /// Which events alert. Default: `Failed`, `CircuitOpen`, `ResourceExceeded`,
    /// `DependencyFailed` (add `Recovered` to hear when the platform is back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub events: Option<Vec<AlertEvent>>,
}

/// One alert destination. Its address or credentials live in a Secret, never in the spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertChannel {
    /// A name for this channel, unique in the list.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The kind of channel.
    #[serde(rename = "type")]
    pub channel_type: AlertChannelType,
    /// The Secret key holding the webhook URL (Webhook, Slack) or the recipient address (Email).
    pub secret_ref: SecretKeyRef,
}

/// Kinds of alert channel.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AlertChannelType {
    /// An HTTP POST of a JSON document to a URL.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// An email to an address.
    Email,
}

/// A key in a Secret of the platform's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Events that can raise an alert.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AlertEvent {
    /// The health check failed past its threshold.
    HealthCheckFailed,
    /// A pod was OOM-killed or exceeded its limits.
    ResourceExceeded,
    /// A dependency failed and this platform was stopped.
    DependencyFailed,
    /// The platform was restarted.
    Restarted,
    /// The platform was stopped.
    Stopped,
    /// Too many restarts: the circuit opened.
    CircuitOpen,
    /// The platform is in phase Failed.
    Failed,
    /// A platform that had failed or was stopped by a dependency's failure is Running again.
    Recovered,
}

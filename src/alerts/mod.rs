//! Alert delivery (`spec.alerts`): the supervisor calls [`Alerter::send`] when something
//! alerting happens, and never waits for, or fails because of, a channel.
//!
//! The path of an alert: route (pure: the channels whose routes subscribe to the event) →
//! rate limit per channel (in `send`, so a flapping platform never fills the queue) → a
//! bounded queue → the delivery task: the channel's Secret (cached briefly), the payload
//! (pure), one attempt with a timeout. Per channel one delivery at a time, so alerts arrive in
//! order and a broken channel holds at most one of the `concurrency` delivery slots; other
//! channels go on. Nothing is retried: a failed alert is logged and counted.

mod deliver;
mod payload;
mod route;
mod secrets;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::client::TlsParameters;
use tokio::sync::{mpsc, watch};

use crate::client::RateLimit;
use crate::crd::{AlertEvent, Alerts};
use crate::metrics::Metrics;

pub use deliver::DeliveryError;
pub use payload::{email_body, email_subject, slack as slack_payload, webhook as webhook_payload};
pub use route::{DEFAULT_EVENTS, channels_for, effective_alerts, subscribes};

use deliver::{Job, Outcomes};
use route::ChannelKey;

/// Something a platform's alert routes may want to hear about.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub namespace: String,
    pub platform: String,
    pub event: AlertEvent,
    pub severity: Severity,
    /// One line, e.g. "circuit open after 4 restarts in 600 s".
    pub summary: String,
    /// What was observed, e.g. "pod x: CrashLoopBackOff (restarts 5)".
    pub evidence: Vec<String>,
    pub time: k8s_openapi::jiff::Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    fn slack_emoji(self) -> &'static str {
        match self {
            Severity::Critical => ":red_circle:",
            Severity::Warning => ":large_orange_circle:",
            Severity::Info => ":large_blue_circle:",
        }
    }
}

/// How alerts are delivered.
#[derive(Clone)]
pub struct AlertSettings {
    /// The relay for Email channels; without it they fail (counted, logged).
    pub smtp: Option<SmtpSettings>,
    /// Alerts per channel: `qps` refill and `burst`. Over it, alerts are dropped and counted.
    pub per_channel_limit: RateLimit,
    /// One delivery's bound: Secret read, connect, send and answer.
    pub timeout: Duration,
    /// Alerts waiting for delivery; when full, new ones are dropped.
    pub queue: usize,
    /// Deliveries in flight at once (each channel has at most one).
    pub concurrency: usize,
    /// How long a Secret read is reused.
    pub secret_ttl: Duration,
    /// After `stop`, how long what is queued may still take.
    pub drain: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            smtp: None,
            // 10 at once (a cascade through a group sharing one channel), then 6 a minute.
            per_channel_limit: RateLimit {
                qps: 0.1,
                burst: 10,
            },
            timeout: Duration::from_secs(10),
            queue: 1024,
            concurrency: 8,
            secret_ttl: Duration::from_secs(30),
            drain: Duration::from_secs(5),
        }
    }
}

/// Whether the SMTP connection is upgraded with STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartTls {
    /// Refuse to send unless the relay offers STARTTLS and the certificate is valid.
    Required,
    /// Upgrade when the relay offers it.
    Opportunistic,
    /// Plain SMTP (a relay inside the cluster, or a test).
    Off,
}

/// The SMTP relay for Email channels.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: Mailbox,
    tls: SmtpTls,
    /// User and password, when the relay wants them.
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
enum SmtpTls {
    Off,
    Opportunistic(TlsParameters),
    Required(TlsParameters),
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid SMTP server {0:?}: expected host:port")]
    Server(String),
    #[error("invalid sender address {0:?}")]
    From(String),
    #[error("failed to set up TLS for the SMTP relay: {0}")]
    Tls(String),
}

impl SmtpSettings {
    /// `server` is `host:port` (port 25 when absent), `from` an address such as
    /// `platform-operator <alerts@example.com>`.
    pub fn new(server: &str, from: &str, starttls: StartTls) -> Result<Self, SettingsError> {
        let bad_server = || SettingsError::Server(server.to_string());
        let (host, port) = match server.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => {
                (host, port.parse::<u16>().map_err(|_| bad_server())?)
            }
            _ => (server, 25),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad_server());
        }
        let from: Mailbox = from
            .parse()
            .map_err(|_| SettingsError::From(from.to_string()))?;
        let parameters =
            || TlsParameters::new(host.to_string()).map_err(|e| SettingsError::Tls(e.to_string()));
        let tls = match starttls {
            StartTls::Off => SmtpTls::Off,
            StartTls::Opportunistic => SmtpTls::Opportunistic(parameters()?),
            StartTls::Required => SmtpTls::Required(parameters()?),
        };
        Ok(SmtpSettings {
            host: host.to_string(),
            port,
            from,
            tls,
            credentials: None,
        })
    }
}

/// The handle the supervisor sends alerts through; cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    queue: mpsc::Sender<Job>,
    limits: Arc<crate::api::limit::CallerLimits>,
    outcomes: Arc<Outcomes>,
}

impl Alerter {
    /// The handle and the delivery task, which runs until `stop` turns true, then delivers
    /// what is queued for at most `settings.drain`.
    pub fn new(
        client: kube::Client,
        settings: AlertSettings,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> (Alerter, impl Future<Output = ()> + Send + 'static) {
        let (queue, pending) = mpsc::channel(settings.queue.max(1));
        let outcomes = Arc::new(Outcomes::new(metrics));
        let alerter = Alerter {
            queue,
            limits: Arc::new(crate::api::limit::CallerLimits::new(
                settings.per_channel_limit,
            )),
            outcomes: outcomes.clone(),
        };
        let task = deliver::run(client, settings, outcomes, pending, stop);
        (alerter, task)
    }

    /// Queues `alert` for the channels of `routes` that subscribe to its event. Never blocks
    /// and never fails: an alert over its channel's rate limit, or finding the queue full, is
    /// dropped, logged and counted.
    pub fn send(&self, routes: &Alerts, alert: Alert) {
        let channels = channels_for(routes, alert.event);
        if channels.is_empty() {
            return;
        }
        let alert = Arc::new(alert);
        for channel in channels {
            let key = ChannelKey::new(&alert.namespace, channel);
            if self.limits.check(key.as_str()).is_err() {
                self.outcomes.rate_limited(&key, channel.channel_type);
                continue;
            }
            let job = Job {
                key,
                channel: channel.clone(),
                alert: alert.clone(),
            };
            if let Err(refused) = self.queue.try_send(job) {
                let job = match refused {
                    mpsc::error::TrySendError::Full(job) => job,
                    mpsc::error::TrySendError::Closed(job) => job,
                };
                self.outcomes
                    .dropped(&job, "the alert queue is full or closed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smtp_server_is_host_and_port_with_port_25_by_default() {
        let from = "platform-operator <alerts@example.com>";
        let relay = SmtpSettings::new("relay.mail:2525", from, StartTls::Off).expect("valid");
        assert_eq!((relay.host.as_str(), relay.port), ("relay.mail", 2525));
        assert_eq!(relay.from.email.to_string(), "alerts@example.com");
        let relay = SmtpSettings::new("relay.mail", from, StartTls::Off).expect("valid");
        assert_eq!(relay.port, 25);
        let relay = SmtpSettings::new("[::1]:25", from, StartTls::Off).expect("valid");
        assert_eq!(relay.host, "::1");
        assert!(SmtpSettings::new("relay.mail:smtp", from, StartTls::Off).is_err());
        assert!(SmtpSettings::new(":25", from, StartTls::Off).is_err());
        assert!(SmtpSettings::new("relay.mail:25", "not an address", StartTls::Off).is_err());
    }
}

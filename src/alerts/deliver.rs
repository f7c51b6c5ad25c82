//! The delivery task: takes queued alerts, delivers each with a timeout, one at a time per
//! channel and at most `concurrency` at once, and accounts for every alert (sent, failed,
//! rate limited or dropped) in the metrics and the log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::payload;
use super::route::ChannelKey;
use super::secrets::SecretCache;
use super::transport::Transports;
use super::{Alert, AlertSettings};
use crate::crd::{AlertChannel, AlertChannelType};
use crate::metrics::{AlertDeliveryLabels, Metrics};

/// How often suppressed alerts are summed up in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// One alert for one channel.
pub(super) struct Job {
    pub key: ChannelKey,
    pub channel: AlertChannel,
    pub alert: Arc<Alert>,
}

/// Why one delivery failed. Never carries a Secret's value: webhook URLs hold tokens.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("secret {namespace}/{name} not found")]
    SecretMissing { namespace: String, name: String },
    #[error("secret {namespace}/{name} has no (non-empty) key {key}")]
    KeyMissing {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("secret {name} key {key} is not UTF-8 text")]
    NotText { name: String, key: String },
    #[error("failed to read secret {namespace}/{name}: {source}")]
    SecretRead {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("the secret's value is not an http or https URL")]
    BadUrl,
    #[error("no root certificates were found, so https URLs cannot be verified")]
    NoRootCertificates,
    #[error("failed to post the alert: {0}")]
    Http(hyper_util::client::legacy::Error),
    #[error("the receiver answered {0}")]
    Status(http::StatusCode),
    #[error("no SMTP relay is configured for email channels")]
    NoSmtpRelay,
    #[error("the secret's value is not an email address")]
    BadAddress,
    #[error("failed to build the email: {0}")]
    Message(String),
    #[error("failed to send the email: {0}")]
    Smtp(lettre::transport::smtp::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl DeliveryError {
    /// A bounded name for logs and dashboards.
    pub fn category(&self) -> &'static str {
        match self {
            DeliveryError::SecretMissing { .. }
            | DeliveryError::KeyMissing { .. }
            | DeliveryError::NotText { .. } => "secret_missing",
            DeliveryError::SecretRead { .. } => "secret_read",
            DeliveryError::BadUrl | DeliveryError::BadAddress => "bad_address",
            DeliveryError::NoRootCertificates | DeliveryError::NoSmtpRelay => "not_configured",
            DeliveryError::Http(_) | DeliveryError::Smtp(_) => "transport",
            DeliveryError::Status(_) => "refused",
            DeliveryError::Message(_) => "message",
            DeliveryError::Timeout(_) => "timeout",
        }
    }
}

fn type_label(channel_type: AlertChannelType) -> &'static str {
    match channel_type {
        AlertChannelType::Webhook => "webhook",
        AlertChannelType::Slack => "slack",
        AlertChannelType::Email => "email",
    }
}

/// Where every alert's fate is recorded.
pub(super) struct Outcomes {
    metrics: Arc<Metrics>,
    /// Alerts over their channel's limit since the last summary, by channel.
    suppressed: Mutex<HashMap<ChannelKey, u64>>,
}

impl Outcomes {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Outcomes {
            metrics,
            suppressed: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, channel_type: AlertChannelType, result: &'static str) {
        self.metrics
            .alert_deliveries
            .get_or_create(&AlertDeliveryLabels {
                channel_type: type_label(channel_type),
                result,
            })
            .inc();
    }

    pub fn rate_limited(&self, key: &ChannelKey, channel_type: AlertChannelType) {
        self.count(channel_type, "rate_limited");
        let mut suppressed = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        *suppressed.entry(key.clone()).or_default() += 1;
    }

    pub fn dropped(&self, job: &Job, why: &str) {
        self.count(job.channel.channel_type, "dropped");
        tracing::warn!(
            target: "alerts",
            channel = job.key.display(),
            platform = job.alert.platform,
            event = payload::event_name(&job.alert),
            "alert dropped: {why}"
        );
    }

    fn finished(&self, job: &Job, result: Result<(), DeliveryError>) {
        let event = payload::event_name(&job.alert);
        match result {
            Ok(()) => {
                self.count(job.channel.channel_type, "sent");
                tracing::info!(
                    target: "alerts",
                    channel = job.key.display(),
                    platform = job.alert.platform,
                    event,
                    "alert sent"
                );
            }
            Err(error) => {
                self.count(job.channel.channel_type, "failed");
                tracing::warn!(
                    target: "alerts",
                    channel = job.key.display(),
                    platform = job.alert.platform,
                    event,
                    category = error.category(),
                    %error,
                    "failed to deliver an alert"
                );
            }
        }
    }

    /// One line per channel that suppressed alerts since the last summary.
    fn summarise(&self) {
        let suppressed =
            std::mem::take(&mut *self.suppressed.lock().unwrap_or_else(|p| p.into_inner()));
        for (key, count) in suppressed {
            tracing::warn!(
                target: "alerts",
                channel = key.display(),
                suppressed = count,
                "{count} alerts suppressed by the channel's rate limit"
            );
        }
    }
}

/// Delivers one job.
struct Deliverer {
    secrets: SecretCache,
    transports: Transports,
    timeout: Duration,
}

impl Deliverer {
    async fn deliver(&self, job: &Job) -> Result<(), DeliveryError> {
        let attempt = async {
            let namespace = &job.alert.namespace;
            let target = self
                .secrets
                .value(namespace, &job.channel.secret_ref)
                .await?;
            let alert = &job.alert;
            match job.channel.channel_type {
                AlertChannelType::Webhook => {
                    self.transports
                        .post_json(&target, &payload::webhook(alert))
                        .await
                }
                AlertChannelType::Slack => {
                    self.transports
                        .post_json(&target, &payload::slack(alert))
                        .await
                }
                AlertChannelType::Email => {
                    let subject = payload::email_subject(alert);
                    let body = payload::email_body(alert);
                    self.transports.mail(&target, subject, body).await
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Err(DeliveryError::Timeout(self.timeout)))
    }
}

/// Jobs waiting for their channel, and the channels delivering.
#[derive(Default)]
struct Schedule {
    waiting: HashMap<ChannelKey, VecDeque<Job>>,
    /// Channels with waiting jobs and nothing in flight, in the order they became so.
    ready: VecDeque<ChannelKey>,
    busy: HashSet<ChannelKey>,
    queued: usize,
}

impl Schedule {
    fn push(&mut self, job: Job) {
        let key = job.key.clone();
        let waiting = self.waiting.entry(key.clone()).or_default();
        if waiting.is_empty() && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
        waiting.push_back(job);
        self.queued += 1;
    }

    /// The next job whose channel is idle, marking the channel busy.
    fn next(&mut self) -> Option<Job> {
        let key = self.ready.pop_front()?;
        let waiting = self.waiting.get_mut(&key)?;
        let job = waiting.pop_front()?;
        if waiting.is_empty() {
            self.waiting.remove(&key);
        }
        self.busy.insert(key);
        self.queued -= 1;
        Some(job)
    }

    fn done(&mut self, key: ChannelKey) {
        self.busy.remove(&key);
        if self.waiting.contains_key(&key) {
            self.ready.push_back(key);
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = Job> + '_ {
        self.ready.clear();
        self.queued = 0;
        self.waiting.drain().flat_map(|(_, jobs)| jobs)
    }
}

/// The delivery task (see [`super::Alerter::new`]).
pub(super) async fn run(
    client: kube::Client,
    settings: AlertSettings,
    outcomes: Arc<Outcomes>,
    mut pending: mpsc::Receiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    let deliverer = Arc::new(Deliverer {
        secrets: SecretCache::new(client, settings.secret_ttl),
        transports: Transports::new(settings.smtp.as_ref(), settings.timeout),
        timeout: settings.timeout,
    });
    let concurrency = settings.concurrency.max(1);
    let capacity = settings.queue.max(1);
    let mut schedule = Schedule::default();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut flying: HashMap<tokio::task::Id, Arc<Job>> = HashMap::new();
    let mut summary = tokio::time::interval_at(Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    let mut open = true;
    let mut deadline: Option<Instant> = None;
    loop {
        while in_flight.len() < concurrency {
            let Some(job) = schedule.next() else { break };
            let job = Arc::new(job);
            let (deliverer, outcomes, flown) = (deliverer.clone(), outcomes.clone(), job.clone());
            let handle = in_flight.spawn(async move {
                let result = deliverer.deliver(&flown).await;
                outcomes.finished(&flown, result);
            });
            flying.insert(handle.id(), job);
        }
        if !open && schedule.queued == 0 && in_flight.is_empty() {
            break;
        }
        let drain_over = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(error) => error.id(),
                };
                if let Some(job) = flying.remove(&id) {
                    if done.is_err() {
                        outcomes.dropped(&job, "its delivery task ended abnormally");
                    }
                    schedule.done(job.key.clone());
                }
            }
            // Held back while full, so the bounded channel (and `send`'s drops) take the
            // overflow and the task's own backlog stays bounded.
            received = pending.recv(), if open && schedule.queued < capacity => match received {
                Some(job) => schedule.push(job),
                None => open = false,
            },
            _ = stop.wait_for(|stopping| *stopping), if deadline.is_none() => {
                // What is already queued is still delivered; nothing new is taken.
                pending.close();
                deadline = Some(Instant::now() + settings.drain);
            }
            _ = summary.tick() => outcomes.summarise(),
            () = drain_over => break,
        }
    }
    in_flight.abort_all();
    while let Some(done) = in_flight.join_next_with_id().await {
        // A delivery that finished as it was aborted has already been accounted for.
        if let Err(error) = done
            && let Some(job) = flying.remove(&error.id())
        {
            outcomes.dropped(&job, "the operator stopped before it was delivered");
        }
    }
    while let Ok(job) = pending.try_recv() {
        schedule.push(job);
    }
    for job in schedule.drain() {
        outcomes.dropped(&job, "the operator stopped before it was delivered");
    }
    outcomes.summarise();
}

//! Leader election: with several replicas, exactly one reconciles and writes.
//!
//! The lease is held with `kube-lease-manager` (a `coordination.k8s.io/v1` Lease, renewed
//! `grace` seconds before it expires). On its own, a holder that can no longer reach the API
//! server would go on believing it leads until its next renewal fails; so leadership is also
//! fenced by what the Lease object says: this instance leads only while the manager says so
//! *and* the Lease, as last seen through a watch, names it as holder with a renewal that has
//! not expired. The moment either stops being true, [`Leadership::is_leader`] turns false and
//! the write gate of the operator's client ([`crate::client`]) refuses every write.
//!
//! Standbys keep their caches warm (the watches run everywhere), so a new leader reconciles
//! everything from a full cache at once, and standbys serve the REST API's reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// How an instance takes part in leader election.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The Lease's name and namespace.
    pub lease_name: String,
    pub namespace: String,
    /// This instance's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a dead leader is replaced within it.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    pub renew_before: Duration,
}

impl ElectionConfig {
    /// Client-go's defaults: a 15 s lease renewed 5 s before it runs out.
    pub fn new(namespace: &str, identity: &str) -> Self {
        ElectionConfig {
            lease_name: "platform-operator".to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_before: Duration::from_secs(5),
        }
    }
}

/// The Lease as last seen.
#[derive(Debug, Clone, Default, PartialEq)]
struct LeaseView {
    holder: Option<String>,
    valid_until: Option<SystemTime>,
}

/// Whether this instance leads, shared by the reconcilers, the client's write gate and the
/// REST API.
#[derive(Debug)]
pub struct Leadership {
    /// `None`: no election, this instance always leads.
    identity: Option<String>,
    /// What the lease manager last said.
    elected: AtomicBool,
    lease: Mutex<LeaseView>,
    /// The last published answer of `is_leader`, and how many times it rose to true, for
    /// those who react to changes (a quick loss and regain must still count as a rise).
    published: watch::Sender<Published>,
    /// The election has had its first answer (for `/readyz`).
    known: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    leading: bool,
    rises: u64,
}

/// This instance's role, for `/readyz` and the REST API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub leader: bool,
    /// Whether the election has answered at least once.
    pub known: bool,
    /// The Lease's holder, as last seen (`None` without election).
    pub holder: Option<String>,
}

impl Leadership {
    /// No election: this instance always leads (one replica, tests, the sandbox).
    pub fn always() -> Arc<Self> {
        Arc::new(Leadership {
            identity: None,
            elected: AtomicBool::new(true),
            lease: Mutex::new(LeaseView::default()),
            published: watch::Sender::new(Published {
                leading: true,
                rises: 0,
            }),
            known: AtomicBool::new(true),
        })
    }

    /// Elected as `identity`; a standby until the election says otherwise.
    pub fn elected(identity: &str) -> Arc<Self> {
        Arc::new(Leadership {
            identity: Some(identity.to_string()),
            elected: AtomicBool::new(false),
            lease: Mutex::new(LeaseView::default()),
            published: watch::Sender::new(Published {
                leading: false,
                rises: 0,
            }),
            known: AtomicBool::new(false),
        })
    }

    /// Whether this instance may reconcile and write now.
    pub fn is_leader(&self) -> bool {
        let Some(identity) = &self.identity else {
            return true;
        };
        if !self.elected.load(Ordering::Acquire) {
            return false;
        }
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        lease.holder.as_deref() == Some(identity.as_str())
            && lease
                .valid_until
                .is_some_and(|until| SystemTime::now() < until)
    }

    pub fn role(&self) -> Role {
        Role {
            leader: self.is_leader(),
            known: self.known.load(Ordering::Acquire),
            holder: self
                .lease
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .holder
                .clone(),
        }
    }

    /// Fires each time this instance becomes leader (after starting as a standby, or after a
    /// lost lease was won back), so that everything is reconciled by the new leader.
    pub fn became_leader(&self) -> impl Stream<Item = ()> + Send + 'static {
        let mut changes = self.published.subscribe();
        let seen = changes.borrow_and_update().rises;
        futures::stream::unfold((changes, seen), |(mut changes, seen)| async move {
            loop {
                changes.changed().await.ok()?;
                let rises = changes.borrow_and_update().rises;
                if rises != seen {
                    return Some(((), (changes, rises)));
                }
            }
        })
    }

    fn publish(&self) {
        let now = self.is_leader();
        self.published.send_if_modified(|last| {
            if last.leading == now {
                return false;
            }
            last.leading = now;
            if now {
                last.rises += 1;
            }
            true
        });
    }

    fn set_elected(&self, elected: bool) {
        self.elected.store(elected, Ordering::Release);
        self.known.store(true, Ordering::Release);
        self.publish();
    }

    fn set_lease(&self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let valid_until = match (spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                let renewed = SystemTime::from(renewed.0);
                let seconds = u64::try_from(seconds).unwrap_or(0);
                renewed.checked_add(Duration::from_secs(seconds))
            }
            _ => None,
        };
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = LeaseView {
            holder: spec.holder_identity,
            valid_until,
        };
        self.publish();
    }
}

/// Takes part in the election until `stop` turns true, then releases the lease (so that a
/// standby takes over at once rather than after the lease expires). `client` must not be
/// behind the write gate: the lease is what the gate depends on.
pub async fn run_election(
    client: Client,
    config: ElectionConfig,
    leadership: Arc<Leadership>,
    stop: watch::Receiver<bool>,
) {
    let lease_watch = watch_lease(client.clone(), config.clone(), leadership.clone());
    let campaign = campaign(client, config.clone(), leadership.clone(), stop);
    // Expiry is a matter of time, not of events: look again every few hundred ms.
    let expiry = async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            leadership.publish();
        }
    };
    // The campaign ends on `stop`, after releasing the lease; the watch and the expiry check
    // serve it until then.
    tokio::select! {
        _ = campaign => {}
        _ = async { tokio::join!(lease_watch, expiry) } => {}
    }
    leadership.set_elected(false);
}

/// Acquires and renews the lease; on `stop`, releases it.
async fn campaign(
    client: Client,
    config: ElectionConfig,
    leadership: Arc<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.lease_duration.as_secs().max(1))
            .with_grace(config.renew_before.as_secs().max(1))
            .with_field_manager(format!("platform-operator-election-{}", config.identity))
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(error) => {
                tracing::warn!(%error, lease = config.lease_name, "cannot use the leader lease yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let (mut elected, task) = manager.watch().await;
    leadership.set_elected(*elected.borrow_and_update());
    loop {
        tokio::select! {
            changed = elected.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *elected.borrow_and_update();
                tracing::info!(identity = config.identity, leader = now, "leader election");
                leadership.set_elected(now);
            }
            _ = stop.wait_for(|stopping| *stopping) => break,
        }
    }
    leadership.set_elected(false);
    // Dropping the receiver makes the manager release the lease and end.
    drop(elected);
    if tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .is_err()
    {
        tracing::warn!("the leader lease was not released within 5 s");
    }
}

/// Follows the Lease object, for fencing and to name the leader.
async fn watch_lease(client: Client, config: ElectionConfig, leadership: Arc<Leadership>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let selector =
        watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name));
    let mut leases = watcher(api, selector)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = leases.next().await {
        match event {
            Ok(lease) => leadership.set_lease(&lease),
            Err(error) => tracing::debug!(%error, "leader lease watch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let renewed =
            Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn without_election_an_instance_always_leads() {
        assert!(Leadership::always().is_leader());
    }

    #[test]
    fn an_instance_leads_only_while_elected_and_named_by_an_unexpired_lease() {
        let leadership = Leadership::elected("a");
        assert!(!leadership.is_leader(), "a standby until elected");
        leadership.set_elected(true);
        assert!(!leadership.is_leader(), "not before the lease names it");
        leadership.set_lease(&lease("a", 1, 15));
        assert!(leadership.is_leader());
        leadership.set_lease(&lease("b", 0, 15));
        assert!(!leadership.is_leader(), "the lease names another holder");
        leadership.set_lease(&lease("a", 20, 15));
        assert!(
            !leadership.is_leader(),
            "a lease not renewed for longer than its duration no longer counts"
        );
        leadership.set_lease(&lease("a", 0, 15));
        leadership.set_elected(false);
        assert!(
            !leadership.is_leader(),
            "the manager said it lost the lease"
        );
        assert_eq!(leadership.role().holder.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn becoming_leader_fires_once_per_rise() {
        let leadership = Leadership::elected("a");
        let mut rises = Box::pin(leadership.became_leader());
        leadership.set_lease(&lease("a", 0, 15));
        leadership.set_elected(true);
        tokio::time::timeout(Duration::from_secs(1), rises.next())
            .await
            .expect("a rise")
            .expect("stream open");
        leadership.set_elected(false);
        leadership.set_elected(true);
        tokio::time::timeout(Duration::from_secs(1), rises.next())
            .await
            .expect("a second rise")
            .expect("stream open");
    }
}

//! The Platform reconcile: observe (one snapshot) → plan (pure: decide, build, status) →
//! execute (the only step that writes, then commits its bookkeeping).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use crate::crd::Platform;
use crate::graph::NodeKey;
use crate::stack::key_of;

use super::apply::{apply_owned, audit, change_finalizer, request_restart, write_status};
use super::build::SPEC_HASH_ANNOTATION;
use super::context::Context;
use super::error::Error;
use super::model::{AlertLevel, AlertNote, FinalizerChange, Observed};
use super::observe::observe;
use super::plan::{Plan, SlotChange, plan};
use crate::alerts::{Alert, Severity, effective_alerts};

/// How soon to look again while the caches are still doing their first list.
const CACHE_WAIT: Duration = Duration::from_millis(100);
/// How soon to look again when a start slot was taken by a concurrent reconcile.
const SLOT_RETRY: Duration = Duration::from_millis(200);

#[tracing::instrument(skip_all, fields(namespace = platform.namespace(), platform = platform.name_any()))]
pub async fn reconcile(platform: Arc<Platform>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !ctx.stores.synced() {
        return Ok(Requeue::requeue(CACHE_WAIT));
    }
    let key = key_of(platform.as_ref());
    let platform = ctx.own_writes.platform(&key, platform);
    let observed = observe(&ctx, &platform, &key);
    let plan = plan(&observed);
    execute(&ctx, &observed, plan).await
}

/// Carries a plan out: claims its start slot (or gives up and retries when a concurrent
/// reconcile took the last one), writes, audits, and commits the bookkeeping. A slot claimed
/// here is given back on every path that does not leave the platform starting.
async fn execute(ctx: &Context, observed: &Observed, plan: Plan) -> Result<Requeue, Error> {
    let key = &observed.key;
    let mut claim = match &plan.slot {
        SlotChange::Claim { group, limit } => {
            let starting = observed
                .group
                .as_ref()
                .map(|g| g.starting_members.clone())
                .unwrap_or_default();
            if !ctx.claim_slot(group, key, *limit, &starting) {
                return Ok(Requeue::requeue(SLOT_RETRY));
            }
            Some(SlotGuard { ctx, key })
        }
        SlotChange::Release => {
            ctx.release_slot(key);
            None
        }
        SlotChange::Keep => None,
    };

    let platform = &observed.platform;
    let mut versions = vec![platform.metadata.resource_version.clone()];
    // The object later writes are based on: the observed one, unless the finalizer write
    // replaced it (no copy on the common path).
    let mut latest = Cow::Borrowed(platform);
    if plan.finalizer == Some(FinalizerChange::Add)
        && let Some(updated) = change_finalizer(ctx, &latest, FinalizerChange::Add).await?
    {
        ctx.own_writes
            .remember_platform(key, versions.clone(), updated.clone());
        latest = Cow::Owned(updated);
        versions.push(latest.metadata.resource_version.clone());
    }
    if let Some(config_map) = &plan.config_map {
        apply_owned(ctx, config_map, "apply the ConfigMap").await?;
        if let Some(hash) = config_map.annotations().get(SPEC_HASH_ANNOTATION) {
            ctx.own_writes.remember_config_hash(
                key,
                observed.config_map_hash.clone(),
                hash.clone(),
            );
        }
    }
    if let Some(deployment) = &plan.deployment {
        let written = apply_owned(ctx, deployment, "apply the Deployment").await?;
        ctx.own_writes.remember_deployment(key, written);
        // The start is written: the slot stays held until the platform leaves Starting.
        if let Some(claim) = claim.take() {
            claim.commit();
        }
    }
    if let Some(status) = &plan.status {
        let updated = write_status(ctx, &latest, status).await?;
        ctx.own_writes
            .remember_platform(key, versions.clone(), updated);
    }
    drop(claim);
    ctx.hold_blockers(key, plan.blockers_held_since);
    for action in &plan.audit {
        audit(ctx, platform, action).await;
    }
    send_alerts(ctx, observed, &plan.alerts);
    for (dependent, request) in &plan.restart_requests {
        request_restart(ctx, dependent, request).await?;
    }
    if plan.finalizer == Some(FinalizerChange::Remove) {
        change_finalizer(ctx, &latest, FinalizerChange::Remove).await?;
        ctx.forget(key);
    }

    Ok(match plan.requeue_after {
        Some(after) => Requeue::requeue(ctx.clock.real_duration(after)),
        None => Requeue::await_change(),
    })
}

/// Routes a plan's alerts to the platform's channels (its own `alerts`, else its group's).
/// Delivery happens off the reconcile path; nothing here waits or fails.
fn send_alerts(ctx: &Context, observed: &Observed, alerts: &[AlertNote]) {
    let Some(alerter) = &ctx.alerter else {
        return;
    };
    if alerts.is_empty() {
        return;
    }
    let topology = ctx.topology();
    let defaults = topology
        .group_of(&observed.key)
        .and_then(|g| g.spec.defaults.as_ref());
    let Some(routes) = effective_alerts(&observed.platform, defaults) else {
        return;
    };
    for note in alerts {
        alerter.send(
            &routes,
            Alert {
                namespace: observed.key.namespace.clone(),
                platform: observed.key.name.clone(),
                event: note.event,
                severity: match note.level {
                    AlertLevel::Critical => Severity::Critical,
                    AlertLevel::Warning => Severity::Warning,
                    AlertLevel::Info => Severity::Info,
                },
                summary: note.summary.clone(),
                evidence: note.evidence.clone(),
                time: observed.now,
            },
        );
    }
}

/// A start slot claimed by this reconcile; given back unless the start was written.
struct SlotGuard<'a> {
    ctx: &'a Context,
    key: &'a NodeKey,
}

impl SlotGuard<'_> {
    fn commit(self) {
        std::mem::forget(self);
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.ctx.release_slot(self.key);
    }
}

/// Reconcile failures requeue after a delay that depends on the kind of failure; the Warning
/// event is published where the controller's results are consumed.
pub fn error_policy(_platform: Arc<Platform>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    Requeue::requeue(error.retry_after())
}

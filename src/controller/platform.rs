//! The Platform reconcile: observe → decide → build → apply → status.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{Phase, Platform};
use crate::stack::key_of;

use super::apply::{apply_owned, audit, change_finalizer, request_restart, write_status};
use super::build::{SPEC_HASH_ANNOTATION, build_config_map, build_deployment};
use super::context::Context;
use super::decide::decide;
use super::error::Error;
use super::model::FinalizerChange;
use super::observe::observe;
use super::status::next_status;

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
    let platform = ctx.fresh_platform(&key, platform);
    let mut versions = vec![platform.metadata.resource_version.clone()];
    let observed = observe(&ctx, &platform, &key);
    let mut decision = decide(&observed);

    if decision.starts
        && let Some(group) = &observed.group
    {
        let starting = &group.starting_members;
        if !ctx.try_take_slot(&group.key, &key, group.max_concurrent_starts, starting) {
            return Ok(Requeue::requeue(SLOT_RETRY));
        }
    }

    let mut latest = platform.clone();
    if decision.finalizer == Some(FinalizerChange::Add)
        && let Some(updated) = change_finalizer(&ctx, &latest, FinalizerChange::Add).await?
    {
        latest = Arc::new(updated);
        ctx.remember_platform(&key, versions.clone(), latest.clone());
        versions.push(latest.metadata.resource_version.clone());
    }
    if let Some(replicas) = decision.replicas {
        apply_workload(&ctx, &platform, &observed, &decision, replicas).await?;
    }
    let status = next_status(&observed, &decision);
    if platform.status.as_ref() != Some(&status) {
        let updated = Arc::new(write_status(&ctx, &latest, &status).await?);
        ctx.remember_platform(&key, versions.clone(), updated);
    }
    for action in &decision.actions {
        audit(&ctx, &platform, action).await;
    }
    if let Some(request) = status.handled_restart.as_deref() {
        for dependent in &decision.restart_dependents {
            request_restart(&ctx, dependent, request).await?;
        }
    }
    if decision.finalizer == Some(FinalizerChange::Remove) {
        change_finalizer(&ctx, &latest, FinalizerChange::Remove).await?;
        ctx.forget(&key);
    }
    if decision.phase != Phase::Starting {
        ctx.release_slot(&key);
    }

    Ok(match decision.requeue_after.take() {
        Some(after) => Requeue::requeue(ctx.clock.real_duration(after)),
        None => Requeue::await_change(),
    })
}

/// Applies the ConfigMap and the Deployment, each only when it differs from what was applied.
async fn apply_workload(
    ctx: &Context,
    platform: &Platform,
    observed: &super::model::Observed,
    decision: &super::model::Decision,
    replicas: i32,
) -> Result<(), Error> {
    if let Some(config_map) = build_config_map(platform)? {
        let live_hash = ctx
            .stores
            .configmaps
            .get(&ObjectRef::from_obj(&config_map))
            .and_then(|live| live.annotations().get(SPEC_HASH_ANNOTATION).cloned());
        if live_hash.as_ref() != config_map.annotations().get(SPEC_HASH_ANNOTATION) {
            apply_owned(ctx, &config_map, "apply the ConfigMap").await?;
        }
    }
    let restart = decision.handled_restart.clone().or_else(|| {
        platform
            .status
            .as_ref()
            .and_then(|s| s.handled_restart.clone())
    });
    let deployment = build_deployment(platform, &observed.settings, replicas, restart.as_deref())?;
    let live_hash = observed
        .deployment
        .as_ref()
        .and_then(|d| d.applied_hash.clone());
    if live_hash.as_ref() != deployment.annotations().get(SPEC_HASH_ANNOTATION) {
        apply_owned(ctx, &deployment, "apply the Deployment").await?;
    }
    Ok(())
}

/// Reconcile failures requeue after a delay that depends on the kind of failure; the Warning
/// event is published where the controller's results are consumed.
pub fn error_policy(_platform: Arc<Platform>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    Requeue::requeue(error.retry_after())
}

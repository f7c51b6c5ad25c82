//! platform-operator: runs interdependent long-running services ("platforms") on Kubernetes in
//! dependency order.
//!
//! The layout follows the architecture:
//! - [`crd`]: the custom resource types (no logic beyond defaults and validation rules);
//! - [`graph`]: pure dependency logic (validation, waves, closures, critical path);
//! - [`controller`]: the reconcilers (observe → plan (pure) → execute);
//! - [`api`]: the HTTP server: probes, metrics and the REST API for legacy callers;
//! - [`alerts`]: alert delivery (webhook, Slack, email) with routing and rate limits;
//! - [`client`]: the kube client with a client-side rate limit (QPS and burst);
//! - [`schema`]: API-server-style validation, shared by `plan` and the simulated cluster.
//!
//! The simulated cluster (`crates/sim`) and the sandbox that runs the operator against it
//! (`crates/sandbox`) are crates of their own; this crate does not depend on them.

pub mod alerts;
pub mod api;
pub mod client;
pub mod controller;
pub mod crd;
pub mod fixtures;
pub mod graph;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod schema;
pub mod stack;

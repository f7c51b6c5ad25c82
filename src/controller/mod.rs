//! The operator: a Platform controller and a PlatformGroup controller over shared reflector
//! caches.
//!
//! Every Platform reconcile is a pipeline: **observe** (read the caches: the platform, its
//! Deployment and pods, its dependencies and dependents, its group) → **decide** (pure
//! functions: replicas, phase, audited actions, timers) → **build** (pure: the desired
//! Deployment and ConfigMap) → **apply** (server-side apply, only what differs) → **status**
//! (written only when it changes). A reconcile that finds nothing to change writes nothing.
//!
//! Triggers are events, not polling: a Platform is reconciled when it, its Deployment,
//! ConfigMap or pods change, when any of its dependencies or dependents changes (that is what
//! makes startup gating and ordered shutdown immediate), and when its group changes. The only
//! timed requeues are pending timeouts (ordered shutdown) and transient errors.

mod apply;
pub mod build;
pub mod clock;
pub mod context;
pub mod decide;
mod error;
pub mod group;
pub mod health;
pub mod model;
mod observe;
mod own_writes;
pub mod plan;
mod platform;
mod report;
mod run;
pub mod status;
pub mod stopping;
mod tap;

pub use clock::{Clock, SystemClock};
pub use context::{Context, Stores, TableSizes, Topology};
pub use error::Error;
pub use run::{DEFAULT_CONCURRENCY, Operator, OperatorConfig, shutdown_signal};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "platform-operator";

//! The operator: a Platform controller and a PlatformGroup controller over shared reflector
//! caches.
//!
//! Every Platform reconcile is a pipeline: **observe** (one immutable snapshot of the caches
//! and of the operator's writes in flight: the platform, its Deployment and pods, its
//! dependencies and dependents, its group and its start slots) → **plan** (pure: decide the
//! replicas, phase, audited actions and timers, build the desired Deployment and ConfigMap,
//! derive the status; only what differs from the snapshot is written) → **execute** (claims
//! the start slot, server-side applies, writes the status, audits, commits the bookkeeping).
//! A reconcile that finds nothing to change writes nothing.
//!
//! Triggers are events, not polling: a Platform is reconciled when it, its Deployment,
//! ConfigMap or pods change, when any of its dependencies or dependents changes (that is what
//! makes startup gating and ordered shutdown immediate), and when its group changes. Timed
//! requeues are only for what is time-based: pending timeouts (ordered shutdown), transient
//! errors, caches still doing their first list (100 ms) and a start slot a concurrent
//! reconcile took first (200 ms).

mod apply;
pub mod build;
pub mod clock;
pub mod context;
pub mod decide;
mod drain;
mod error;
mod events;
pub mod group;
pub mod health;
pub mod leader;
pub mod model;
mod observe;
mod own_writes;
pub mod plan;
mod platform;
mod run;
pub mod status;
pub mod stopping;
pub mod supervise;
mod tap;
pub mod triage;
mod trim;
pub mod usage;
pub mod warnings;

pub use clock::{Clock, SystemClock};
pub use context::{Context, Stores, TableSizes, Topology};
pub use error::Error;
pub use leader::{ElectionConfig, Leadership, run_election};
pub use run::{DEFAULT_CONCURRENCY, Operator, OperatorConfig, shutdown_signal};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "platform-operator";

//! platform-operator: runs interdependent long-running services ("platforms") on Kubernetes in
//! dependency order.
//!
//! The layout follows the architecture:
//! - [`crd`]: the custom resource types (no logic beyond defaults and validation rules);
//! - [`graph`]: pure dependency logic (validation, waves, closures, critical path);
//! - [`sim`]: the simulated Kubernetes API server used by tests and `sandbox`.

pub mod crd;
pub mod fixtures;
pub mod graph;
pub mod manifest;
pub mod plan;
pub mod schema;
pub mod sim;
pub mod stack;

//! Simulated workloads (WIP).

pub mod duration;
pub mod pod_status;
pub mod pods;
pub mod quantity;
pub mod rollout;
pub mod script;
pub mod timeline;

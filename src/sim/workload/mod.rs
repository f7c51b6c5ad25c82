//! Simulated workloads (WIP).

pub mod duration;
pub mod quantity;
pub mod script;
pub mod timeline;

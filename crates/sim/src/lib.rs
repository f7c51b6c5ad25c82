//! The simulated Kubernetes cluster: an HTTP API server on 127.0.0.1 with real watch streams, and
//! simulated workloads (the parts a kubelet and the controller-manager would play).
//!
//! The API server part: [`resources`] (served types), [`store`] (objects, resourceVersions,
//! watch log, write history), [`registry`] (write semantics), [`apply`] / [`patch`] (patch
//! formats), [`gc`] (deletion controllers), [`server`] (HTTP), [`table`] (server-side
//! printing), [`faults`], [`auth`], and
//! [`harness`] (the API tests use). Custom resources are admitted through an [`admission`]
//! hook the caller provides; the simulator depends on nothing of the project it serves.

pub mod admission;
pub mod apply;
pub mod auth;
pub mod builtin;
pub mod clock;
pub mod error;
pub mod faults;
pub mod fieldset;
mod gc;
pub mod harness;
pub mod patch;
pub mod registry;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod workload;

pub use admission::{CrdAdmission, SchemaHook};
pub use auth::{AccessRule, AuthTable, UserInfo};
pub use clock::SimClock;
pub use error::{ApiError, SimError, StatusCause};
pub use faults::{Decision, FaultConfig, FaultHandle, PauseMode, TimeoutMode};
pub use harness::{ApiStatusError, ObjectRef, SimCluster, SimConfig, UsageRecorder};
pub use resources::{ResourceDef, ResourceRef, ResourceTable};
pub use store::{Store, WriteRecord, WriteVerb};

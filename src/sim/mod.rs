//! The simulated Kubernetes cluster: an HTTP API server on 127.0.0.1 with real watch streams, and
//! simulated workloads (the parts a kubelet and the controller-manager would play).

pub mod clock;
pub mod workload;

pub use clock::SimClock;

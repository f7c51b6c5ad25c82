//! The operator's clock, injected so that tests can run time faster than real time.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// A source of time for decisions and timestamps.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
    /// The real time to wait for `span` of this clock's time to pass (for requeues).
    fn real_duration(&self, span: Duration) -> Duration {
        span
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

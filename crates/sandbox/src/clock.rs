//! The simulator's clock as the operator's [`Clock`], so that the operator's timeouts and
//! timestamps follow simulated time.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use platform_operator::controller::Clock;
use pmp_sim::SimClock;

/// A [`SimClock`] the operator reads time from.
#[derive(Debug, Clone)]
pub struct OperatorClock(pub SimClock);

impl Clock for OperatorClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }

    fn real_duration(&self, span: Duration) -> Duration {
        self.0.real_duration(span)
    }
}

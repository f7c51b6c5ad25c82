//! A rate limit per caller: one token bucket each (the client's, with client-go's QPS and burst
//! meaning), so that one busy legacy caller cannot crowd out the others or the operator.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Bucket, RateLimit};

/// Callers tracked at most; beyond it, buckets that have refilled are forgotten (a full bucket
/// is the same as a new one).
const TRACKED_CALLERS: usize = 10_000;

pub struct CallerLimits {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl CallerLimits {
    pub fn new(limit: RateLimit) -> Self {
        CallerLimits {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `caller`, or says how long until one is there.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        if self.limit.qps <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED_CALLERS && !buckets.contains_key(caller) {
            let full_after = Duration::from_secs_f64(f64::from(self.limit.burst) / self.limit.qps);
            buckets.retain(|_, bucket| bucket.idle_for(now) < full_after);
        }
        buckets
            .entry(caller.to_string())
            .or_insert_with(|| Bucket::new(self.limit))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_caller_has_a_bucket_of_its_own() {
        let limits = CallerLimits::new(RateLimit { qps: 1.0, burst: 2 });
        assert!(limits.check("alice").is_ok());
        assert!(limits.check("alice").is_ok());
        let wait = limits.check("alice").expect_err("alice is over her limit");
        assert!(wait <= Duration::from_secs(1));
        assert!(limits.check("bob").is_ok(), "bob is not held back by alice");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check("alice").is_ok());
    }
}

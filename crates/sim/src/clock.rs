//! The simulator's controllable clock.
//!
//! Simulated time runs at `speed` × real time and can also be advanced by hand. Everything in the
//! simulator that is time-based (timestamps, pod delays, back-offs, grace periods) reads this clock
//! and waits with [`SimClock::sleep`], so a test can run a 60-second scenario in a fraction of a
//! second, and `sandbox` can run in real time (speed 1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A shared, cheaply cloneable handle to one simulated clock.
#[derive(Clone)]
pub struct SimClock {
    inner: Arc<Mutex<ClockState>>,
    /// Bumped whenever time jumps or the speed changes, so sleepers re-compute their deadline.
    changed: watch::Sender<u64>,
}

struct ClockState {
    /// Simulated time at the last re-anchoring.
    anchor_sim: Timestamp,
    /// Real instant of the last re-anchoring.
    anchor_real: Instant,
    speed: f64,
    generation: u64,
}

impl ClockState {
    fn now(&self) -> Timestamp {
        let real = self.anchor_real.elapsed().as_secs_f64() * self.speed;
        let elapsed = SignedDuration::try_from_secs_f64(real).unwrap_or(SignedDuration::MAX);
        self.anchor_sim
            .saturating_add(elapsed)
            .unwrap_or(self.anchor_sim)
    }

    fn reanchor(&mut self) {
        self.anchor_sim = self.now();
        self.anchor_real = Instant::now();
        self.generation += 1;
    }
}

impl SimClock {
    /// A clock starting at the current wall-clock time, running at `speed` × real time.
    /// A non-finite or non-positive speed is treated as 1.
    pub fn new(speed: f64) -> Self {
        Self::starting_at(Timestamp::now(), speed)
    }

    /// A clock starting at `start`, running at `speed` × real time.
    pub fn starting_at(start: Timestamp, speed: f64) -> Self {
        let state = ClockState {
            anchor_sim: start,
            anchor_real: Instant::now(),
            speed: sanitize_speed(speed),
            generation: 0,
        };
        let (changed, _) = watch::channel(0);
        Self {
            inner: Arc::new(Mutex::new(state)),
            changed,
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Timestamp {
        self.lock().now()
    }

    /// The current speed factor.
    pub fn speed(&self) -> f64 {
        self.lock().speed
    }

    /// Changes the speed from now on (time already passed is kept).
    pub fn set_speed(&self, speed: f64) {
        let generation = {
            let mut state = self.lock();
            state.reanchor();
            state.speed = sanitize_speed(speed);
            state.generation
        };
        self.changed.send_replace(generation);
    }

    /// Jumps simulated time forward by `by`; sleepers whose deadline passed wake up.
    pub fn advance(&self, by: Duration) {
        let generation = {
            let mut state = self.lock();
            state.reanchor();
            let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
            state.anchor_sim = state
                .anchor_sim
                .saturating_add(by)
                .unwrap_or(state.anchor_sim);
            state.generation
        };
        self.changed.send_replace(generation);
    }

    /// Waits until the simulated clock has moved on by `duration`.
    pub async fn sleep(&self, duration: Duration) {
        let deadline = self
            .now()
            .saturating_add(SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX))
            .unwrap_or(self.now());
        self.sleep_until(deadline).await;
    }

    /// Waits until simulated time reaches `deadline`.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        let mut changes = self.changed.subscribe();
        loop {
            let (now, speed) = {
                let state = self.lock();
                (state.now(), state.speed)
            };
            if now >= deadline {
                return;
            }
            let remaining_sim = deadline.duration_since(now).as_secs_f64().max(0.0);
            let remaining_real = Duration::from_secs_f64(remaining_sim / speed)
                // Round up so the loop does not spin on sub-microsecond remainders.
                + Duration::from_micros(50);
            tokio::select! {
                _ = tokio::time::sleep(remaining_real) => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Converts a simulated duration into the real time it takes at the current speed.
    pub fn real_duration(&self, simulated: Duration) -> Duration {
        Duration::from_secs_f64(simulated.as_secs_f64() / self.speed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state is plain data updated atomically under the lock, so a poisoned lock still
        // holds a consistent value.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sanitize_speed(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClock")
            .field("now", &self.now())
            .field("speed", &self.speed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advancing_wakes_a_sleeper_early() {
        let clock = SimClock::new(1.0);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(3600)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        clock.advance(Duration::from_secs(3601));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .expect("sleeper task");
    }

    #[tokio::test]
    async fn speed_scales_sleep() {
        let clock = SimClock::new(1000.0);
        let started = Instant::now();
        clock.sleep(Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn advance_moves_now_forward() {
        let clock = SimClock::new(1.0);
        let before = clock.now();
        clock.advance(Duration::from_secs(60));
        assert!(clock.now().duration_since(before).as_secs() >= 60);
    }

    #[test]
    fn bad_speed_falls_back_to_real_time() {
        assert_eq!(SimClock::new(f64::NAN).speed(), 1.0);
        assert_eq!(SimClock::new(-3.0).speed(), 1.0);
    }
}

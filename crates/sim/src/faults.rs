//! Fault injection: failing, slow, hanging and paused API server behaviour, deterministic for a
//! given seed (every decision draws from one seeded generator in request order).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::clock::SimClock;
use super::store::splitmix;

/// What happens to a request picked for a timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeoutMode {
    /// Held for `timeout_hold`, then answered `504 Timeout` (what a real apiserver's request
    /// timeout filter does).
    #[default]
    GatewayTimeout,
    /// Held for `timeout_hold`, then the connection is closed without a response.
    Drop,
}

/// What a paused server does with connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PauseMode {
    /// New connections are accepted and closed at once (the client sees a reset, as with a
    /// restarting apiserver behind a load balancer); requests on open connections hang.
    #[default]
    Refuse,
    /// Requests hang until the pause ends, then proceed.
    Hang,
}

#[derive(Clone, Debug)]
pub struct FaultConfig {
    pub seed: u64,
    /// Fraction (0..=1) of requests answered with one of `error_codes`.
    pub error_rate: f64,
    /// Codes to fail with, picked uniformly; 500, 503 and 429 by default.
    pub error_codes: Vec<u16>,
    /// Fraction (0..=1) of requests that time out.
    pub timeout_rate: f64,
    pub timeout_hold: Duration,
    pub timeout_mode: TimeoutMode,
    /// Added to every request (simulated time).
    pub latency: Duration,
    /// Watch streams are closed after this long (simulated time).
    pub close_watch_every: Option<Duration>,
    /// Only requests whose `User-Agent` starts with this are subject to random faults (so the
    /// simulated kubelet and controllers can stay healthy while the operator suffers).
    pub user_agent_prefix: Option<String>,
    /// Watch delivery latency by resource (plural, e.g. `deployments`), simulated time: every
    /// event on a watch of that resource reaches the client this much later than it happened,
    /// in order (a busy watch cache does this). Subject to `user_agent_prefix`.
    pub watch_delays: BTreeMap<String, Duration>,
    /// Requests whose path contains the string are answered with the code (every time, for
    /// every client): a persistent failure of one object or one API.
    pub fail_paths: Vec<(String, u16)>,
    /// Requests whose path contains the string are held for `timeout_hold`, then time out as
    /// `timeout_mode` says (every time, for every client): an API that hangs.
    pub hang_paths: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            error_rate: 0.0,
            error_codes: vec![500, 503, 429],
            timeout_rate: 0.0,
            timeout_hold: Duration::from_secs(60),
            timeout_mode: TimeoutMode::GatewayTimeout,
            latency: Duration::ZERO,
            close_watch_every: None,
            user_agent_prefix: None,
            watch_delays: BTreeMap::new(),
            fail_paths: Vec::new(),
            hang_paths: Vec::new(),
        }
    }
}

/// The fate of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    Fail(u16),
    Timeout(Duration, TimeoutMode),
}

struct FaultState {
    config: FaultConfig,
    rng: u64,
    gone_next: u32,
    paused_until: Option<Timestamp>,
    pause_mode: PauseMode,
}

/// Runtime control of faults; cheap to clone.
#[derive(Clone)]
pub struct FaultHandle {
    state: Arc<Mutex<FaultState>>,
    clock: SimClock,
}

impl FaultHandle {
    pub(crate) fn new(config: FaultConfig, clock: SimClock) -> Self {
        let rng = config.seed;
        Self {
            state: Arc::new(Mutex::new(FaultState {
                config,
                rng,
                gone_next: 0,
                paused_until: None,
                pause_mode: PauseMode::Refuse,
            })),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the configuration (and re-seeds).
    pub fn set(&self, config: FaultConfig) {
        let mut state = self.lock();
        state.rng = config.seed;
        state.config = config;
    }

    /// Edits the configuration in place, keeping the generator's position.
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.lock().config);
    }

    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// The fate of a request for `path` under the path faults, if one applies.
    pub(crate) fn decide_path(&self, path: &str) -> Option<Decision> {
        let state = self.lock();
        let config = &state.config;
        if let Some((_, code)) = config.fail_paths.iter().find(|(p, _)| path.contains(p)) {
            return Some(Decision::Fail(*code));
        }
        config
            .hang_paths
            .iter()
            .any(|p| path.contains(p))
            .then_some(Decision::Timeout(config.timeout_hold, config.timeout_mode))
    }

    /// How late events of `plural` reach a watch opened by `user_agent`.
    pub(crate) fn watch_delay(&self, plural: &str, user_agent: &str) -> Duration {
        let state = self.lock();
        let config = &state.config;
        let targeted = config
            .user_agent_prefix
            .as_deref()
            .is_none_or(|prefix| user_agent.starts_with(prefix));
        match config.watch_delays.get(plural) {
            Some(delay) if targeted => *delay,
            _ => Duration::ZERO,
        }
    }

    /// Clears every fault, including a pause and pending forced 410s.
    pub fn clear(&self) {
        let mut state = self.lock();
        let seed = state.config.seed;
        state.config = FaultConfig {
            seed,
            ..FaultConfig::default()
        };
        state.gone_next = 0;
        state.paused_until = None;
    }

    /// The next `count` watch requests get `410 Gone` (as an ERROR event), forcing a re-list.
    pub fn force_gone_next_watches(&self, count: u32) {
        self.lock().gone_next += count;
    }

    pub(crate) fn take_gone(&self) -> bool {
        let mut state = self.lock();
        if state.gone_next > 0 {
            state.gone_next -= 1;
            true
        } else {
            false
        }
    }

    /// Pauses the server for `duration` of simulated time.
    pub fn pause(&self, duration: Duration, mode: PauseMode) {
        let now = self.clock.now();
        let until = now
            .saturating_add(SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX))
            .unwrap_or(now);
        let mut state = self.lock();
        state.paused_until = Some(until);
        state.pause_mode = mode;
    }

    pub fn resume(&self) {
        self.lock().paused_until = None;
    }

    /// The pause in force, if any.
    pub fn paused(&self) -> Option<(Timestamp, PauseMode)> {
        let mut state = self.lock();
        match state.paused_until {
            Some(until) if until > self.clock.now() => Some((until, state.pause_mode)),
            Some(_) => {
                state.paused_until = None;
                None
            }
            None => None,
        }
    }

    pub(crate) fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Draws the fate of one request.
    pub(crate) fn decide(&self, user_agent: &str) -> (Duration, Decision) {
        let mut state = self.lock();
        let latency = state.config.latency;
        if state
            .config
            .user_agent_prefix
            .as_deref()
            .is_some_and(|p| !user_agent.starts_with(p))
        {
            return (latency, Decision::Proceed);
        }
        if state.config.error_rate <= 0.0 && state.config.timeout_rate <= 0.0 {
            return (latency, Decision::Proceed);
        }
        state.rng = splitmix(state.rng);
        let roll = (state.rng >> 11) as f64 / (1u64 << 53) as f64;
        let config = &state.config;
        let decision = if roll < config.error_rate && !config.error_codes.is_empty() {
            let index = (state.rng % config.error_codes.len() as u64) as usize;
            Decision::Fail(config.error_codes[index])
        } else if roll < config.error_rate + config.timeout_rate {
            Decision::Timeout(config.timeout_hold, config.timeout_mode)
        } else {
            Decision::Proceed
        };
        (latency, decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_decisions() {
        let config = FaultConfig {
            seed: 7,
            error_rate: 0.5,
            ..FaultConfig::default()
        };
        let draw = || {
            let handle = FaultHandle::new(config.clone(), SimClock::new(1.0));
            (0..32).map(|_| handle.decide("x").1).collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw());
        assert!(first.contains(&Decision::Proceed));
        assert!(first.iter().any(|d| matches!(d, Decision::Fail(_))));
    }
}

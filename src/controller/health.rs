//! Liveness of the controllers, for `/healthz`: a controller is unhealthy when its stream has
//! ended (a task that died does not reconcile anything again) or when it is stuck: reconciles
//! are in flight and none has finished for longer than the stuck limit. An idle controller
//! with nothing queued is healthy however long it waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The controllers whose liveness is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerKind {
    Platform,
    PlatformGroup,
}

impl ControllerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Platform => "platform",
            ControllerKind::PlatformGroup => "platformgroup",
        }
    }
}

/// Liveness of one controller.
pub struct Liveness {
    started: AtomicBool,
    ended: AtomicBool,
    in_flight: AtomicUsize,
    last_progress: Mutex<Instant>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_progress: Mutex::new(Instant::now()),
        }
    }
}

/// Marks one reconcile in flight until dropped (also when its future is cancelled).
pub struct InFlight<'a>(&'a Liveness);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.progressed();
    }
}

impl Liveness {
    /// A reconcile begins.
    pub fn begin(&self) -> InFlight<'_> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // The stuck clock starts when work arrives, not at the last reconcile before an
            // idle period.
            self.progressed();
        }
        InFlight(self)
    }

    fn progressed(&self) {
        *self.last_progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Why this controller is not live, if it is not.
    pub fn problem(&self, stuck_after: Duration, now: Instant) -> Option<String> {
        if self.ended.load(Ordering::Acquire) {
            return Some("its stream has ended".into());
        }
        if !self.started.load(Ordering::Acquire) {
            return None;
        }
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let last = *self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
        let idle_for = now.saturating_duration_since(last);
        (in_flight > 0 && idle_for > stuck_after).then(|| {
            format!(
                "stuck: {in_flight} reconciles in flight, none finished for {}s",
                idle_for.as_secs()
            )
        })
    }
}

/// Liveness of both controllers.
pub struct Health {
    pub platform: Liveness,
    pub group: Liveness,
    /// How long reconciles may be in flight without any finishing.
    pub stuck_after: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            platform: Liveness::default(),
            group: Liveness::default(),
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

/// Longer than any reconcile takes with the client's request timeouts.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(120);

impl Health {
    pub fn of(&self, kind: ControllerKind) -> &Liveness {
        match kind {
            ControllerKind::Platform => &self.platform,
            ControllerKind::PlatformGroup => &self.group,
        }
    }

    /// The problems of every controller that is not live (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        let now = Instant::now();
        [ControllerKind::Platform, ControllerKind::PlatformGroup]
            .into_iter()
            .filter_map(|kind| {
                self.of(kind)
                    .problem(self.stuck_after, now)
                    .map(|p| format!("{} controller: {p}", kind.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn an_idle_controller_is_live_however_long_it_waits() {
        let liveness = Liveness::default();
        liveness.mark_started();
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(liveness.problem(LIMIT, later), None);
    }

    #[test]
    fn a_reconcile_in_flight_without_progress_is_stuck() {
        let liveness = Liveness::default();
        liveness.mark_started();
        let guard = liveness.begin();
        assert_eq!(liveness.problem(LIMIT, Instant::now()), None);
        let later = Instant::now() + Duration::from_secs(11);
        let problem = liveness.problem(LIMIT, later).expect("stuck");
        assert!(problem.contains("1 reconciles in flight"), "{problem}");
        drop(guard);
        assert_eq!(liveness.problem(LIMIT, Instant::now()), None);
    }

    #[test]
    fn an_ended_stream_is_not_live() {
        let liveness = Liveness::default();
        liveness.mark_started();
        liveness.mark_ended();
        assert_eq!(
            liveness.problem(LIMIT, Instant::now()).as_deref(),
            Some("its stream has ended")
        );
    }

    #[test]
    fn health_names_the_controller() {
        let health = Health::default();
        health.group.mark_started();
        health.group.mark_ended();
        assert_eq!(
            health.problems(),
            vec!["platformgroup controller: its stream has ended".to_string()]
        );
    }
}

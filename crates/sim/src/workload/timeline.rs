//! The pure heart of the simulated kubelet: from a pod's script, the times that anchor its life
//! (admission, deletion) and the clock's `now`, compute its container state, readiness, what
//! happened (for Events) and when the next scripted transition is due.
//!
//! The computation replays the whole life of the pod from its admission time every time, so the
//! kubelet keeps no history of its own: everything follows from `status.startTime`, the deletion
//! timestamps and the script.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::script::{FailureKind, PodScript};

/// The first restart back-off after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// The cap of the doubling restart back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A run this long resets the back-off to its initial value (twice the cap, as the kubelet does).
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often ramping resource usage is re-reported.
pub const USAGE_TICK: Duration = Duration::from_secs(15);
/// Safety bound on the replay loop (a pod restarting every 10 s for ~115 days).
const MAX_RUNS: usize = 1_000_000;
/// Safety bound on probe failures reported in one pass.
const MAX_PROBE_HAPPENINGS: usize = 1_000;

/// The restart back-off after the `n`-th consecutive failure (0-based): 10 s doubling to 300 s.
pub fn backoff(n: u32) -> Duration {
    let factor = 1u64.checked_shl(n.min(16)).unwrap_or(u64::MAX);
    INITIAL_BACKOFF
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// `t + d`, saturating.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(t)
}

/// `to - from` as a non-negative duration.
pub fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// `t` with its sub-second part dropped (Kubernetes timestamps have second precision).
pub fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The times that anchor a pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchors {
    /// When the kubelet admitted the pod (`status.startTime`).
    pub admitted: Timestamp,
    pub stopping: Option<Stopping>,
}

/// A deletion in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping {
    /// When the deletion was requested (`deletionTimestamp - deletionGracePeriodSeconds`).
    pub requested_at: Timestamp,
    /// The end of the grace period (`deletionTimestamp`).
    pub deadline: Timestamp,
}

/// A container's state, as in `containerStatuses[].state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        /// The back-off being waited out, for `CrashLoopBackOff`.
        backoff: Option<Duration>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Termination),
}

/// A finished container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub reason: String,
    pub exit_code: i32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

/// The state of a pod's containers at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    pub last_state: Option<Termination>,
    pub restart_count: i32,
    /// A container has started at least once (the pod is `Running` rather than `Pending`).
    pub started_once: bool,
    pub ready: bool,
    /// When `ready` last changed (or the admission time).
    pub ready_changed_at: Timestamp,
    /// The next time the snapshot (or the events) will change without outside input.
    pub next_transition: Option<Timestamp>,
    /// For a pod being deleted: when the kubelet removes it.
    pub remove_at: Option<Timestamp>,
}

/// Something that happened to a pod, worth an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    Scheduled,
    Pulled,
    Created,
    Started,
    /// The container could not be created (reason).
    FailedStart(String),
    /// The container exited with code 1.
    Crashed,
    OomKilled,
    BackOff(Duration),
    ReadinessProbeFailed,
    Killing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub at: Timestamp,
    pub what: Happening,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: Timestamp,
    /// When and how the run ends (possibly after the horizon); `None` runs until stopped.
    end: Option<(Timestamp, FailureKind)>,
    /// The back-off waited after this run's failure.
    backoff: Duration,
}

impl Run {
    fn ended_by(&self, t: Timestamp) -> bool {
        self.end.is_some_and(|(end, _)| end <= t)
    }

    fn covers(&self, t: Timestamp) -> bool {
        self.start <= t && !self.ended_by(t)
    }

    fn termination(&self) -> Option<Termination> {
        let (at, kind) = self.end?;
        let (reason, exit_code) = match kind {
            FailureKind::Crash => ("Error", 1),
            FailureKind::OomKilled => ("OOMKilled", 137),
        };
        Some(Termination {
            reason: reason.to_owned(),
            exit_code,
            started_at: Some(self.start),
            finished_at: at,
        })
    }
}

/// Replays a pod's life up to `now`. Happenings are those in `(since, now]` (all up to `now` when
/// `since` is `None`).
pub fn simulate(
    script: &PodScript,
    anchors: Anchors,
    now: Timestamp,
    since: Option<Timestamp>,
) -> (Snapshot, Vec<Timed>) {
    let admitted = anchors.admitted;
    let stop_at = anchors.stopping.map(|s| s.requested_at.max(admitted));
    let horizon = stop_at.map_or(now, |s| s.min(now));
    let mut happenings = Vec::new();
    let mut emit = |at: Timestamp, what: Happening| {
        if at <= now && since.is_none_or(|s| at > s) {
            happenings.push(Timed { at, what });
        }
    };
    emit(admitted, Happening::Scheduled);

    // Container runs up to the horizon.
    let create_at = add(admitted, script.start_after);
    let mut first_failure = None;
    let mut next_start = match &script.fail_start {
        Some(reason) => {
            if create_at <= horizon {
                emit(create_at, Happening::FailedStart(reason.clone()));
            }
            first_failure = Some(create_at);
            script.recover_after.map(|r| add(create_at, r))
        }
        None => Some(create_at),
    };
    let mut runs: Vec<Run> = Vec::new();
    let mut pending_start = None;
    let mut exponent = 0u32;
    while let Some(start) = next_start.take() {
        if start > horizon || runs.len() >= MAX_RUNS {
            pending_start = Some(start);
            break;
        }
        emit(start, Happening::Pulled);
        emit(start, Happening::Created);
        emit(start, Happening::Started);
        let recovered_at = first_failure
            .zip(script.recover_after)
            .map(|(f, r)| add(f, r));
        let failure = script
            .failure()
            .map(|(after, kind)| (add(start, after), kind))
            .filter(|(at, _)| recovered_at.is_none_or(|r| *at < r));
        match failure {
            Some((at, kind)) if at <= horizon => {
                emit(
                    at,
                    match kind {
                        FailureKind::Crash => Happening::Crashed,
                        FailureKind::OomKilled => Happening::OomKilled,
                    },
                );
                first_failure.get_or_insert(at);
                if elapsed(start, at) >= BACKOFF_RESET {
                    exponent = 0;
                }
                let wait = backoff(exponent);
                exponent = exponent.saturating_add(1);
                emit(at, Happening::BackOff(wait));
                runs.push(Run {
                    start,
                    end: Some((at, kind)),
                    backoff: wait,
                });
                next_start = Some(add(at, wait));
            }
            future => runs.push(Run {
                start,
                end: future,
                backoff: Duration::ZERO,
            }),
        }
    }

    // Readiness: each run is ready from `start + ready_after` until it ends, except inside the
    // unready window and after the stop.
    let ready_from = |run: &Run| -> Option<Timestamp> {
        if script.never_ready {
            return None;
        }
        let at = add(run.start, script.ready_after);
        (!run.ended_by(at)).then_some(at)
    };
    let first_ready = runs.iter().find_map(ready_from);
    let window = first_ready.and_then(|ready| {
        let begin = add(ready, script.unready_after?);
        Some((begin, script.recover_after.map(|r| add(begin, r))))
    });
    let in_window =
        |t: Timestamp| window.is_some_and(|(begin, end)| t >= begin && end.is_none_or(|e| t < e));
    let running_at =
        |t: Timestamp| stop_at.is_none_or(|s| t < s) && runs.iter().rev().any(|run| run.covers(t));
    let ready_at = |t: Timestamp| {
        stop_at.is_none_or(|s| t < s)
            && !in_window(t)
            && runs
                .iter()
                .rev()
                .any(|run| run.covers(t) && ready_from(run).is_some_and(|r| r <= t))
    };
    let mut change_points: Vec<Timestamp> = Vec::new();
    for run in &runs {
        change_points.extend(ready_from(run));
        change_points.extend(run.end.map(|(at, _)| at));
    }
    if let Some((begin, end)) = window {
        change_points.push(begin);
        change_points.extend(end);
    }
    change_points.extend(stop_at);
    change_points.sort();
    change_points.dedup();
    let mut ready = false;
    let mut ready_changed_at = admitted;
    for &point in change_points.iter().filter(|p| **p <= now) {
        let value = ready_at(point);
        if value != ready {
            ready = value;
            ready_changed_at = point;
        }
    }

    // Readiness probe failures, every probe period inside the window while the container runs.
    let mut next_probe = None;
    if let Some((begin, end)) = window {
        let period = script.probe_period.max(Duration::from_millis(100));
        let mut tick = begin;
        if let Some(s) = since.filter(|s| *s > begin) {
            let periods = (elapsed(begin, s).as_secs_f64() / period.as_secs_f64()).floor();
            tick = add(begin, period.mul_f64(periods));
        }
        let mut emitted = 0;
        while end.is_none_or(|e| tick < e) {
            if tick > now {
                // Possibly a tick while the container is down: a harmless extra wake-up.
                next_probe = Some(tick);
                break;
            }
            if running_at(tick) && emitted < MAX_PROBE_HAPPENINGS {
                emit(tick, Happening::ReadinessProbeFailed);
                emitted += 1;
            }
            tick = add(tick, period);
        }
    }

    // The state at `now`.
    let current = runs.last().copied();
    let mut last_state = None;
    let state = match (stop_at.filter(|s| *s <= now), current) {
        (Some(stop), run) => {
            emit(stop, Happening::Killing);
            last_state = run.and_then(|r| r.termination()).or_else(|| {
                runs.len()
                    .checked_sub(2)
                    .and_then(|i| runs[i].termination())
            });
            State::Terminated(Termination {
                reason: "Completed".to_owned(),
                exit_code: 0,
                started_at: run.filter(|r| r.covers(stop)).map(|r| r.start),
                finished_at: stop,
            })
        }
        (None, Some(run)) if run.ended_by(now) => {
            last_state = run.termination();
            State::Waiting {
                reason: "CrashLoopBackOff".to_owned(),
                backoff: Some(run.backoff),
            }
        }
        (None, Some(run)) => {
            last_state = runs
                .len()
                .checked_sub(2)
                .and_then(|i| runs[i].termination());
            State::Running {
                started_at: run.start,
            }
        }
        (None, None) => State::Waiting {
            reason: match &script.fail_start {
                Some(reason) if now >= create_at => reason.clone(),
                _ => "ContainerCreating".to_owned(),
            },
            backoff: None,
        },
    };

    // The next transition.
    let remove_at = anchors.stopping.map(|s| {
        add(s.requested_at, script.stop_after)
            .min(s.deadline)
            .max(s.requested_at)
    });
    let mut candidates: Vec<Timestamp> = Vec::new();
    candidates.extend(pending_start);
    if let Some(run) = current {
        candidates.extend(run.end.map(|(at, _)| at));
        candidates.extend(ready_from(&run));
        if let State::Running { started_at } = state {
            let running_for = elapsed(started_at, now);
            let ramping = [&script.cpu, &script.memory]
                .into_iter()
                .flatten()
                .any(|usage| usage.changes_after(running_for, script.usage_ramp));
            if ramping {
                let ticks = (running_for.as_secs_f64() / USAGE_TICK.as_secs_f64()).floor() + 1.0;
                candidates.push(add(started_at, USAGE_TICK.mul_f64(ticks)));
            }
        }
    }
    if let Some((begin, end)) = window {
        candidates.push(begin);
        candidates.extend(end);
    }
    candidates.extend(next_probe);
    let mut next_transition = candidates
        .into_iter()
        .filter(|t| *t > now && stop_at.is_none_or(|s| *t < s))
        .min();
    if let Some(remove) = remove_at {
        next_transition = Some(next_transition.map_or(remove, |t| t.min(remove)));
    }
    happenings.sort_by_key(|h| h.at);

    let snapshot = Snapshot {
        state,
        last_state,
        restart_count: i32::try_from(runs.len().saturating_sub(1)).unwrap_or(i32::MAX),
        started_once: !runs.is_empty(),
        ready,
        ready_changed_at,
        next_transition,
        remove_at,
    };
    (snapshot, happenings)
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;

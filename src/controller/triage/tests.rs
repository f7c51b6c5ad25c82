use super::*;

fn key(name: &str) -> NodeKey {
    NodeKey::new("ns", name)
}

fn names(triage: &Triage) -> Vec<String> {
    std::iter::from_fn(|| triage.try_release())
        .map(|(platform, _)| {
            triage.finished(&platform);
            platform.name
        })
        .collect()
}

#[test]
fn the_most_urgent_goes_first_then_the_oldest() {
    let triage = Triage::new(8, TriageMetrics::default());
    triage.push(key("noise-1"), Urgency::Change);
    triage.push(key("oom"), Urgency::Resource);
    triage.push(key("noise-2"), Urgency::Change);
    triage.push(key("dependent"), Urgency::DependencyFailure);
    triage.push(key("unready"), Urgency::Health);
    assert_eq!(
        names(&triage),
        ["dependent", "unready", "oom", "noise-1", "noise-2"]
    );
}

#[test]
fn many_triggers_for_one_platform_are_one_entry_at_the_highest_urgency() {
    let triage = Triage::new(8, TriageMetrics::default());
    triage.push(key("a"), Urgency::Change);
    triage.push(key("b"), Urgency::Change);
    for _ in 0..1000 {
        triage.push(key("b"), Urgency::Change);
    }
    triage.push(key("b"), Urgency::Health);
    triage.push(key("b"), Urgency::Change);
    assert_eq!(triage.depth(), [0, 1, 0, 0, 0, 1]);
    assert_eq!(names(&triage), ["b", "a"]);
    assert_eq!(triage.depth(), [0; Urgency::ALL.len()]);
}

#[test]
fn no_more_than_capacity_is_handed_out_and_a_finish_makes_room() {
    let triage = Triage::new(2, TriageMetrics::default());
    for name in ["a", "b", "c"] {
        triage.push(key(name), Urgency::Health);
    }
    let first = triage.try_release().map(|(k, _)| k.name);
    let second = triage.try_release().map(|(k, _)| k.name);
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("a"), Some("b"))
    );
    assert!(triage.try_release().is_none(), "capacity 2 is taken");
    triage.finished(&key("a"));
    assert_eq!(
        triage.try_release().map(|(k, _)| k.name).as_deref(),
        Some("c")
    );
}

#[test]
fn a_platform_still_being_served_waits_and_does_not_block_the_others() {
    let triage = Triage::new(8, TriageMetrics::default());
    triage.push(key("a"), Urgency::Change);
    assert_eq!(
        triage.try_release().map(|(k, _)| k.name).as_deref(),
        Some("a")
    );
    triage.push(key("a"), Urgency::Health);
    triage.push(key("b"), Urgency::Change);
    assert_eq!(
        triage.try_release().map(|(k, _)| k.name).as_deref(),
        Some("b")
    );
    assert!(triage.try_release().is_none(), "a waits for its reconcile");
    triage.finished(&key("a"));
    assert_eq!(
        triage.try_release().map(|(k, _)| k.name).as_deref(),
        Some("a")
    );
}

#[test]
fn an_urgent_release_says_how_many_older_routine_triggers_it_overtook() {
    let triage = Triage::new(8, TriageMetrics::default());
    for i in 0..5 {
        triage.push(key(&format!("noise-{i}")), Urgency::Change);
    }
    triage.push(key("failed"), Urgency::DependencyFailure);
    triage.push(key("late"), Urgency::Change);
    let (platform, release) = triage.try_release().expect("a release");
    assert_eq!(platform.name, "failed");
    assert_eq!(release.urgency, Urgency::DependencyFailure);
    assert_eq!(release.overtook, 5, "the later one was not overtaken");
    assert_eq!(triage.urgent_releases(), vec![(key("failed"), release)]);
    assert_eq!(names(&triage).len(), 6);
    assert_eq!(
        triage.urgent_releases().len(),
        1,
        "routine releases are not kept"
    );
}

#[tokio::test]
async fn the_stream_waits_for_a_push_and_for_room() {
    use futures::StreamExt;
    let triage = Triage::new(1, TriageMetrics::default());
    let mut releases = Box::pin(triage.clone().releases());
    let waiting = tokio::time::timeout(Duration::from_millis(50), releases.next()).await;
    assert!(waiting.is_err(), "nothing queued yet");
    triage.push(key("a"), Urgency::Change);
    triage.push(key("b"), Urgency::Change);
    let first = releases.next().await.map(|r| r.name);
    assert_eq!(first.as_deref(), Some("a"));
    let blocked = tokio::time::timeout(Duration::from_millis(50), releases.next()).await;
    assert!(blocked.is_err(), "capacity 1 is taken by a");
    triage.finished(&key("a"));
    let second = releases.next().await.map(|r| r.name);
    assert_eq!(second.as_deref(), Some("b"));
}

#[test]
fn routine_work_takes_at_most_a_quarter_of_the_room() {
    let triage = Triage::new(8, TriageMetrics::default());
    for i in 0..10 {
        triage.push(key(&format!("blocked-{i}")), Urgency::Change);
    }
    let handed: Vec<_> = std::iter::from_fn(|| triage.try_release()).collect();
    assert_eq!(handed.len(), 2, "a quarter of 8");

    // What may start, or failed, still finds room.
    triage.push(key("startable"), Urgency::Start);
    triage.push(key("failed"), Urgency::DependencyFailure);
    let urgent: Vec<_> = std::iter::from_fn(|| triage.try_release())
        .map(|(k, _)| k.name)
        .collect();
    assert_eq!(urgent, ["failed", "startable"]);

    triage.finished(&handed[0].0);
    assert_eq!(
        triage.try_release().map(|(k, _)| k.name).as_deref(),
        Some("blocked-2"),
        "a routine finish makes room for the next routine trigger"
    );
    assert!(triage.try_release().is_none());
}

#[test]
fn a_workload_that_moved_goes_ahead_of_the_starts_and_is_not_capped_as_routine() {
    let triage = Triage::new(8, TriageMetrics::default());
    triage.push(key("blocked"), Urgency::Change);
    triage.push(key("dependent"), Urgency::Start);
    for i in 0..6 {
        triage.push(key(&format!("ready-{i}")), Urgency::Workload);
    }
    let handed: Vec<_> = std::iter::from_fn(|| triage.try_release())
        .map(|(k, _)| k.name)
        .collect();
    assert_eq!(
        handed,
        [
            "ready-0",
            "ready-1",
            "ready-2",
            "ready-3",
            "ready-4",
            "ready-5",
            "dependent",
            "blocked"
        ],
        "six workloads at once, more than the two routine triggers a capacity of 8 allows"
    );
}

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use platform_operator::controller::Topology;
use platform_operator::crd::{Platform, PlatformStatus};
use platform_operator::fixtures::{PlatformBuilder, TEST_NAMESPACE, platform};
use platform_operator::stack::key_of;

use super::*;

const T0: i64 = 1_800_000_000;

/// `builder` in `phase`, Ready since `T0 + ready_ms` when given.
fn with(builder: PlatformBuilder, phase: Phase, ready_ms: Option<i64>, waits: &[&str]) -> Platform {
    let mut p = builder.build();
    p.status = Some(PlatformStatus {
        phase: Some(phase),
        started_at: ready_ms.map(|ms| {
            Time(Timestamp::from_second(T0).expect("time") + SignedDuration::from_millis(ms))
        }),
        blocked_by: waits.iter().map(|w| w.to_string()).collect(),
        ..PlatformStatus::default()
    });
    p
}

fn snapshot(platforms: Vec<Platform>) -> Snapshot {
    let platforms: Vec<Arc<Platform>> = platforms.into_iter().map(Arc::new).collect();
    Snapshot {
        platforms: platforms
            .iter()
            .map(|p| (key_of(p.as_ref()), Arc::clone(p)))
            .collect::<HashMap<_, _>>(),
        topology: Arc::new(Topology::of(&platforms, &[])),
    }
}

fn k(name: &str) -> NodeKey {
    NodeKey::new(TEST_NAMESPACE, name)
}

fn scope(names: &[&str]) -> BTreeSet<NodeKey> {
    names.iter().map(|n| k(n)).collect()
}

/// a and b have no dependencies; c needs both, d needs a; e needs d and x, which is stopped,
/// as is y because of x.
fn stack() -> Snapshot {
    snapshot(vec![
        with(platform("a"), Phase::Running, Some(0), &[]),
        with(platform("b"), Phase::Running, Some(8_000), &[]),
        with(
            platform("c").depends_on(["a", "b"]),
            Phase::Running,
            Some(9_000),
            &[],
        ),
        with(
            platform("d").depends_on(["a"]),
            Phase::Running,
            Some(1_500),
            &[],
        ),
        with(
            platform("e").depends_on(["d", "x"]),
            Phase::WaitingForDependencies,
            None,
            &["x"],
        ),
        with(platform("x"), Phase::Stopped, Some(500), &[]),
        {
            let mut y = with(
                platform("y").depends_on(["x"]),
                Phase::Stopping,
                Some(700),
                &["x"],
            );
            if let Some(status) = y.status.as_mut() {
                status.stopped_by = Some("Platform/x: dependency stopped".into());
            }
            y
        },
    ])
}

#[test]
fn each_platform_hangs_under_the_dependency_that_gated_it_in_ready_order() {
    let tree = build(&stack(), &scope(&["a", "b", "c", "d", "e", "x", "y"]));
    let order: Vec<(&str, usize, Option<&str>)> = tree
        .rows
        .iter()
        .map(|r| {
            (
                r.key.name.as_str(),
                r.depth,
                r.gate.as_ref().map(|g| g.name.as_str()),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("a", 0, None),
            ("d", 1, Some("a")),
            ("e", 2, None),
            ("b", 0, None),
            ("c", 1, Some("b")),
            ("x", 0, None),
            ("y", 1, None),
        ],
        "c waited for b (Ready at 8s), not a (0s); e, not up, goes under its latest-wave dependency"
    );
    let c = &tree.rows[4];
    assert_eq!(c.ready_at, Some(Duration::from_secs(9)));
    assert_eq!(c.took, Some(Duration::from_secs(1)));
    let x = &tree.rows[5];
    assert_eq!(
        (x.ready_at, x.took),
        (None, None),
        "a stopped platform's old startedAt is not a Ready"
    );
}

#[test]
fn the_critical_chain_is_the_chain_of_gates_to_the_last_ready() {
    let tree = build(&stack(), &scope(&["a", "b", "c", "d", "e", "x", "y"]));
    assert_eq!(
        tree.chain,
        [
            (k("b"), Duration::from_secs(8)),
            (k("c"), Duration::from_secs(9))
        ]
    );
    let marked: Vec<&str> = tree
        .rows
        .iter()
        .filter(|r| r.critical)
        .map(|r| r.key.name.as_str())
        .collect();
    assert_eq!(marked, ["b", "c"]);
}

#[test]
fn renders_like_systemd_analyze_critical_chain() {
    let text = render(
        &build(&stack(), &scope(&["a", "b", "c", "d", "e", "x", "y"])),
        TEST_NAMESPACE,
    );
    let expected = "\
critical chain: b @8s → c @9s (Ready after 9s)
  PLATFORM  PHASE                   READY  TOOK   GATED BY
  a         Running                 @0s    +0s    -
  └─d       Running                 @1.5s  +1.5s  a
    └─e     WaitingForDependencies  -      -      waits for x
* b         Running                 @8s    +8s    -
* └─c       Running                 @9s    +1s    b
  x         Stopped                 -      -      -
  └─y       Stopping                -      -      stopped by Platform/x: dependency stopped
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn a_gate_outside_the_scope_still_gates_and_leads_the_chain() {
    let tree = build(&stack(), &scope(&["a", "c", "d"]));
    let c = tree.rows.iter().find(|r| r.key == k("c")).expect("c shown");
    assert_eq!(c.gate, Some(k("b")));
    assert_eq!(c.depth, 1, "shown under a, its dependency in scope");
    assert_eq!(tree.chain.first().map(|(key, _)| key), Some(&k("b")));
}

#[test]
fn platforms_in_a_cycle_are_roots_with_the_cycle_named() {
    let snapshot = snapshot(vec![
        with(platform("p").depends_on(["q"]), Phase::Blocked, None, &[]),
        with(
            platform("q").depends_on(["p"]),
            Phase::Running,
            Some(0),
            &[],
        ),
    ]);
    let tree = build(&snapshot, &scope(&["p", "q"]));
    assert!(tree.rows.iter().all(|r| r.depth == 0 && r.gate.is_none()));
    assert!(
        tree.chain.is_empty(),
        "a running platform in a cycle is not measured"
    );
    let p = &tree.rows[0];
    assert!(
        p.note.as_deref().is_some_and(|n| n.contains("cycle")),
        "{p:?}"
    );
    assert!(render(&tree, TEST_NAMESPACE).starts_with("critical chain: none"));
}

#[test]
fn durations_read_like_systemd() {
    assert_eq!(human(Duration::from_millis(250)), "250ms");
    assert_eq!(human(Duration::from_millis(8_000)), "8s");
    assert_eq!(human(Duration::from_millis(1_540)), "1.5s");
    assert_eq!(human(Duration::from_secs(125)), "2m5s");
    assert_eq!(human(Duration::from_secs(3_603)), "1h0m3s");
}

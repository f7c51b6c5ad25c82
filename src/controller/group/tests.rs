use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, Time,
};

use super::*;
use crate::crd::PlatformStatus;
use crate::fixtures::{GroupBuilder, PlatformBuilder, group, platform};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("valid")
}

/// A platform of the stack `s` (selected by [`stack`]).
fn member(name: &str) -> PlatformBuilder {
    platform(name).label("stack", "s")
}

/// The group selecting the stack `s`.
fn stack() -> GroupBuilder {
    group("s").selecting("stack", "s")
}

/// A platform as its own controller reported it: in `phase`, Ready only when Running.
fn reported(builder: PlatformBuilder, phase: Phase) -> Platform {
    let mut p = builder.build();
    let ready = if phase == Phase::Running {
        "True"
    } else {
        "False"
    };
    p.status = Some(PlatformStatus {
        phase: Some(phase),
        conditions: vec![Condition {
            type_: condition::READY.into(),
            status: ready.into(),
            reason: phase.as_str().into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(0)),
        }],
        ..Default::default()
    });
    p
}

/// The topology as [`Context::topology`] builds it from the caches.
fn topology(platforms: &[Platform], groups: &[PlatformGroup]) -> Topology {
    let platforms: Vec<Arc<Platform>> = platforms.iter().cloned().map(Arc::new).collect();
    let groups: Vec<Arc<PlatformGroup>> = groups.iter().cloned().map(Arc::new).collect();
    Topology::of(&platforms, &groups)
}

/// The status of `groups[0]` with its members looked up as the reconcile does.
fn status_of(platforms: &[Platform], groups: &[PlatformGroup]) -> PlatformGroupStatus {
    let topology = topology(platforms, groups);
    let group = &groups[0];
    let members: Vec<(NodeKey, Option<Arc<Platform>>)> = topology
        .membership
        .members
        .get(&key_of(group))
        .into_iter()
        .flatten()
        .map(|k| {
            let found = platforms.iter().find(|p| key_of(*p) == *k);
            (k.clone(), found.cloned().map(Arc::new))
        })
        .collect();
    group_status(group, &topology, &members, at(0))
}

fn condition_of<'a>(status: &'a PlatformGroupStatus, type_: &str) -> &'a Condition {
    let found = status.conditions.iter().find(|c| c.type_ == type_);
    found.unwrap_or_else(|| panic!("condition {type_}"))
}

/// A condition as `status/reason`, e.g. `True/Running`.
fn summary(status: &PlatformGroupStatus, type_: &str) -> String {
    let c = condition_of(status, type_);
    format!("{}/{}", c.status, c.reason)
}

#[test]
fn a_group_whose_members_are_all_ready_is_running() {
    let platforms = [
        reported(member("a"), Phase::Running),
        reported(member("b"), Phase::Running),
        reported(platform("outside"), Phase::Failed),
    ];
    let status = status_of(&platforms, &[stack().build()]);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(summary(&status, group_condition::READY), "True/Running");
    let ready = condition_of(&status, group_condition::READY);
    assert_eq!(ready.message, "2/2 members Ready");
    assert_eq!((status.ready_members, status.total_members), (2, 2));
    assert_eq!(status.ready.as_deref(), Some("2/2"));
    assert_eq!(summary(&status, group_condition::GRAPH_VALID), "True/Valid");
    assert!(status.graph_errors.is_empty());
}

#[test]
fn the_group_phase_summarises_its_members() {
    use Phase::*;
    let running = || stack().build();
    let stopped = || stack().stopped().build();
    // member phases, group → group phase, Ready condition
    let table = [
        (vec![Running, Running], running(), "Running", "True"),
        (vec![Running, Starting], running(), "Starting", "False"),
        (
            vec![Running, WaitingForDependencies],
            running(),
            "Starting",
            "False",
        ),
        (vec![Running, Blocked], running(), "Blocked", "False"),
        (vec![Running, Degraded], running(), "Degraded", "False"),
        (vec![Starting, Failed], running(), "Degraded", "False"),
        (vec![Stopped, Stopped], stopped(), "Stopped", "True"),
        (vec![Stopped, Stopping], stopped(), "Stopping", "False"),
        (vec![Running, Running], stopped(), "Stopping", "False"),
        (vec![Stopped, Blocked], stopped(), "Blocked", "False"),
    ];
    for (phases, group, phase, ready) in table {
        let platforms: Vec<Platform> = phases
            .iter()
            .enumerate()
            .map(|(i, phase)| reported(member(&format!("m{i}")), *phase))
            .collect();
        let status = status_of(&platforms, &[group]);
        assert_eq!(status.phase.as_deref(), Some(phase), "{phases:?}");
        let expected = format!("{ready}/{phase}");
        assert_eq!(summary(&status, group_condition::READY), expected);
        let stalled = if phase == "Blocked" {
            "True/Blocked"
        } else {
            "False/Progressing"
        };
        assert_eq!(
            summary(&status, group_condition::STALLED),
            stalled,
            "{phases:?}"
        );
    }
}

#[test]
fn phase_counts_tally_every_member_and_unreported_ones_are_pending() {
    let platforms = [
        reported(member("a"), Phase::Running),
        reported(member("b"), Phase::Running),
        reported(member("c"), Phase::Starting),
        member("d").build(),
    ];
    let status = status_of(&platforms, &[stack().build()]);
    let counts: Vec<(&str, u32)> = status
        .phase_counts
        .iter()
        .map(|(phase, n)| (phase.as_str(), *n))
        .collect();
    assert_eq!(counts, [("Pending", 1), ("Running", 2), ("Starting", 1)]);
    assert_eq!(status.ready.as_deref(), Some("2/4"));
    assert_eq!(status.phase.as_deref(), Some("Starting"));
}

#[test]
fn a_platform_selected_by_two_groups_is_a_graph_error_of_both() {
    let platforms = [
        reported(member("a"), Phase::Running),
        reported(member("shared").label("tier", "web"), Phase::Running),
    ];
    let web = group("web").selecting("tier", "web").build();
    let status = status_of(&platforms, &[stack().build(), web.clone()]);
    assert_eq!(
        status.graph_errors,
        ["platform shared is also selected by group web; it ignores both groups"]
    );
    assert_eq!(
        summary(&status, group_condition::GRAPH_VALID),
        "False/Invalid"
    );
    let graph_valid = condition_of(&status, group_condition::GRAPH_VALID);
    assert_eq!(graph_valid.message, status.graph_errors[0]);
    assert_eq!(status.total_members, 1, "the shared platform is no member");

    let status = status_of(&platforms, &[web, stack().build()]);
    assert_eq!(
        status.graph_errors,
        ["platform shared is also selected by group s; it ignores both groups"]
    );
}

#[test]
fn a_cycle_among_members_is_reported_with_its_path() {
    let platforms = [
        member("a").depends_on(["b"]).build(),
        member("b").depends_on(["a"]).build(),
        platform("x").depends_on(["y"]).build(),
        platform("y").depends_on(["x"]).build(),
    ];
    let status = status_of(&platforms, &[stack().build()]);
    assert_eq!(status.graph_errors, ["dependency cycle: a → b → a"]);
    assert_eq!(
        summary(&status, group_condition::GRAPH_VALID),
        "False/Invalid"
    );
    assert!(
        status.startup_order.is_empty(),
        "members in a cycle have no wave"
    );
}

#[test]
fn graph_errors_name_missing_dependencies_and_the_groups_own_ordering_edges() {
    let platforms = [
        member("a").depends_on(["gone"]).build(),
        platform("outside").depends_on(["missing"]).build(),
    ];
    let groups = [stack().ordering("a", "ghost").build()];
    let status = status_of(&platforms, &groups);
    assert_eq!(
        status.graph_errors,
        [
            "platform \"a\" depends on \"gone\", which does not exist",
            "ordering edge \"a\" before \"ghost\" names \"ghost\", which does not exist",
        ]
    );
}

#[test]
fn an_invalid_selector_is_a_graph_error() {
    let mut broken = stack().build();
    broken.spec.selector = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "stack".into(),
            operator: "Near".into(),
            values: None,
        }]),
        ..Default::default()
    };
    let status = status_of(&[member("a").build()], &[broken]);
    assert_eq!(status.graph_errors.len(), 1);
    assert!(status.graph_errors[0].starts_with("invalid selector: "));
    assert!(status.graph_errors[0].contains("Near"));
    assert_eq!(status.total_members, 0);
}

#[test]
fn the_startup_order_lists_only_members_by_wave() {
    let platforms = [
        member("db").build(),
        member("api").depends_on(["db", "auth"]).build(),
        member("web").depends_on(["api"]).build(),
        // Outside the group: `auth` fills a wave of its own between db and api.
        platform("auth").depends_on(["db"]).build(),
        platform("batch").build(),
    ];
    let status = status_of(&platforms, &[stack().build()]);
    assert_eq!(status.startup_order, [vec!["db"], vec!["api"], vec!["web"]]);

    let only_dependents = [
        platform("base").build(),
        member("top").depends_on(["base"]).build(),
    ];
    let status = status_of(&only_dependents, &[stack().build()]);
    assert_eq!(status.startup_order, [vec!["top"]], "empty waves dropped");
}

#[test]
fn conditions_keep_their_transition_time_and_carry_the_generation() {
    let platforms = [reported(member("a"), Phase::Running)];
    let mut g = stack().build();
    g.metadata.generation = Some(4);
    let first = status_of(&platforms, &[g.clone()]);
    assert_eq!(first.observed_generation, Some(4));
    assert!(
        first
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );

    g.status = Some(PlatformGroupStatus {
        conditions: first
            .conditions
            .iter()
            .map(|c| Condition {
                last_transition_time: Time(at(-600)),
                ..c.clone()
            })
            .collect(),
        ..first.clone()
    });
    let again = status_of(&platforms, &[g.clone()]);
    for c in &again.conditions {
        assert_eq!(c.last_transition_time.0, at(-600), "{} unchanged", c.type_);
    }

    let starting = [reported(member("a"), Phase::Starting)];
    let changed = status_of(&starting, &[g]);
    let ready = condition_of(&changed, group_condition::READY);
    assert_eq!(ready.last_transition_time.0, at(0), "Ready flipped");
    let graph_valid = condition_of(&changed, group_condition::GRAPH_VALID);
    assert_eq!(graph_valid.last_transition_time.0, at(-600));
}

//! Which platforms must stop, and why: computed once per topology, in startup order, so that a
//! platform's cause comes from a dependency decided before it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crd::{DependencyReaction, DesiredState, Platform, PlatformGroup};
use crate::graph::{EdgeKind, Graph, NodeKey};
use crate::stack::{Membership, effective_settings, key_of};

use super::model::StopCause;
use super::supervise::{failed_reason, on_trial};

/// The stop cause of every platform that must stop: its own (deletion, spec, group), else the
/// one of a dependency through `dependsOn` edges (group ordering edges order startup; they do
/// not cascade stops).
pub fn stop_causes(
    graph: &Graph,
    platforms: &HashMap<NodeKey, Arc<Platform>>,
    membership: &Membership,
    groups: &HashMap<NodeKey, Arc<PlatformGroup>>,
) -> HashMap<NodeKey, StopCause> {
    let group_of = |key: &NodeKey| membership.group_of.get(key).and_then(|g| groups.get(g));
    let own = |key: &NodeKey| -> Option<StopCause> {
        let platform = platforms.get(key)?;
        own_stop_cause(platform, group_of(key).map(AsRef::as_ref))
    };
    // A failed platform stops its dependents unless its `onDependencyFailed` says otherwise.
    let cascades = |dependency: &NodeKey, cause: &StopCause| -> bool {
        if !matches!(cause, StopCause::Failed(_)) {
            return true;
        }
        platforms.get(dependency).is_none_or(|platform| {
            let defaults = group_of(dependency).and_then(|g| g.spec.defaults.as_ref());
            effective_settings(platform, defaults)
                .reactions
                .on_dependency_failed
                == DependencyReaction::StopDependents
        })
    };
    // A platform on a half-open trial runs, but its dependents wait for the verdict.
    let on_trial = |key: &NodeKey| -> Option<StopCause> {
        let supervision = platforms.get(key)?.status.as_ref()?.supervision.as_ref()?;
        on_trial(supervision).then(|| StopCause::Failed("on a trial start".to_string()))
    };
    let mut causes: HashMap<NodeKey, StopCause> = HashMap::new();
    for key in graph.waves().iter().flatten() {
        let cause = own(key).or_else(|| {
            graph
                .dependency_edges(key)
                .into_iter()
                .filter(|(_, kind)| *kind == EdgeKind::DependsOn)
                .find_map(|(dependency, _)| {
                    let trial = on_trial(&dependency);
                    let theirs = causes.get(&dependency).or(trial.as_ref())?;
                    if !cascades(&dependency, theirs) {
                        return None;
                    }
                    Some(if theirs.is_own() {
                        StopCause::Dependency {
                            dependency,
                            cause: Box::new(theirs.clone()),
                        }
                    } else {
                        theirs.clone()
                    })
                })
        });
        if let Some(cause) = cause {
            causes.insert(key.clone(), cause);
        }
    }
    // Blocked platforms have no wave; only their own reasons apply.
    for key in graph.blocked().keys() {
        if let Some(cause) = own(key) {
            causes.insert(key.clone(), cause);
        }
    }
    causes
}

/// The platform's own reason to stop, if any.
pub fn own_stop_cause(platform: &Platform, group: Option<&PlatformGroup>) -> Option<StopCause> {
    if platform.metadata.deletion_timestamp.is_some() {
        return Some(StopCause::Deletion);
    }
    if platform.spec.desired_state == DesiredState::Stopped {
        return Some(StopCause::Spec);
    }
    if let Some(group) = group
        && group.spec.desired_state == DesiredState::Stopped
    {
        return Some(StopCause::Group(key_of(group)));
    }
    let supervision = platform.status.as_ref()?.supervision.as_ref()?;
    failed_reason(supervision).map(StopCause::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TEST_NAMESPACE, group, platform};
    use crate::stack::{build_graph, membership};

    fn key(name: &str) -> NodeKey {
        NodeKey::new(TEST_NAMESPACE, name)
    }

    fn causes_of(
        platforms: Vec<Platform>,
        groups: Vec<PlatformGroup>,
    ) -> HashMap<NodeKey, StopCause> {
        let graph = build_graph(&platforms, &groups);
        let members = membership(&platforms, &groups);
        let platforms = platforms
            .into_iter()
            .map(|p| (key_of(&p), Arc::new(p)))
            .collect();
        let groups = groups
            .into_iter()
            .map(|g| (key_of(&g), Arc::new(g)))
            .collect();
        stop_causes(&graph, &platforms, &members, &groups)
    }

    #[test]
    fn a_stop_cascades_to_every_dependent_naming_the_root() {
        let causes = causes_of(
            vec![
                platform("a").stopped().build(),
                platform("b").depends_on(["a"]).build(),
                platform("c").depends_on(["b"]).build(),
                platform("free").build(),
            ],
            vec![],
        );
        assert_eq!(causes[&key("a")], StopCause::Spec);
        let cascade = StopCause::Dependency {
            dependency: key("a"),
            cause: Box::new(StopCause::Spec),
        };
        assert_eq!(causes[&key("b")], cascade);
        assert_eq!(causes[&key("c")], cascade);
        assert!(!causes.contains_key(&key("free")));
    }

    #[test]
    fn ordering_edges_do_not_cascade_but_groups_stop_their_members() {
        let causes = causes_of(
            vec![
                platform("a").label("s", "1").build(),
                platform("b").label("s", "1").build(),
                platform("c").build(),
            ],
            vec![
                group("g")
                    .selecting("s", "1")
                    .ordering("a", "b")
                    .stopped()
                    .build(),
            ],
        );
        assert_eq!(causes[&key("a")], StopCause::Group(key("g")));
        assert_eq!(causes[&key("b")], StopCause::Group(key("g")));
        assert!(!causes.contains_key(&key("c")));

        let causes = causes_of(
            vec![
                platform("a").label("s", "1").stopped().build(),
                platform("b").label("s", "1").build(),
            ],
            vec![group("g").selecting("s", "1").ordering("a", "b").build()],
        );
        assert!(
            !causes.contains_key(&key("b")),
            "an ordering edge alone does not stop b"
        );
    }
}

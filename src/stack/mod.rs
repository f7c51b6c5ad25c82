//! A stack of platforms as a whole, computed purely from the custom resources: group membership,
//! the dependency graph over Platforms and group ordering edges, and each member's effective
//! settings. Shared by `plan`, the controllers and (later) the REST API.

mod effective;
mod selector;

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::{Platform, PlatformGroup};
use crate::graph::{Graph, NodeInput, NodeKey, OrderingEdge};

pub use effective::{EffectiveReactions, EffectiveSettings, RestartBudget, effective_settings};
pub use selector::{SelectorError, selector_matches};

/// The graph key of a Platform (or of a group: groups and platforms never share a graph).
pub fn key_of<K: ResourceExt>(object: &K) -> NodeKey {
    NodeKey::new(object.namespace().unwrap_or_default(), object.name_any())
}

/// The keys a Platform depends on, with the namespace defaulted to its own.
pub fn dependency_keys(platform: &Platform) -> Vec<NodeKey> {
    let own_namespace = platform.namespace().unwrap_or_default();
    platform
        .spec
        .depends_on
        .iter()
        .map(|dep| {
            NodeKey::new(
                dep.namespace
                    .clone()
                    .unwrap_or_else(|| own_namespace.clone()),
                dep.name.clone(),
            )
        })
        .collect()
}

/// Which group each platform belongs to, and the platforms claimed by more than one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    /// Members of each group (sorted). A platform claimed by two groups is listed in neither.
    pub members: BTreeMap<NodeKey, Vec<NodeKey>>,
    /// The one group of each platform that has exactly one.
    pub group_of: BTreeMap<NodeKey, NodeKey>,
    /// Platforms selected by several groups, with those groups (sorted).
    pub conflicts: BTreeMap<NodeKey, Vec<NodeKey>>,
    /// Groups whose selector cannot be evaluated, with the reason.
    pub invalid_selectors: BTreeMap<NodeKey, String>,
}

impl Membership {
    /// The groups that claim `platform` together with another group.
    pub fn conflicting_groups(&self, platform: &NodeKey) -> &[NodeKey] {
        self.conflicts
            .get(platform)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Conflicts that involve `group`: each platform it shares, with the other groups.
    pub fn conflicts_of(&self, group: &NodeKey) -> Vec<(NodeKey, Vec<NodeKey>)> {
        self.conflicts
            .iter()
            .filter(|(_, groups)| groups.contains(group))
            .map(|(platform, groups)| {
                let others = groups.iter().filter(|g| *g != group).cloned().collect();
                (platform.clone(), others)
            })
            .collect()
    }
}

/// Evaluates every group's selector against the Platforms of its namespace.
pub fn membership<'a>(
    platforms: impl IntoIterator<Item = &'a Platform>,
    groups: impl IntoIterator<Item = &'a PlatformGroup>,
) -> Membership {
    let platforms: Vec<&Platform> = platforms.into_iter().collect();
    let mut claims: BTreeMap<NodeKey, Vec<NodeKey>> = BTreeMap::new();
    let mut result = Membership::default();
    for group in groups {
        let group_key = key_of(group);
        result.members.entry(group_key.clone()).or_default();
        for platform in platforms
            .iter()
            .filter(|p| p.namespace() == group.namespace())
        {
            match selector_matches(&group.spec.selector, platform.labels()) {
                Ok(true) => claims
                    .entry(key_of(*platform))
                    .or_default()
                    .push(group_key.clone()),
                Ok(false) => {}
                Err(error) => {
                    result
                        .invalid_selectors
                        .insert(group_key.clone(), error.to_string());
                    break;
                }
            }
        }
    }
    for (platform, mut groups) in claims {
        groups.sort();
        if let [only] = groups.as_slice() {
            result
                .members
                .entry(only.clone())
                .or_default()
                .push(platform.clone());
            result.group_of.insert(platform, only.clone());
        } else {
            result.conflicts.insert(platform, groups);
        }
    }
    for members in result.members.values_mut() {
        members.sort();
    }
    result
}

/// The dependency graph of all `platforms`: their `dependsOn` edges plus the ordering edges of
/// the groups they belong to (ordering names are members of the group's namespace).
pub fn build_graph<'a>(
    platforms: impl IntoIterator<Item = &'a Platform>,
    groups: impl IntoIterator<Item = &'a PlatformGroup>,
) -> Graph {
    let nodes: Vec<NodeInput> = platforms
        .into_iter()
        .map(|platform| NodeInput {
            key: key_of(platform),
            depends_on: dependency_keys(platform),
        })
        .collect();
    let ordering: Vec<OrderingEdge> = groups
        .into_iter()
        .flat_map(|group| {
            let namespace = group.namespace().unwrap_or_default();
            group
                .spec
                .startup
                .iter()
                .flat_map(|startup| startup.ordering.iter())
                .map(move |rule| OrderingEdge {
                    before: NodeKey::new(namespace.clone(), rule.before.clone()),
                    after: NodeKey::new(namespace.clone(), rule.after.clone()),
                })
        })
        .collect();
    Graph::build(nodes, &ordering)
}

#[cfg(test)]
mod tests;

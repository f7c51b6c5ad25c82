//! Pure dependency graph engine.
//!
//! Everything here is computed once in [`Graph::build`] and is deterministic: nodes are interned
//! in key order, so "smallest index" and "smallest key" coincide and every tie is broken by
//! [`NodeKey`]'s `Ord` without extra work. No I/O, no Kubernetes types.
//!
//! Edge direction: internally (and in cycle paths) an edge `a → b` means "`a` depends on `b`".
//!
//! Duplicate keys in the input: the first occurrence wins and later ones are ignored without an
//! error (the API server already guarantees unique names, so a duplicate is a caller bug that
//! must not take the graph down).

pub mod bench;
mod closure;
mod critical;
mod cycles;
mod errors;
mod intern;
mod order;
#[cfg(test)]
mod proptests;
mod sort;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

pub use errors::{BlockReason, GraphError, render_cycle};

/// Identity of a platform: namespace + name. Ordered by namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct NodeKey {
    pub namespace: String,
    pub name: String,
}

impl NodeKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NodeKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One platform and the platforms it declares a dependency on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInput {
    pub key: NodeKey,
    pub depends_on: Vec<NodeKey>,
}

/// "`after` starts only after `before` is ready" (from a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderingEdge {
    pub before: NodeKey,
    pub after: NodeKey,
}

/// Where a dependency edge came from. When a platform both declares a dependency and gets the
/// same one from an ordering edge, the edge counts as [`EdgeKind::DependsOn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum EdgeKind {
    DependsOn,
    Ordering,
}

/// Result of [`Graph::critical_path`]: the chain in start order and the sum of its durations.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CriticalPath {
    pub chain: Vec<NodeKey>,
    pub total: std::time::Duration,
}

/// Sentinel for "no wave" (blocked) and "no missing dependency".
const NONE: u32 = u32::MAX;

/// Immutable dependency graph with everything precomputed.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Interned keys, sorted and unique: index order == key order.
    keys: Vec<NodeKey>,
    /// CSR adjacency "node → its dependencies", each slice sorted by index.
    dep_offsets: Vec<u32>,
    dep_targets: Vec<u32>,
    dep_kinds: Vec<EdgeKind>,
    /// CSR adjacency "node → its dependents", each slice sorted by index.
    rdep_offsets: Vec<u32>,
    rdep_targets: Vec<u32>,
    errors: Vec<GraphError>,
    blocked: BTreeMap<NodeKey, BlockReason>,
    /// Wave per node, [`NONE`] for blocked nodes.
    wave: Vec<u32>,
    /// Unblocked nodes by wave, then index: wave `w` is
    /// `wave_members[wave_starts[w]..wave_starts[w + 1]]`.
    wave_members: Vec<u32>,
    wave_starts: Vec<u32>,
    /// The waves as keys, materialised on first use of [`Graph::waves`].
    waves: OnceLock<Vec<Vec<NodeKey>>>,
}

impl Graph {
    /// Builds and validates the graph. Never fails and never panics: problems become
    /// [`GraphError`]s and [`BlockReason`]s, and the unaffected part of the graph stays usable.
    ///
    /// Ordering edges whose `before` or `after` is unknown are reported and otherwise ignored
    /// (they do not block anything: the group names a platform that is not there, the platform
    /// that is there has nothing to wait for). An ordering edge from a platform to itself is
    /// reported as a [`GraphError::SelfDependency`].
    pub fn build(nodes: impl IntoIterator<Item = NodeInput>, ordering: &[OrderingEdge]) -> Graph {
        let mut inputs: Vec<NodeInput> = nodes.into_iter().collect();
        let order = {
            let refs: Vec<&NodeKey> = inputs.iter().map(|input| &input.key).collect();
            sort::sorted_unique(&refs)
        };
        // Keys move into the graph; dependency lists are only read and freed afterwards.
        let mut keys: Vec<NodeKey> = Vec::with_capacity(order.len());
        let mut dep_lists: Vec<Vec<NodeKey>> = Vec::with_capacity(order.len());
        for &i in &order {
            let input = &mut inputs[i as usize];
            keys.push(std::mem::replace(
                &mut input.key,
                NodeKey::new(String::new(), String::new()),
            ));
            dep_lists.push(std::mem::take(&mut input.depends_on));
        }
        drop(inputs);
        Self::build_sorted(keys, |i| dep_lists[i].as_slice(), ordering)
    }

    /// [`Graph::build`] on borrowed input: the graph copies the keys it keeps and nothing else,
    /// so callers that hold the platforms anyway need not build (and free) owned input lists.
    pub fn build_refs<'a>(
        nodes: impl IntoIterator<Item = &'a NodeInput>,
        ordering: &[OrderingEdge],
    ) -> Graph {
        let inputs: Vec<&NodeInput> = nodes.into_iter().collect();
        let order = {
            let refs: Vec<&NodeKey> = inputs.iter().map(|input| &input.key).collect();
            sort::sorted_unique(&refs)
        };
        let sorted: Vec<&NodeInput> = order.iter().map(|&i| inputs[i as usize]).collect();
        let keys = sorted.iter().map(|input| input.key.clone()).collect();
        Self::build_sorted(keys, |i| sorted[i].depends_on.as_slice(), ordering)
    }

    /// The build proper. `keys` are sorted and unique; `deps_of(i)` is the declared dependency
    /// list of `keys[i]`.
    fn build_sorted<'a>(
        keys: Vec<NodeKey>,
        deps_of: impl Fn(usize) -> &'a [NodeKey],
        ordering: &[OrderingEdge],
    ) -> Graph {
        let n = keys.len();
        let mut errors = Vec::new();
        let mut self_dep = vec![false; n];
        // Smallest missing dependency per node, as an index into `missing_keys`.
        let mut first_missing = vec![NONE; n];
        let mut missing_keys: Vec<NodeKey> = Vec::new();

        let index = intern::Interner::new(&keys);

        // Ordering edges as (after, before) index pairs, grouped by `after` for the CSR pass.
        let mut extra: Vec<(u32, u32)> = Vec::with_capacity(ordering.len());
        for edge in ordering {
            let before = index.get(&edge.before);
            let after = index.get(&edge.after);
            for (known, key) in [(before, &edge.before), (after, &edge.after)] {
                if known.is_none() {
                    errors.push(GraphError::UnknownOrderingEdge {
                        before: edge.before.clone(),
                        after: edge.after.clone(),
                        unknown: key.clone(),
                    });
                }
            }
            if let (Some(b), Some(a)) = (before, after) {
                if a == b {
                    self_dep[a as usize] = true;
                } else {
                    extra.push((a, b));
                }
            }
        }
        extra.sort_unstable();

        let edge_hint: usize = (0..n).map(|i| deps_of(i).len()).sum::<usize>() + extra.len();
        let mut dep_offsets = Vec::with_capacity(n + 1);
        let mut dep_targets: Vec<u32> = Vec::with_capacity(edge_hint);
        let mut dep_kinds = Vec::with_capacity(edge_hint);
        let mut scratch: Vec<(u32, EdgeKind)> = Vec::new();
        let mut extra_pos = 0;
        dep_offsets.push(0u32);
        for i in 0..n {
            let i32_ = i as u32;
            let key = &keys[i];
            scratch.clear();
            for dep in deps_of(i) {
                match index.get(dep) {
                    Some(j) if j == i32_ => self_dep[i] = true,
                    Some(j) => scratch.push((j, EdgeKind::DependsOn)),
                    None => {
                        let slot = &mut first_missing[i];
                        if *slot == NONE {
                            *slot = missing_keys.len() as u32;
                            missing_keys.push(dep.clone());
                        } else if *dep < missing_keys[*slot as usize] {
                            missing_keys[*slot as usize] = dep.clone();
                        }
                        errors.push(if dep.namespace == key.namespace {
                            GraphError::MissingDependency {
                                platform: key.clone(),
                                missing: dep.clone(),
                            }
                        } else {
                            GraphError::CrossNamespaceMissing {
                                platform: key.clone(),
                                missing: dep.clone(),
                            }
                        });
                    }
                }
            }
            while extra_pos < extra.len() && extra[extra_pos].0 == i32_ {
                scratch.push((extra[extra_pos].1, EdgeKind::Ordering));
                extra_pos += 1;
            }
            // DependsOn sorts before Ordering, so dedup keeps the declared kind.
            scratch.sort_unstable();
            scratch.dedup_by_key(|e| e.0);
            for &(j, kind) in &scratch {
                dep_targets.push(j);
                dep_kinds.push(kind);
            }
            dep_offsets.push(dep_targets.len() as u32);
        }
        for (i, &is_self) in self_dep.iter().enumerate() {
            if is_self {
                errors.push(GraphError::SelfDependency {
                    platform: keys[i].clone(),
                });
            }
        }
        drop(index);

        let (rdep_offsets, rdep_targets) = reverse_csr(n, &dep_offsets, &dep_targets);

        let mut graph = Graph {
            keys,
            dep_offsets,
            dep_targets,
            dep_kinds,
            rdep_offsets,
            rdep_targets,
            errors: Vec::new(),
            blocked: BTreeMap::new(),
            wave: Vec::new(),
            wave_members: Vec::new(),
            wave_starts: Vec::new(),
            waves: OnceLock::new(),
        };

        let sccs = cycles::tarjan(&graph);
        let cycle_paths = cycles::cycle_paths(&graph, &sccs);
        for (_, path) in &cycle_paths {
            errors.push(GraphError::Cycle {
                path: path
                    .iter()
                    .map(|&i| graph.keys[i as usize].clone())
                    .collect(),
            });
        }
        errors.sort();
        errors.dedup();
        graph.errors = errors;

        let intrinsic = Intrinsic {
            self_dep: &self_dep,
            first_missing: &first_missing,
            missing_keys: &missing_keys,
        };
        order::classify(&mut graph, &sccs, &cycle_paths, &intrinsic);
        graph
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, key: &NodeKey) -> bool {
        self.index_of(key).is_some()
    }

    /// All validation errors, sorted (by kind, then by the keys involved) and de-duplicated.
    pub fn errors(&self) -> &[GraphError] {
        &self.errors
    }

    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn blocked(&self) -> &BTreeMap<NodeKey, BlockReason> {
        &self.blocked
    }

    pub fn block_reason(&self, key: &NodeKey) -> Option<&BlockReason> {
        self.blocked.get(key)
    }

    /// Follows [`BlockReason::DependsOnBlocked`] links down to the platform that is blocked for
    /// its own reason (cycle, missing or self dependency). `None` if `key` is not blocked.
    pub fn root_cause(&self, key: &NodeKey) -> Option<(&NodeKey, &BlockReason)> {
        let (mut at, mut reason) = self.blocked.get_key_value(key)?;
        // Each hop goes to a dependency decided earlier in build order, so this terminates;
        // the bound is only a guard against a future bug turning into a hang.
        for _ in 0..=self.keys.len() {
            match reason {
                BlockReason::DependsOnBlocked { blocked } => {
                    (at, reason) = self.blocked.get_key_value(blocked)?;
                }
                _ => return Some((at, reason)),
            }
        }
        None
    }

    /// Why `key` is blocked, with the underlying problem when the block is inherited.
    pub fn block_message(&self, key: &NodeKey) -> Option<String> {
        let reason = self.block_reason(key)?;
        match self.root_cause(key) {
            Some((root, root_reason)) if root != key => Some(format!(
                "{}; {} is {}",
                reason.message(),
                root.name,
                root_reason.message()
            )),
            _ => Some(reason.message()),
        }
    }

    /// Where a direct dependency `dependent → dependency` comes from, if that edge exists.
    pub fn edge_kind(&self, dependent: &NodeKey, dependency: &NodeKey) -> Option<EdgeKind> {
        let (a, b) = (self.index_of(dependent)?, self.index_of(dependency)?);
        let range = self.dep_range(a);
        let slice = &self.dep_targets[range.clone()];
        let pos = slice.binary_search(&b).ok()?;
        Some(self.dep_kinds[range.start + pos])
    }

    /// Direct dependencies with their origin, sorted by key.
    pub fn dependency_edges(&self, key: &NodeKey) -> Vec<(NodeKey, EdgeKind)> {
        let Some(i) = self.index_of(key) else {
            return Vec::new();
        };
        let range = self.dep_range(i);
        self.dep_targets[range.clone()]
            .iter()
            .zip(&self.dep_kinds[range])
            .map(|(&j, &kind)| (self.keys[j as usize].clone(), kind))
            .collect()
    }

    /// Direct dependencies (declared and from ordering edges), existing platforms only, sorted.
    pub fn dependencies(&self, key: &NodeKey) -> Vec<NodeKey> {
        match self.index_of(key) {
            Some(i) => self.keys_of(self.deps(i)),
            None => Vec::new(),
        }
    }

    /// Direct dependents (platforms that list `key` or are ordered after it), sorted.
    pub fn dependents(&self, key: &NodeKey) -> Vec<NodeKey> {
        match self.index_of(key) {
            Some(i) => self.keys_of(self.rdeps(i)),
            None => Vec::new(),
        }
    }

    pub fn dependency_closure(&self, key: &NodeKey) -> BTreeSet<NodeKey> {
        closure::closure(self, key, closure::Direction::Dependencies)
    }

    pub fn dependents_closure(&self, key: &NodeKey) -> BTreeSet<NodeKey> {
        closure::closure(self, key, closure::Direction::Dependents)
    }

    // --- internal helpers shared by the submodules ---

    fn index_of(&self, key: &NodeKey) -> Option<u32> {
        self.keys.binary_search(key).ok().map(|i| i as u32)
    }

    fn dep_range(&self, i: u32) -> std::ops::Range<usize> {
        self.dep_offsets[i as usize] as usize..self.dep_offsets[i as usize + 1] as usize
    }

    fn deps(&self, i: u32) -> &[u32] {
        &self.dep_targets[self.dep_range(i)]
    }

    fn rdeps(&self, i: u32) -> &[u32] {
        let (s, e) = (
            self.rdep_offsets[i as usize] as usize,
            self.rdep_offsets[i as usize + 1] as usize,
        );
        &self.rdep_targets[s..e]
    }

    fn keys_of(&self, idx: &[u32]) -> Vec<NodeKey> {
        idx.iter().map(|&j| self.keys[j as usize].clone()).collect()
    }

    fn key(&self, i: u32) -> &NodeKey {
        &self.keys[i as usize]
    }
}

/// Per-node problems found while resolving edges, before cycles are known.
struct Intrinsic<'a> {
    self_dep: &'a [bool],
    first_missing: &'a [u32],
    missing_keys: &'a [NodeKey],
}

impl Intrinsic<'_> {
    fn reason(&self, i: u32) -> Option<BlockReason> {
        if self.self_dep[i as usize] {
            return Some(BlockReason::SelfDependency);
        }
        match self.first_missing[i as usize] {
            NONE => None,
            m => Some(BlockReason::MissingDependency {
                missing: self.missing_keys[m as usize].clone(),
            }),
        }
    }
}

/// Counting sort of the edges by target; iterating sources in index order keeps each
/// dependents slice sorted for free.
fn reverse_csr(n: usize, offsets: &[u32], targets: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; n + 1];
    for &t in targets {
        counts[t as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    let rdep_offsets = counts.clone();
    let mut fill = counts;
    let mut rdep_targets = vec![0u32; targets.len()];
    for src in 0..n {
        for &t in &targets[offsets[src] as usize..offsets[src + 1] as usize] {
            rdep_targets[fill[t as usize] as usize] = src as u32;
            fill[t as usize] += 1;
        }
    }
    (rdep_offsets, rdep_targets)
}

/// Shared cycle path handed to every member of a cycle: a large cycle must not cost
/// O(members × path length) memory.
type SharedPath = Arc<[NodeKey]>;

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn k(name: &str) -> NodeKey {
        NodeKey::new("trading", name)
    }

    pub fn node(name: &str, deps: &[&str]) -> NodeInput {
        NodeInput {
            key: k(name),
            depends_on: deps.iter().map(|d| k(d)).collect(),
        }
    }

    pub fn keys(names: &[&str]) -> Vec<NodeKey> {
        names.iter().map(|n| k(n)).collect()
    }

    pub fn ord(before: &str, after: &str) -> OrderingEdge {
        OrderingEdge {
            before: k(before),
            after: k(after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn empty_graph_is_valid_and_empty() {
        let g = Graph::build(Vec::new(), &[]);
        assert!(g.is_empty());
        assert_eq!(g.len(), 0);
        assert!(g.is_valid());
        assert!(g.waves().is_empty());
        assert!(g.startup_order().is_empty());
        assert_eq!(
            g.critical_path(|_| std::time::Duration::from_secs(1)),
            CriticalPath::default()
        );
    }

    #[test]
    fn key_display_and_order() {
        assert_eq!(NodeKey::new("ns", "a").to_string(), "ns/a");
        assert!(NodeKey::new("a", "z") < NodeKey::new("b", "a"));
        assert!(NodeKey::new("a", "a") < NodeKey::new("a", "b"));
    }

    #[test]
    fn duplicate_keys_keep_first_occurrence() {
        let g = Graph::build(
            vec![node("a", &["b"]), node("b", &[]), node("a", &["x"])],
            &[],
        );
        assert_eq!(g.len(), 2);
        assert!(
            g.is_valid(),
            "second 'a' (depending on missing x) must be ignored"
        );
        assert_eq!(g.dependencies(&k("a")), keys(&["b"]));
    }

    #[test]
    fn build_refs_matches_build() {
        let input = vec![
            node("top", &["right", "left", "ghost"]),
            node("right", &["base"]),
            node("left", &["base"]),
            node("base", &[]),
            node("left", &["nothing"]),
            node("a", &["b"]),
            node("b", &["a"]),
        ];
        let ordering = [ord("base", "right"), ord("phantom", "a")];
        let owned = Graph::build(input.clone(), &ordering);
        let borrowed = Graph::build_refs(&input, &ordering);
        assert_eq!(owned.errors(), borrowed.errors());
        assert_eq!(owned.blocked(), borrowed.blocked());
        assert_eq!(owned.waves(), borrowed.waves());
        assert_eq!(owned.wave_count(), owned.waves().len());
        assert_eq!(owned.startup_order(), borrowed.startup_order());
        assert_eq!(owned.shutdown_order(), borrowed.shutdown_order());
        assert_eq!(borrowed.dependencies(&k("left")), keys(&["base"]));
    }

    #[test]
    fn duplicate_dependency_entries_collapse() {
        let g = Graph::build(
            vec![node("a", &["b", "b"]), node("b", &[])],
            &[ord("b", "a")],
        );
        assert_eq!(g.dependencies(&k("a")), keys(&["b"]));
        assert_eq!(g.dependents(&k("b")), keys(&["a"]));
        assert_eq!(g.edge_kind(&k("a"), &k("b")), Some(EdgeKind::DependsOn));
    }

    #[test]
    fn unknown_keys_answer_empty() {
        let g = Graph::build(vec![node("a", &[])], &[]);
        let x = k("x");
        assert!(!g.contains(&x));
        assert!(g.contains(&k("a")));
        assert!(g.dependencies(&x).is_empty());
        assert!(g.dependents(&x).is_empty());
        assert!(g.dependency_closure(&x).is_empty());
        assert!(g.wave_of(&x).is_none());
        assert!(g.block_reason(&x).is_none());
        assert!(g.root_cause(&x).is_none());
        assert!(g.edge_kind(&x, &k("a")).is_none());
    }
}

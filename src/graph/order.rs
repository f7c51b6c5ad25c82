//! Blocking, startup waves and start/stop orders.

use std::collections::BTreeMap;

use super::cycles::Sccs;
use super::{BlockReason, Graph, Intrinsic, NONE, NodeKey, SharedPath};

/// Decides, for every platform, whether it is blocked (and why) or which wave it starts in.
///
/// Components arrive dependencies-first (Tarjan emission order), so when a platform is looked
/// at, every dependency outside its own component is already decided: one linear pass suffices.
pub(super) fn classify(
    g: &mut Graph,
    sccs: &Sccs,
    cycle_paths: &[(usize, Vec<u32>)],
    intrinsic: &Intrinsic<'_>,
) {
    let n = g.len();
    let mut shared: Vec<Option<SharedPath>> = vec![None; sccs.count()];
    for (c, path) in cycle_paths {
        shared[*c] = Some(path.iter().map(|&i| g.key(i).clone()).collect());
    }

    let mut wave = vec![NONE; n];
    let mut is_blocked = vec![false; n];
    let mut blocked = BTreeMap::new();
    let mut max_wave = None;
    for (c, shared_path) in shared.iter().enumerate() {
        let comp = sccs.component(c);
        if comp.len() > 1 {
            // `cycle_paths` covers every multi-member component; an empty path is only a
            // fallback that keeps the members blocked should that ever not hold.
            let path = shared_path.clone().unwrap_or_else(|| Vec::new().into());
            for &v in comp {
                is_blocked[v as usize] = true;
                blocked.insert(
                    g.key(v).clone(),
                    BlockReason::InCycle { path: path.clone() },
                );
            }
            continue;
        }
        for &v in comp {
            let deps = g.deps(v);
            let reason = intrinsic.reason(v).or_else(|| {
                // Dependencies are sorted by index == key order: the first blocked one is the
                // smallest.
                deps.iter().find(|&&d| is_blocked[d as usize]).map(|&d| {
                    BlockReason::DependsOnBlocked {
                        blocked: g.key(d).clone(),
                    }
                })
            });
            match reason {
                Some(reason) => {
                    is_blocked[v as usize] = true;
                    blocked.insert(g.key(v).clone(), reason);
                }
                None => {
                    let w = deps
                        .iter()
                        .map(|&d| wave[d as usize] + 1)
                        .max()
                        .unwrap_or(0);
                    wave[v as usize] = w;
                    max_wave = max_wave.max(Some(w));
                }
            }
        }
    }

    // Counting sort by wave; filling in index order keeps each wave sorted by key.
    let wave_count = max_wave.map_or(0, |m| m as usize + 1);
    let mut wave_starts = vec![0u32; wave_count + 1];
    for &w in &wave {
        if w != NONE {
            wave_starts[w as usize + 1] += 1;
        }
    }
    for w in 0..wave_count {
        wave_starts[w + 1] += wave_starts[w];
    }
    let mut fill = wave_starts.clone();
    let mut wave_members = vec![0u32; wave_starts[wave_count] as usize];
    for (v, &w) in wave.iter().enumerate() {
        if w != NONE {
            wave_members[fill[w as usize] as usize] = v as u32;
            fill[w as usize] += 1;
        }
    }
    g.wave = wave;
    g.wave_members = wave_members;
    g.wave_starts = wave_starts;
    g.blocked = blocked;
}

impl Graph {
    /// Startup waves of the unblocked platforms: wave 0 has no dependencies, a platform's wave
    /// is 1 + the highest wave among its dependencies; each wave is sorted by key.
    pub fn waves(&self) -> &[Vec<NodeKey>] {
        self.waves.get_or_init(|| {
            (0..self.wave_count())
                .map(|w| self.keys_of(self.wave_members(w)))
                .collect()
        })
    }

    /// Number of startup waves, without materialising them.
    pub fn wave_count(&self) -> usize {
        self.wave_starts.len().saturating_sub(1)
    }

    /// Members of wave `w` in key order.
    pub(super) fn wave_members(&self, w: usize) -> &[u32] {
        &self.wave_members[self.wave_starts[w] as usize..self.wave_starts[w + 1] as usize]
    }

    /// `None` for unknown and for blocked platforms.
    pub fn wave_of(&self, key: &NodeKey) -> Option<usize> {
        let i = self.index_of(key)?;
        match self.wave[i as usize] {
            NONE => None,
            w => Some(w as usize),
        }
    }

    /// The waves flattened: every platform comes after all of its dependencies.
    pub fn startup_order(&self) -> Vec<NodeKey> {
        // All waves back to back are exactly the unblocked members in wave, then key order.
        self.keys_of(&self.wave_members)
    }

    /// The startup order reversed: every platform comes before all of its dependencies.
    pub fn shutdown_order(&self) -> Vec<NodeKey> {
        self.wave_members
            .iter()
            .rev()
            .map(|&i| self.key(i).clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    const SEED_CHAIN: [&str; 6] = [
        "market-data-service",
        "feature-engineering",
        "ml-inference",
        "strategy-generation",
        "order-management",
        "position-management",
    ];

    fn seed_chain() -> Vec<NodeInput> {
        SEED_CHAIN
            .iter()
            .enumerate()
            .map(|(i, name)| node(name, if i == 0 { &[] } else { &SEED_CHAIN[i - 1..i] }))
            .collect()
    }

    #[test]
    fn seed_chain_has_six_waves_and_reversed_shutdown() {
        let g = Graph::build(seed_chain(), &[]);
        assert!(g.is_valid());
        assert!(g.blocked().is_empty());
        let expected: Vec<Vec<NodeKey>> = SEED_CHAIN.iter().map(|n| vec![k(n)]).collect();
        assert_eq!(g.waves(), &expected[..]);
        assert_eq!(g.startup_order(), keys(&SEED_CHAIN));
        let mut reversed = keys(&SEED_CHAIN);
        reversed.reverse();
        assert_eq!(g.shutdown_order(), reversed);
        assert_eq!(g.wave_of(&k("position-management")), Some(5));
        assert_eq!(g.wave_of(&k("market-data-service")), Some(0));
    }

    #[test]
    fn diamond_puts_siblings_in_one_sorted_wave() {
        let g = Graph::build(
            vec![
                node("top", &["right", "left"]),
                node("right", &["base"]),
                node("left", &["base"]),
                node("base", &[]),
            ],
            &[],
        );
        assert_eq!(
            g.waves(),
            &[keys(&["base"]), keys(&["left", "right"]), keys(&["top"])]
        );
        assert_eq!(g.shutdown_order(), keys(&["top", "right", "left", "base"]));
    }

    #[test]
    fn wave_is_one_plus_max_dependency_wave() {
        // late depends on a (wave 0) and c (wave 2): it must wait for the deeper one.
        let g = Graph::build(
            vec![
                node("a", &[]),
                node("b", &["a"]),
                node("c", &["b"]),
                node("late", &["a", "c"]),
            ],
            &[],
        );
        assert_eq!(g.wave_of(&k("late")), Some(3));
    }

    #[test]
    fn ordering_edges_act_as_dependencies() {
        let g = Graph::build(
            vec![node("db", &[]), node("cache", &[]), node("api", &["db"])],
            &[ord("cache", "db")],
        );
        assert!(g.is_valid());
        assert_eq!(
            g.waves(),
            &[keys(&["cache"]), keys(&["db"]), keys(&["api"])]
        );
        assert_eq!(g.dependencies(&k("db")), keys(&["cache"]));
        assert_eq!(g.dependents(&k("cache")), keys(&["db"]));
        assert_eq!(g.edge_kind(&k("db"), &k("cache")), Some(EdgeKind::Ordering));
        assert_eq!(g.edge_kind(&k("api"), &k("db")), Some(EdgeKind::DependsOn));
        assert_eq!(
            g.dependency_edges(&k("db")),
            vec![(k("cache"), EdgeKind::Ordering)]
        );
        assert_eq!(
            g.dependency_closure(&k("api")),
            keys(&["cache", "db"]).into_iter().collect()
        );
    }

    #[test]
    fn unknown_ordering_edge_is_reported_and_ignored() {
        let g = Graph::build(
            vec![node("a", &[])],
            &[ord("ghost", "a"), ord("ghost", "phantom")],
        );
        assert_eq!(
            g.errors(),
            &[
                GraphError::UnknownOrderingEdge {
                    before: k("ghost"),
                    after: k("a"),
                    unknown: k("ghost"),
                },
                GraphError::UnknownOrderingEdge {
                    before: k("ghost"),
                    after: k("phantom"),
                    unknown: k("ghost"),
                },
                GraphError::UnknownOrderingEdge {
                    before: k("ghost"),
                    after: k("phantom"),
                    unknown: k("phantom"),
                },
            ]
        );
        assert!(
            g.blocked().is_empty(),
            "an unknown ordering edge blocks nothing"
        );
        assert_eq!(g.wave_of(&k("a")), Some(0));
    }

    #[test]
    fn missing_dependency_blocks_platform_and_dependents_only() {
        let g = Graph::build(
            vec![
                node("a", &[]),
                node("b", &["a", "x", "w"]),
                node("c", &["b"]),
                node("d", &["a"]),
            ],
            &[],
        );
        assert_eq!(
            g.errors(),
            &[
                GraphError::MissingDependency {
                    platform: k("b"),
                    missing: k("w"),
                },
                GraphError::MissingDependency {
                    platform: k("b"),
                    missing: k("x"),
                },
            ]
        );
        assert_eq!(
            g.block_reason(&k("b")),
            Some(&BlockReason::MissingDependency { missing: k("w") })
        );
        assert_eq!(
            g.block_reason(&k("c")),
            Some(&BlockReason::DependsOnBlocked { blocked: k("b") })
        );
        assert_eq!(g.waves(), &[keys(&["a"]), keys(&["d"])]);
        let (root, reason) = g.root_cause(&k("c")).expect("c is blocked");
        assert_eq!(root, &k("b"));
        assert!(reason.message().contains("trading/w"));
    }

    #[test]
    fn cross_namespace_missing_is_its_own_kind() {
        let present = NodeKey::new("infra", "db");
        let g = Graph::build(
            vec![
                NodeInput {
                    key: present.clone(),
                    depends_on: vec![],
                },
                NodeInput {
                    key: k("app"),
                    depends_on: vec![present.clone(), NodeKey::new("infra", "queue")],
                },
            ],
            &[],
        );
        assert_eq!(
            g.errors(),
            &[GraphError::CrossNamespaceMissing {
                platform: k("app"),
                missing: NodeKey::new("infra", "queue"),
            }]
        );
        assert_eq!(g.dependencies(&k("app")), vec![present]);
        assert_eq!(
            g.block_reason(&k("app")),
            Some(&BlockReason::MissingDependency {
                missing: NodeKey::new("infra", "queue")
            })
        );
    }

    #[test]
    fn self_dependency_is_reported_once_and_blocks() {
        let g = Graph::build(
            vec![node("a", &["a", "a"]), node("b", &["a"]), node("c", &[])],
            &[ord("c", "c")],
        );
        assert_eq!(
            g.errors(),
            &[
                GraphError::SelfDependency { platform: k("a") },
                GraphError::SelfDependency { platform: k("c") },
            ]
        );
        assert_eq!(g.block_reason(&k("a")), Some(&BlockReason::SelfDependency));
        assert_eq!(
            g.block_reason(&k("b")),
            Some(&BlockReason::DependsOnBlocked { blocked: k("a") })
        );
        assert!(g.dependencies(&k("a")).is_empty(), "no self edge is stored");
        assert!(g.waves().is_empty());
    }

    #[test]
    fn nearest_blocked_dependency_is_the_smallest_key() {
        let g = Graph::build(
            vec![
                node("top", &["z", "m"]),
                node("z", &["gone"]),
                node("m", &["gone"]),
            ],
            &[],
        );
        assert_eq!(
            g.block_reason(&k("top")),
            Some(&BlockReason::DependsOnBlocked { blocked: k("m") })
        );
    }
}

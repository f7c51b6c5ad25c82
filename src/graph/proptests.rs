//! Property tests against naive reference implementations.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::test_util::*;
use super::*;

fn name(i: usize) -> String {
    format!("n{i:02}")
}

/// Nodes `0..n`; each edge `(a, b)` means "a depends on b". `b >= n` is a missing dependency.
fn build(n: usize, edges: &[(usize, usize)]) -> Graph {
    let mut deps: BTreeMap<usize, Vec<NodeKey>> = (0..n).map(|i| (i, Vec::new())).collect();
    for &(a, b) in edges {
        if let Some(list) = deps.get_mut(&a) {
            list.push(k(&name(b)));
        }
    }
    Graph::build(
        deps.into_iter().map(|(i, d)| NodeInput {
            key: k(&name(i)),
            depends_on: d,
        }),
        &[],
    )
}

fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (1usize..25).prop_flat_map(|n| {
        let edges = prop::collection::vec((0..n, 0..n), 0..60).prop_map(|v| {
            v.into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.max(b), a.min(b)))
                .collect::<Vec<_>>()
        });
        (Just(n), edges)
    })
}

fn any_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    // Targets up to n + 2 include missing dependencies; a == b includes self-dependencies.
    (1usize..16).prop_flat_map(|n| (Just(n), prop::collection::vec((0..n, 0..n + 2), 0..30)))
}

proptest! {
    #[test]
    fn dag_edges_go_from_earlier_to_later_wave((n, edges) in dag()) {
        let g = build(n, &edges);
        prop_assert!(g.is_valid());
        prop_assert!(g.blocked().is_empty());
        prop_assert_eq!(g.startup_order().len(), n);
        for &(a, b) in &edges {
            let (wa, wb) = (g.wave_of(&k(&name(a))), g.wave_of(&k(&name(b))));
            prop_assert!(wb < wa, "{} (wave {:?}) depends on {} (wave {:?})", a, wa, b, wb);
        }
        for (w, wave) in g.waves().iter().enumerate() {
            prop_assert!(wave.windows(2).all(|p| p[0] < p[1]), "wave {} not sorted", w);
            // A platform in wave w > 0 has a dependency in wave w - 1 (waves are tight).
            for key in wave.iter().filter(|_| w > 0) {
                prop_assert!(g.dependencies(key).iter().any(|d| g.wave_of(d) == Some(w - 1)));
            }
        }
    }

    #[test]
    fn shutdown_order_puts_platforms_before_their_dependencies((n, edges) in dag()) {
        let g = build(n, &edges);
        let order = g.shutdown_order();
        prop_assert_eq!(order.len(), n);
        let pos: BTreeMap<&NodeKey, usize> = order.iter().enumerate().map(|(i, k)| (k, i)).collect();
        for key in &order {
            for dep in g.dependencies(key) {
                prop_assert!(pos[key] < pos[&dep], "{} must stop before {}", key, dep);
            }
        }
    }

    #[test]
    fn cycles_are_real_and_blocking_matches_reference((n, edges) in any_graph()) {
        let g = build(n, &edges);
        let succ = |v: usize| -> Vec<usize> {
            edges.iter().filter(|&&(a, b)| a == v && b < n && b != v).map(|&(_, b)| b).collect()
        };
        let reach = |v: usize| -> BTreeSet<usize> {
            let mut seen = BTreeSet::new();
            let mut stack = succ(v);
            while let Some(w) = stack.pop() {
                if seen.insert(w) {
                    stack.extend(succ(w));
                }
            }
            seen
        };
        let in_cycle = |v: usize| reach(v).contains(&v);
        let bad = |v: usize| {
            in_cycle(v) || edges.iter().any(|&(a, b)| a == v && (b >= n || b == v))
        };

        for e in g.errors() {
            if let GraphError::Cycle { path } = e {
                prop_assert!(path.len() >= 3);
                prop_assert_eq!(path.first(), path.last());
                prop_assert_eq!(path.iter().min(), path.first(), "starts at smallest key");
                for pair in path.windows(2) {
                    prop_assert!(g.dependencies(&pair[0]).contains(&pair[1]),
                        "{} → {} is not an edge", pair[0], pair[1]);
                }
            }
        }
        let cycle_nodes: usize = (0..n).filter(|&v| in_cycle(v)).count();
        let reported: usize = g.errors().iter().filter(|e| e.category() == "Cycle").count();
        prop_assert_eq!(cycle_nodes == 0, reported == 0);

        for v in 0..n {
            let key = k(&name(v));
            let expected = bad(v) || reach(v).into_iter().any(bad);
            prop_assert_eq!(g.block_reason(&key).is_some(), expected, "platform {}", v);
            prop_assert_eq!(g.wave_of(&key).is_some(), !expected);
            if in_cycle(v) {
                let is_cycle_reason = matches!(g.block_reason(&key), Some(BlockReason::InCycle { .. }));
                prop_assert!(is_cycle_reason);
            }
            if let Some(BlockReason::DependsOnBlocked { blocked }) = g.block_reason(&key) {
                prop_assert!(g.dependencies(&key).contains(blocked));
                prop_assert!(g.block_reason(blocked).is_some());
            }
        }
    }
}

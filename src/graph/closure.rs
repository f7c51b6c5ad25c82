//! Transitive dependency / dependent sets.

use std::collections::BTreeSet;

use super::{Graph, NodeKey};

#[derive(Clone, Copy)]
pub(super) enum Direction {
    Dependencies,
    Dependents,
}

/// Everything reachable from `key` in `direction`, excluding `key` itself (even when it is on a
/// cycle and so reachable from itself). Covers blocked platforms too: "what does X need" is a
/// question about the declared graph, not about what can start.
pub(super) fn closure(g: &Graph, key: &NodeKey, direction: Direction) -> BTreeSet<NodeKey> {
    let Some(start) = g.index_of(key) else {
        return BTreeSet::new();
    };
    let next = |v: u32| match direction {
        Direction::Dependencies => g.deps(v),
        Direction::Dependents => g.rdeps(v),
    };
    let mut seen = vec![false; g.len()];
    seen[start as usize] = true;
    let mut stack = vec![start];
    let mut found = Vec::new();
    while let Some(v) = stack.pop() {
        for &w in next(v) {
            if !seen[w as usize] {
                seen[w as usize] = true;
                found.push(w);
                stack.push(w);
            }
        }
    }
    // Sorting indices first lets the BTreeSet be built from already-ordered keys.
    found.sort_unstable();
    found.into_iter().map(|i| g.key(i).clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn set(names: &[&str]) -> BTreeSet<NodeKey> {
        keys(names).into_iter().collect()
    }

    fn sample() -> Graph {
        // base ← mid1 ← top, base ← mid2 ← top, other ← mid2; lone has nothing.
        Graph::build(
            vec![
                node("base", &[]),
                node("other", &[]),
                node("mid1", &["base"]),
                node("mid2", &["base", "other"]),
                node("top", &["mid1", "mid2"]),
                node("lone", &[]),
            ],
            &[],
        )
    }

    #[test]
    fn dependency_closure_is_transitive_and_excludes_self() {
        let g = sample();
        assert_eq!(
            g.dependency_closure(&k("top")),
            set(&["base", "mid1", "mid2", "other"])
        );
        assert_eq!(g.dependency_closure(&k("mid1")), set(&["base"]));
        assert!(g.dependency_closure(&k("base")).is_empty());
    }

    #[test]
    fn dependents_closure_is_transitive_and_excludes_self() {
        let g = sample();
        assert_eq!(
            g.dependents_closure(&k("base")),
            set(&["mid1", "mid2", "top"])
        );
        assert_eq!(g.dependents_closure(&k("other")), set(&["mid2", "top"]));
        assert!(g.dependents_closure(&k("lone")).is_empty());
    }

    #[test]
    fn direct_neighbours_are_sorted() {
        let g = sample();
        assert_eq!(g.dependencies(&k("top")), keys(&["mid1", "mid2"]));
        assert_eq!(g.dependents(&k("base")), keys(&["mid1", "mid2"]));
    }

    #[test]
    fn closures_on_a_cycle_exclude_the_start() {
        let g = Graph::build(
            vec![node("a", &["b"]), node("b", &["a"]), node("c", &["a"])],
            &[],
        );
        assert_eq!(g.dependency_closure(&k("a")), set(&["b"]));
        assert_eq!(g.dependents_closure(&k("a")), set(&["b", "c"]));
    }
}

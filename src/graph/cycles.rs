//! Strongly connected components (iterative Tarjan) and one readable cycle per component.
//!
//! Iterative because a 100,000-platform chain would overflow the thread stack with recursion.

use std::collections::VecDeque;

use super::{Graph, NONE};

/// Components in Tarjan emission order. Edges point from a platform to its dependencies, so a
/// component is emitted only after every component it depends on: this is already a
/// dependencies-first order, which `order::classify` uses to decide blocking and waves in one
/// pass.
pub(super) struct Sccs {
    /// Members of all components back to back, each component's members sorted by index.
    pub members: Vec<u32>,
    /// `members[start[c]..start[c + 1]]` are the members of component `c`.
    pub start: Vec<u32>,
}

impl Sccs {
    pub fn count(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    pub fn component(&self, c: usize) -> &[u32] {
        &self.members[self.start[c] as usize..self.start[c + 1] as usize]
    }
}

pub(super) fn tarjan(g: &Graph) -> Sccs {
    let n = g.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    // Explicit call stack: (node, position of the next dependency edge to look at).
    let mut call: Vec<(u32, usize)> = Vec::new();
    let mut next_index = 0u32;
    let mut members = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n + 1);
    start.push(0u32);

    for root in 0..n as u32 {
        if index[root as usize] != NONE {
            continue;
        }
        index[root as usize] = next_index;
        low[root as usize] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        call.push((root, g.dep_range(root).start));

        while let Some(top) = call.last_mut() {
            let v = top.0;
            let end = g.dep_range(v).end;
            if top.1 < end {
                let w = g.dep_targets[top.1];
                top.1 += 1;
                let wi = w as usize;
                if index[wi] == NONE {
                    index[wi] = next_index;
                    low[wi] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[wi] = true;
                    call.push((w, g.dep_range(w).start));
                } else if on_stack[wi] {
                    low[v as usize] = low[v as usize].min(index[wi]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent as usize] = low[parent as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let first = members.len();
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                members[first..].sort_unstable();
                start.push(members.len() as u32);
            }
        }
    }
    Sccs { members, start }
}

/// For every component with more than one member (self-loops never enter the adjacency, so
/// singletons are acyclic): the shortest cycle through its smallest member, as node indices
/// `[s, .., s]` following dependency edges. Returned as `(component, path)` in component order.
pub(super) fn cycle_paths(g: &Graph, sccs: &Sccs) -> Vec<(usize, Vec<u32>)> {
    let mut comp_of = vec![NONE; g.len()];
    for c in 0..sccs.count() {
        for &v in sccs.component(c) {
            comp_of[v as usize] = c as u32;
        }
    }
    // Components are disjoint, so one parent array serves every search without resetting.
    let mut parent = vec![NONE; g.len()];
    let mut queue = VecDeque::new();
    let mut out = Vec::new();
    for c in 0..sccs.count() {
        let comp = sccs.component(c);
        if comp.len() < 2 {
            continue;
        }
        let s = comp[0];
        queue.clear();
        queue.push_back(s);
        parent[s as usize] = s;
        let mut closing = None;
        'bfs: while let Some(u) = queue.pop_front() {
            for &w in g.deps(u) {
                if w == s {
                    closing = Some(u);
                    break 'bfs;
                }
                if comp_of[w as usize] == c as u32 && parent[w as usize] == NONE {
                    parent[w as usize] = u;
                    queue.push_back(w);
                }
            }
        }
        // Every member of a component reaches its smallest member, so `closing` is always
        // found; skipping instead of panicking keeps a hypothetical bug from killing the
        // operator.
        let Some(mut u) = closing else { continue };
        let mut rev = vec![s];
        while u != s {
            rev.push(u);
            u = parent[u as usize];
        }
        rev.push(s);
        rev.reverse();
        out.push((c, rev));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn cycle_errors(g: &Graph) -> Vec<Vec<NodeKey>> {
        g.errors()
            .iter()
            .filter_map(|e| match e {
                GraphError::Cycle { path } => Some(path.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_cycle_is_reported_from_smallest_key_and_closes() {
        let g = Graph::build(
            vec![node("c", &["a"]), node("a", &["b"]), node("b", &["c"])],
            &[],
        );
        assert_eq!(cycle_errors(&g), vec![keys(&["a", "b", "c", "a"])]);
        assert!(!g.is_valid());
        for name in ["a", "b", "c"] {
            match g.block_reason(&k(name)) {
                Some(BlockReason::InCycle { path }) => {
                    assert_eq!(&path[..], &keys(&["a", "b", "c", "a"])[..])
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(g.waves().is_empty());
    }

    #[test]
    fn shortest_cycle_through_smallest_member_is_chosen() {
        // a → b → c → d → a and a shortcut c → a: the reported path is a → b → c → a.
        let g = Graph::build(
            vec![
                node("a", &["b"]),
                node("b", &["c"]),
                node("c", &["d", "a"]),
                node("d", &["a"]),
            ],
            &[],
        );
        assert_eq!(cycle_errors(&g), vec![keys(&["a", "b", "c", "a"])]);
        assert!(matches!(
            g.block_reason(&k("d")),
            Some(BlockReason::InCycle { .. })
        ));
    }

    #[test]
    fn one_cycle_per_component_and_rest_of_graph_usable() {
        let g = Graph::build(
            vec![
                node("a", &["b"]),
                node("b", &["a"]),
                node("x", &["y"]),
                node("y", &["x"]),
                node("free", &[]),
                node("user", &["free"]),
                node("victim", &["user", "y"]),
            ],
            &[],
        );
        assert_eq!(
            cycle_errors(&g),
            vec![keys(&["a", "b", "a"]), keys(&["x", "y", "x"])]
        );
        assert_eq!(g.waves(), &[keys(&["free"]), keys(&["user"])]);
        assert_eq!(
            g.block_reason(&k("victim")),
            Some(&BlockReason::DependsOnBlocked { blocked: k("y") })
        );
        assert_eq!(g.blocked().len(), 5);
    }

    #[test]
    fn cycle_through_ordering_edge_is_detected() {
        let g = Graph::build(vec![node("a", &["b"]), node("b", &[])], &[ord("a", "b")]);
        assert_eq!(cycle_errors(&g), vec![keys(&["a", "b", "a"])]);
        assert_eq!(g.edge_kind(&k("b"), &k("a")), Some(EdgeKind::Ordering));
    }

    #[test]
    fn long_chain_and_long_cycle_do_not_overflow_the_stack() {
        let n = 100_000;
        let name = |i: usize| format!("p{i:06}");
        let chain: Vec<NodeInput> = (0..n)
            .map(|i| NodeInput {
                key: k(&name(i)),
                depends_on: if i == 0 {
                    vec![]
                } else {
                    vec![k(&name(i - 1))]
                },
            })
            .collect();
        let g = Graph::build(chain.clone(), &[]);
        assert_eq!(g.waves().len(), n);
        assert_eq!(g.dependency_closure(&k(&name(n - 1))).len(), n - 1);

        let mut ring = chain;
        ring[0].depends_on.push(k(&name(n - 1)));
        let g = Graph::build(ring, &[]);
        let cycles = cycle_errors(&g);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n + 1);
        assert_eq!(g.blocked().len(), n);
    }
}

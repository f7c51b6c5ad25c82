//! Critical path: the longest chain of time-to-ready along dependencies.

use std::time::Duration;

use super::{CriticalPath, Graph, NONE};

impl Graph {
    /// The dependency chain with the largest summed `ready_after` among the unblocked platforms
    /// (blocked ones never start, so they cannot be on the path). No stack can come up faster
    /// than `total`. The chain is in start order; ties go to the smallest keys. Sums saturate at
    /// `Duration::MAX` instead of overflowing. `ready_after` is called once per platform.
    pub fn critical_path(&self, ready_after: impl Fn(&super::NodeKey) -> Duration) -> CriticalPath {
        let n = self.len();
        let mut finish = vec![Duration::ZERO; n];
        let mut via = vec![NONE; n];
        let mut best: Option<u32> = None;
        // Waves are a topological order, so every dependency is finished before it is needed.
        for &v in &self.wave_members {
            let key = self.key(v);
            let mut start = Duration::ZERO;
            // Strictly greater keeps the first (smallest-keyed) dependency on ties.
            for &d in self.deps(v) {
                if via[v as usize] == NONE || finish[d as usize] > start {
                    start = finish[d as usize];
                    via[v as usize] = d;
                }
            }
            finish[v as usize] = start.saturating_add(ready_after(key));
            best = match best {
                Some(b) if finish[b as usize] > finish[v as usize] => Some(b),
                Some(b) if finish[b as usize] == finish[v as usize] && b < v => Some(b),
                _ => Some(v),
            };
        }
        let Some(end) = best else {
            return CriticalPath::default();
        };
        let mut chain = Vec::new();
        let mut v = end;
        // Each hop goes to a dependency in an earlier wave, so this takes at most `n` steps.
        for _ in 0..n {
            chain.push(self.key(v).clone());
            v = via[v as usize];
            if v == NONE {
                break;
            }
        }
        chain.reverse();
        CriticalPath {
            chain,
            total: finish[end as usize],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_util::*;
    use super::super::*;
    use super::*;

    fn secs(map: &[(&str, u64)]) -> impl Fn(&NodeKey) -> Duration {
        let m: HashMap<NodeKey, Duration> = map
            .iter()
            .map(|(n, s)| (k(n), Duration::from_secs(*s)))
            .collect();
        move |key| m.get(key).copied().unwrap_or_default()
    }

    #[test]
    fn picks_the_heaviest_chain_not_the_longest() {
        // base → slow → top (1 + 10 + 1) beats base → a → b → top (1 + 2 + 2 + 1).
        let g = Graph::build(
            vec![
                node("base", &[]),
                node("slow", &["base"]),
                node("a", &["base"]),
                node("b", &["a"]),
                node("top", &["slow", "b"]),
            ],
            &[],
        );
        let cp = g.critical_path(secs(&[
            ("base", 1),
            ("slow", 10),
            ("a", 2),
            ("b", 2),
            ("top", 1),
        ]));
        assert_eq!(cp.chain, keys(&["base", "slow", "top"]));
        assert_eq!(cp.total, Duration::from_secs(12));
    }

    #[test]
    fn ties_go_to_smallest_keys() {
        let g = Graph::build(
            vec![node("x", &[]), node("y", &[]), node("top", &["y", "x"])],
            &[],
        );
        let cp = g.critical_path(|_| Duration::from_secs(1));
        assert_eq!(cp.chain, keys(&["x", "top"]));
        assert_eq!(cp.total, Duration::from_secs(2));
    }

    #[test]
    fn blocked_platforms_are_ignored() {
        let g = Graph::build(
            vec![
                node("ok", &[]),
                node("broken", &["missing"]),
                node("after", &["broken"]),
            ],
            &[],
        );
        let cp = g.critical_path(secs(&[("ok", 3), ("broken", 100), ("after", 100)]));
        assert_eq!(cp.chain, keys(&["ok"]));
        assert_eq!(cp.total, Duration::from_secs(3));
    }

    #[test]
    fn seed_chain_total_is_the_sum_and_saturates() {
        let names = ["m", "f", "i", "s", "o", "p"];
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| node(n, if i == 0 { &[] } else { &names[i - 1..i] }))
            .collect::<Vec<_>>();
        let g = Graph::build(nodes, &[]);
        let cp = g.critical_path(|_| Duration::from_secs(5));
        assert_eq!(cp.chain, keys(&names));
        assert_eq!(cp.total, Duration::from_secs(30));
        let huge = g.critical_path(|_| Duration::MAX);
        assert_eq!(huge.total, Duration::MAX);
    }

    #[test]
    fn ordering_edges_count_on_the_path() {
        let g = Graph::build(vec![node("a", &[]), node("b", &[])], &[ord("a", "b")]);
        let cp = g.critical_path(secs(&[("a", 2), ("b", 3)]));
        assert_eq!(cp.chain, keys(&["a", "b"]));
        assert_eq!(cp.total, Duration::from_secs(5));
    }
}

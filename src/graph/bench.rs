//! Build-time benchmark of the graph engine on a random DAG (not a test: callers decide where
//! to run it, e.g. a `bench` subcommand or a release-mode example).

use std::time::Instant;

use super::{Graph, NodeInput, NodeKey};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GraphBenchReport {
    pub platforms: usize,
    /// Dependency entries generated (a handful may be duplicates, which the graph collapses).
    pub edges: usize,
    /// `Graph::build_refs`: sorting, interning, edge resolution, validation, cycles, blocking
    /// and waves (the input stays the caller's: neither generating nor freeing it is timed).
    pub build_ms: f64,
    /// Materialising the startup order from the waves computed by `build`.
    pub waves_ms: f64,
    pub total_ms: f64,
    /// Number of startup waves.
    pub waves: usize,
}

/// Generates a random DAG with `platforms` nodes and `edges` dependency entries (each from a
/// later to an earlier generated node, so it is acyclic), deterministically from `seed`, and
/// times building it and producing its startup order. Input generation is not timed.
pub fn run_graph_bench(platforms: usize, edges: usize, seed: u64) -> GraphBenchReport {
    let mut rng = XorShift::new(seed);
    let key = |i: usize| NodeKey::new("bench", format!("svc-{i}"));
    // Edges first, then each platform's list in one go: that is how deserialised resources
    // lie in memory (one object after another), so the timed lookups do not measure a
    // pathologically scattered heap instead of the graph engine.
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(edges);
    if platforms >= 2 {
        while pairs.len() < edges {
            let a = rng.below(platforms);
            let b = rng.below(platforms);
            if a != b {
                pairs.push((a.max(b), a.min(b)));
            }
        }
    }
    let generated = pairs.len();
    pairs.sort_unstable();
    let mut pairs = pairs.into_iter().peekable();
    let nodes: Vec<NodeInput> = (0..platforms)
        .map(|i| {
            let mut depends_on = Vec::new();
            while let Some((_, dependency)) = pairs.next_if(|&(dependent, _)| dependent == i) {
                depends_on.push(key(dependency));
            }
            NodeInput {
                key: key(i),
                depends_on,
            }
        })
        .collect();

    let t0 = Instant::now();
    let graph = Graph::build_refs(&nodes, &[]);
    let built = t0.elapsed();
    let t1 = Instant::now();
    let order = graph.startup_order();
    let ordered = t1.elapsed();
    // Keeps the optimiser from discarding the order.
    std::hint::black_box(&order);

    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    GraphBenchReport {
        platforms,
        edges: generated,
        build_ms: ms(built),
        waves_ms: ms(ordered),
        total_ms: ms(built + ordered),
        waves: graph.wave_count(),
    }
}

/// xorshift64*: tiny, deterministic, good enough to scatter edges.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        XorShift(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_builds_a_valid_dag_deterministically() {
        let a = run_graph_bench(500, 1500, 7);
        let b = run_graph_bench(500, 1500, 7);
        assert_eq!((a.platforms, a.edges), (500, 1500));
        assert!(a.waves > 1);
        assert_eq!(a.waves, b.waves, "same seed, same graph");
        assert!(a.total_ms >= a.build_ms);
    }

    #[test]
    fn degenerate_sizes_do_not_hang_or_panic() {
        assert_eq!(run_graph_bench(0, 10, 1).waves, 0);
        let one = run_graph_bench(1, 10, 1);
        assert_eq!((one.edges, one.waves), (0, 1));
    }
}

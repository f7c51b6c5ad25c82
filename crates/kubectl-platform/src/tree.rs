//! `tree [GROUP]`: the dependency tree with live phases, read like `systemd-analyze
//! critical-chain`. Each platform that is up shows when it became Ready (`status.startedAt`,
//! relative to the first of them, `@`), how long after its gate that was (`+`), and its gate:
//! the dependency that became Ready last before it did, i.e. the one it was waiting for. The
//! critical chain is `Graph::critical_path` over those measured times, so it is the chain of
//! gates that ends at the platform that became Ready last. Each platform hangs under its gate
//! (else under its latest-wave dependency), so the DAG prints as a tree without repeats.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use platform_operator::api::control::Snapshot;
use platform_operator::crd::Phase;
use platform_operator::graph::{Graph, NodeInput, NodeKey};

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: NodeKey,
    pub depth: usize,
    /// Tree-drawing prefix, e.g. `│ └─`.
    pub prefix: String,
    pub phase: String,
    /// Since the first platform in view became Ready.
    pub ready_at: Option<Duration>,
    /// From its gate's Ready (or the first Ready) to its own.
    pub took: Option<Duration>,
    pub gate: Option<NodeKey>,
    pub critical: bool,
    /// Why it is not up: its graph error, what stopped it, or what it waits for.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub rows: Vec<Row>,
    /// Start order, with the time each became Ready.
    pub chain: Vec<(NodeKey, Duration)>,
}

/// When a platform that is up became Ready.
fn ready_at(snapshot: &Snapshot, key: &NodeKey) -> Option<Timestamp> {
    let status = snapshot.platforms.get(key)?.status.as_ref()?;
    match status.phase {
        Some(Phase::Running | Phase::Degraded) => status.started_at.as_ref().map(|t| t.0),
        _ => None,
    }
}

/// The dependency that became Ready last, no later than `key` did; ties to the smallest key,
/// as `critical_path` breaks them. Only for platforms outside graph errors.
fn gate(snapshot: &Snapshot, key: &NodeKey) -> Option<(NodeKey, Timestamp)> {
    let graph = &snapshot.topology.graph;
    graph.wave_of(key)?;
    let own = ready_at(snapshot, key)?;
    graph
        .dependencies(key)
        .into_iter()
        .filter_map(|d| ready_at(snapshot, &d).filter(|t| *t <= own).map(|t| (d, t)))
        .max_by(|(da, ta), (db, tb)| ta.cmp(tb).then(db.cmp(da)))
}

fn since(t: Timestamp, origin: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(origin)).unwrap_or_default()
}

pub fn build(snapshot: &Snapshot, scope: &BTreeSet<NodeKey>) -> Tree {
    let graph = &snapshot.topology.graph;
    // The scope's up platforms and their gates, transitively (a gate may be out of scope).
    let mut measured: BTreeMap<NodeKey, Timestamp> = BTreeMap::new();
    let mut todo: Vec<NodeKey> = scope.iter().cloned().collect();
    while let Some(key) = todo.pop() {
        if measured.contains_key(&key) || graph.wave_of(&key).is_none() {
            continue;
        }
        let Some(at) = ready_at(snapshot, &key) else {
            continue;
        };
        measured.insert(key.clone(), at);
        todo.extend(gate(snapshot, &key).map(|(g, _)| g));
    }
    let origin = measured.values().min().copied();
    let took = |key: &NodeKey| -> Option<Duration> {
        let own = *measured.get(key)?;
        let from = gate(snapshot, key).map_or(origin?, |(_, t)| t);
        Some(since(own, from))
    };
    // Who waited for whom, by the clock: edges to dependencies Ready no later than the
    // dependent, so each platform's finish in `critical_path` is exactly its measured Ready.
    let waited = Graph::build(
        measured.iter().map(|(key, at)| NodeInput {
            key: key.clone(),
            depends_on: graph
                .dependencies(key)
                .into_iter()
                .filter(|d| measured.get(d).is_some_and(|t| t <= at))
                .collect(),
        }),
        &[],
    );
    let path = waited.critical_path(|key| took(key).unwrap_or_default());
    let critical: BTreeSet<&NodeKey> = path.chain.iter().collect();
    let chain = match origin {
        Some(origin) => path
            .chain
            .iter()
            .filter_map(|k| Some((k.clone(), since(*measured.get(k)?, origin))))
            .collect(),
        None => Vec::new(),
    };

    let parent = |key: &NodeKey| -> Option<NodeKey> {
        graph.wave_of(key)?;
        if let Some((g, _)) = gate(snapshot, key).filter(|(g, _)| scope.contains(g)) {
            return Some(g);
        }
        // Waves strictly decrease along dependencies, so parents never loop.
        graph
            .dependencies(key)
            .into_iter()
            .filter(|d| scope.contains(d))
            .max_by_key(|d| (graph.wave_of(d), Reverse(d.clone())))
    };
    let mut children: BTreeMap<Option<NodeKey>, Vec<NodeKey>> = BTreeMap::new();
    for key in scope {
        children.entry(parent(key)).or_default().push(key.clone());
    }
    let order = |key: &NodeKey| {
        (
            !measured.contains_key(key),
            measured.get(key).copied(),
            key.clone(),
        )
    };
    for list in children.values_mut() {
        list.sort_by_key(order);
    }

    let mut layout: Vec<(NodeKey, usize, String)> = Vec::new();
    let mut stack: Vec<(NodeKey, usize, String, bool)> = children
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|k| (k.clone(), 0, String::new(), true))
        .collect();
    // Roots are flush left; below them, the usual box-drawing connectors.
    while let Some((key, depth, indent, last)) = stack.pop() {
        let (prefix, below) = match depth {
            0 => (String::new(), String::new()),
            _ if last => (format!("{indent}└─"), format!("{indent}  ")),
            _ => (format!("{indent}├─"), format!("{indent}│ ")),
        };
        let kids = children
            .get(&Some(key.clone()))
            .cloned()
            .unwrap_or_default();
        for (i, kid) in kids.iter().enumerate().rev() {
            stack.push((kid.clone(), depth + 1, below.clone(), i + 1 == kids.len()));
        }
        layout.push((key, depth, prefix));
    }
    let rows = layout
        .into_iter()
        .map(|(key, depth, prefix)| Row {
            phase: phase_of(snapshot, &key).to_string(),
            ready_at: measured.get(&key).zip(origin).map(|(t, o)| since(*t, o)),
            took: took(&key),
            gate: gate(snapshot, &key).map(|(g, _)| g),
            critical: critical.contains(&key),
            note: (!measured.contains_key(&key))
                .then(|| note(snapshot, &key))
                .flatten(),
            key,
            depth,
            prefix,
        })
        .collect();
    Tree { rows, chain }
}

fn phase_of(snapshot: &Snapshot, key: &NodeKey) -> Phase {
    snapshot
        .platforms
        .get(key)
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

/// Why a platform is not up: its graph error, what stopped it, or what it waits for.
fn note(snapshot: &Snapshot, key: &NodeKey) -> Option<String> {
    if let Some(message) = snapshot.topology.graph.block_message(key) {
        return Some(message);
    }
    let status = snapshot.platforms.get(key)?.status.as_ref()?;
    if let Some(by) = &status.stopped_by {
        return Some(format!("stopped by {by}"));
    }
    (status.phase == Some(Phase::WaitingForDependencies) && !status.blocked_by.is_empty())
        .then(|| format!("waits for {}", status.blocked_by.join(", ")))
}

/// `0s`, `8s`, `1.5s`, `250ms`, `2m5s`, `1h0m3s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = |ms: u128| {
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
        }
    };
    let (h, m, rest) = (ms / 3_600_000, (ms / 60_000) % 60, ms % 60_000);
    match (h, m) {
        (0, 0) => seconds(rest),
        (0, m) => format!("{m}m{}", seconds(rest)),
        (h, m) => format!("{h}h{m}m{}", seconds(rest)),
    }
}

/// The critical chain first, then one line per platform; `*` marks the chain. Names in
/// `home` are shown bare, others as `namespace/name`.
pub fn render(tree: &Tree, home: &str) -> String {
    let name = |k: &NodeKey| {
        if k.namespace == home {
            k.name.clone()
        } else {
            k.to_string()
        }
    };
    let mut out = String::new();
    match tree.chain.last() {
        Some((_, total)) => {
            let links: Vec<String> = tree
                .chain
                .iter()
                .map(|(k, at)| format!("{} @{}", name(k), human(*at)))
                .collect();
            let _ = writeln!(
                out,
                "critical chain: {} (Ready after {})",
                links.join(" → "),
                human(*total)
            );
        }
        None => out.push_str("critical chain: none (no platform is Ready)\n"),
    }
    let cells: Vec<[String; 5]> = tree
        .rows
        .iter()
        .map(|r| {
            [
                format!("{}{}", r.prefix, name(&r.key)),
                r.phase.clone(),
                r.ready_at.map_or("-".into(), |d| format!("@{}", human(d))),
                r.took.map_or("-".into(), |d| format!("+{}", human(d))),
                match (&r.gate, &r.note) {
                    (Some(g), _) => name(g),
                    (None, Some(note)) => note.clone(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    let header = ["PLATFORM", "PHASE", "READY", "TOOK", "GATED BY"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            cells
                .iter()
                .chain([&header])
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |mark: &str, c: &[String; 5]| {
        let mut text = mark.to_string();
        for (cell, width) in c.iter().zip(&widths) {
            let pad = width - cell.chars().count();
            let _ = write!(text, " {cell}{} ", " ".repeat(pad));
        }
        let _ = write!(text, " {}", c[4]);
        format!("{}\n", text.trim_end())
    };
    out.push_str(&line(" ", &header));
    for (row, c) in tree.rows.iter().zip(&cells) {
        out.push_str(&line(if row.critical { "*" } else { " " }, c));
    }
    out
}

#[cfg(test)]
mod tests;

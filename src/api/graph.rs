//! `GET /api/v1/graph`: the dependency graph with live phases, as JSON, Graphviz DOT or a
//! Mermaid flowchart. Edges point from a platform to what it depends on.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::graph::{EdgeKind, NodeKey};

use super::control::Snapshot;

/// The formats the graph is rendered in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GraphFormat {
    #[default]
    Json,
    Dot,
    Mermaid,
}

/// Which part of the graph, and how.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphQuery {
    /// `json` (default), `dot` or `mermaid`.
    pub format: Option<GraphFormat>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only the members of this group.
    pub group: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    pub namespace: String,
    pub name: String,
    pub platform_id: Option<String>,
    pub phase: String,
    pub startup_wave: Option<usize>,
    /// The graph error that blocks it, if any.
    pub blocked: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphEdge {
    /// The dependent, as `namespace/name`.
    pub from: String,
    /// The dependency, as `namespace/name`.
    pub to: String,
    /// `dependsOn` (declared) or `ordering` (from a group's startup ordering).
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphView {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// The graph of the platforms `include` accepts, with edges between them.
pub fn graph_view(snapshot: &Snapshot, include: impl Fn(&NodeKey) -> bool) -> GraphView {
    let graph = &snapshot.topology.graph;
    let mut keys: Vec<&NodeKey> = snapshot.platforms.keys().filter(|k| include(k)).collect();
    keys.sort();
    let chosen: BTreeSet<&NodeKey> = keys.iter().copied().collect();
    let nodes = keys
        .iter()
        .map(|key| {
            let platform = snapshot.platforms.get(*key);
            GraphNode {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                platform_id: platform.and_then(|p| p.spec.platform_id.clone()),
                phase: platform
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.phase)
                    .unwrap_or_default()
                    .to_string(),
                startup_wave: graph.wave_of(key),
                blocked: graph.block_message(key),
            }
        })
        .collect();
    let edges = keys
        .iter()
        .flat_map(|key| {
            graph
                .dependency_edges(key)
                .into_iter()
                .filter(|(dep, _)| chosen.contains(dep))
                .map(move |(dep, kind)| GraphEdge {
                    from: key.to_string(),
                    to: dep.to_string(),
                    kind: match kind {
                        EdgeKind::DependsOn => "dependsOn",
                        EdgeKind::Ordering => "ordering",
                    }
                    .to_string(),
                })
        })
        .collect();
    GraphView { nodes, edges }
}

/// Graphviz DOT: one node per platform labelled with its phase, filled by health.
pub fn render_dot(view: &GraphView) -> String {
    let mut out = String::from(
        "digraph platforms {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\"];\n",
    );
    for node in &view.nodes {
        out.push_str(&format!(
            "  \"{}/{}\" [label=\"{}\\n{}\", fillcolor=\"{}\"];\n",
            node.namespace,
            node.name,
            node.name,
            node.phase,
            colour(&node.phase)
        ));
    }
    for edge in &view.edges {
        let style = if edge.kind == "ordering" {
            " [style=dashed]"
        } else {
            ""
        };
        out.push_str(&format!("  \"{}\" -> \"{}\"{style};\n", edge.from, edge.to));
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart, each node with its phase and a class per health.
pub fn render_mermaid(view: &GraphView) -> String {
    let id = |namespace: &str, name: &str| {
        format!("{namespace}__{name}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    let mut out = String::from("flowchart LR\n");
    for node in &view.nodes {
        out.push_str(&format!(
            "  {}[\"{}<br/>{}\"]:::{}\n",
            id(&node.namespace, &node.name),
            node.name,
            node.phase,
            class(&node.phase)
        ));
    }
    for edge in &view.edges {
        let (from_ns, from_name) = edge.from.split_once('/').unwrap_or(("", &edge.from));
        let (to_ns, to_name) = edge.to.split_once('/').unwrap_or(("", &edge.to));
        let arrow = if edge.kind == "ordering" {
            "-.->"
        } else {
            "-->"
        };
        out.push_str(&format!(
            "  {} {arrow} {}\n",
            id(from_ns, from_name),
            id(to_ns, to_name)
        ));
    }
    out.push_str("  classDef healthy fill:#c8e6c9\n  classDef progressing fill:#fff9c4\n  classDef failed fill:#ffcdd2\n  classDef stopped fill:#e0e0e0\n");
    out
}

fn class(phase: &str) -> &'static str {
    match phase {
        "Running" => "healthy",
        "Degraded" | "Failed" | "Blocked" => "failed",
        "Stopped" => "stopped",
        _ => "progressing",
    }
}

fn colour(phase: &str) -> &'static str {
    match class(phase) {
        "healthy" => "palegreen",
        "failed" => "lightpink",
        "stopped" => "lightgrey",
        _ => "lightyellow",
    }
}

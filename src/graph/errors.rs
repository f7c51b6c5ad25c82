//! Validation errors and block reasons, with their human-readable messages.

use std::fmt;

use super::{NodeKey, SharedPath};

/// A problem found while building the graph. `Ord` (variant order, then keys) is the order of
/// [`super::Graph::errors`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, serde::Serialize)]
pub enum GraphError {
    /// `platform` depends on a platform of its own namespace that does not exist.
    MissingDependency { platform: NodeKey, missing: NodeKey },
    /// `platform` depends on a platform in another namespace that does not exist.
    CrossNamespaceMissing { platform: NodeKey, missing: NodeKey },
    /// `platform` lists itself (or an ordering edge orders it after itself).
    SelfDependency { platform: NodeKey },
    /// An ordering edge names a platform that does not exist (`unknown` is `before` or `after`;
    /// if both are unknown there is one error for each).
    UnknownOrderingEdge {
        before: NodeKey,
        after: NodeKey,
        unknown: NodeKey,
    },
    /// One real cycle per strongly connected component: starts at the smallest key in it,
    /// each step `a → b` means "a depends on b", and the path closes (first == last).
    Cycle { path: Vec<NodeKey> },
}

impl GraphError {
    /// Stable machine-readable kind, e.g. for a status condition reason or a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            GraphError::MissingDependency { .. } => "MissingDependency",
            GraphError::CrossNamespaceMissing { .. } => "CrossNamespaceMissing",
            GraphError::SelfDependency { .. } => "SelfDependency",
            GraphError::UnknownOrderingEdge { .. } => "UnknownOrderingEdge",
            GraphError::Cycle { .. } => "Cycle",
        }
    }

    /// The message with keys of `namespace` shown by bare name (for a status inside that
    /// namespace); keys of other namespaces keep their `namespace/` prefix.
    pub fn message_in(&self, namespace: &str) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write(&mut out, Some(namespace));
        out
    }

    fn write(&self, f: &mut impl fmt::Write, ns: Option<&str>) -> fmt::Result {
        let q = |key: &NodeKey| quoted(key, ns);
        match self {
            GraphError::MissingDependency { platform, missing } => write!(
                f,
                "platform {} depends on {}, which does not exist",
                q(platform),
                q(missing)
            ),
            GraphError::CrossNamespaceMissing { platform, missing } => write!(
                f,
                "platform {} depends on {} in namespace \"{}\", which does not exist",
                q(platform),
                q(missing),
                missing.namespace
            ),
            GraphError::SelfDependency { platform } => {
                write!(f, "platform {} depends on itself", q(platform))
            }
            GraphError::UnknownOrderingEdge {
                before,
                after,
                unknown,
            } => write!(
                f,
                "ordering edge {} before {} names {}, which does not exist",
                q(before),
                q(after),
                q(unknown)
            ),
            GraphError::Cycle { path } => {
                write!(f, "dependency cycle: {}", render_cycle_in(path, ns))
            }
        }
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// Why a platform cannot be started. Only the first applicable reason is kept, in this
/// priority: in a cycle, self-dependency, missing dependency (smallest missing key), depends on
/// a blocked platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum BlockReason {
    /// Every member of a strongly connected component shares the component's cycle path (it
    /// runs through the component's smallest key, not necessarily through this platform).
    InCycle {
        #[serde(serialize_with = "serialize_path")]
        path: SharedPath,
    },
    MissingDependency {
        missing: NodeKey,
    },
    SelfDependency,
    /// The smallest-keyed direct dependency that is blocked; follow it (or use
    /// [`super::Graph::root_cause`]) to reach the underlying problem.
    DependsOnBlocked {
        blocked: NodeKey,
    },
}

impl BlockReason {
    /// Stable machine-readable kind, for status condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            BlockReason::InCycle { .. } => "InCycle",
            BlockReason::MissingDependency { .. } => "MissingDependency",
            BlockReason::SelfDependency => "SelfDependency",
            BlockReason::DependsOnBlocked { .. } => "DependsOnBlocked",
        }
    }

    /// A sentence for the blocked platform's status.
    pub fn message(&self) -> String {
        match self {
            BlockReason::InCycle { path } => {
                format!("blocked by dependency cycle {}", render_cycle(path))
            }
            BlockReason::MissingDependency { missing } => {
                format!("blocked: dependency \"{missing}\" does not exist")
            }
            BlockReason::SelfDependency => "blocked: the platform depends on itself".to_string(),
            BlockReason::DependsOnBlocked { blocked } => {
                format!("blocked: dependency \"{blocked}\" is blocked")
            }
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Renders a cycle path as `a → b → c → a`. When every key shares one namespace the names are
/// shown bare with the namespace once at the end (`a → b → a (namespace "trading")`), otherwise
/// each key is `namespace/name`.
pub fn render_cycle(path: &[NodeKey]) -> String {
    render_cycle_in(path, None)
}

fn render_cycle_in(path: &[NodeKey], ns: Option<&str>) -> String {
    let single = path
        .first()
        .map(|first| first.namespace.as_str())
        .filter(|first_ns| path.iter().all(|k| k.namespace == *first_ns));
    let names: Vec<String> = path
        .iter()
        .map(|k| match (single, ns) {
            (Some(_), _) => k.name.clone(),
            (None, Some(ns)) if k.namespace == ns => k.name.clone(),
            _ => k.to_string(),
        })
        .collect();
    let mut out = names.join(" → ");
    // Inside the namespace's own context the suffix would only repeat what the reader knows.
    if let Some(single_ns) = single
        && ns != Some(single_ns)
    {
        out.push_str(&format!(" (namespace \"{single_ns}\")"));
    }
    out
}

fn quoted(key: &NodeKey, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if key.namespace == ns => format!("\"{}\"", key.name),
        _ => format!("\"{key}\""),
    }
}

fn serialize_path<S: serde::Serializer>(path: &SharedPath, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(path.iter())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn missing_dependency_message() {
        let e = GraphError::MissingDependency {
            platform: k("b"),
            missing: k("x"),
        };
        assert_eq!(
            e.to_string(),
            "platform \"trading/b\" depends on \"trading/x\", which does not exist"
        );
        assert_eq!(
            e.message_in("trading"),
            "platform \"b\" depends on \"x\", which does not exist"
        );
        assert_eq!(e.category(), "MissingDependency");
    }

    #[test]
    fn cross_namespace_message_keeps_foreign_namespace() {
        let e = GraphError::CrossNamespaceMissing {
            platform: k("b"),
            missing: NodeKey::new("infra", "db"),
        };
        assert_eq!(
            e.message_in("trading"),
            "platform \"b\" depends on \"infra/db\" in namespace \"infra\", which does not exist"
        );
        assert_eq!(e.category(), "CrossNamespaceMissing");
    }

    #[test]
    fn other_messages_and_categories() {
        let s = GraphError::SelfDependency { platform: k("a") };
        assert_eq!(s.to_string(), "platform \"trading/a\" depends on itself");
        assert_eq!(s.category(), "SelfDependency");
        let u = GraphError::UnknownOrderingEdge {
            before: k("x"),
            after: k("a"),
            unknown: k("x"),
        };
        assert_eq!(
            u.message_in("trading"),
            "ordering edge \"x\" before \"a\" names \"x\", which does not exist"
        );
        assert_eq!(u.category(), "UnknownOrderingEdge");
    }

    #[test]
    fn cycle_rendering_single_and_mixed_namespaces() {
        let path = keys(&["a", "b", "c", "a"]);
        assert_eq!(render_cycle(&path), "a → b → c → a (namespace \"trading\")");
        let e = GraphError::Cycle { path: path.clone() };
        assert_eq!(e.message_in("trading"), "dependency cycle: a → b → c → a");
        assert!(e.to_string().starts_with("dependency cycle: a → b → c → a"));
        assert_eq!(e.category(), "Cycle");
        let mixed = vec![k("a"), NodeKey::new("infra", "db"), k("a")];
        assert_eq!(render_cycle(&mixed), "trading/a → infra/db → trading/a");
        assert_eq!(render_cycle(&[]), "");
    }

    #[test]
    fn block_reason_messages_name_the_cause() {
        let path: SharedPath = keys(&["a", "b", "a"]).into();
        let m = BlockReason::InCycle { path }.message();
        assert!(m.contains("a → b → a"), "{m}");
        let m = BlockReason::MissingDependency { missing: k("x") }.message();
        assert!(m.contains("trading/x"), "{m}");
        let m = BlockReason::DependsOnBlocked { blocked: k("b") }.to_string();
        assert!(m.contains("trading/b"), "{m}");
        assert_eq!(BlockReason::SelfDependency.category(), "SelfDependency");
    }

    #[test]
    fn block_reason_serializes_path_as_list() {
        let path: SharedPath = keys(&["a", "b", "a"]).into();
        let v = serde_json::to_value(BlockReason::InCycle { path }).unwrap_or_default();
        assert_eq!(v["InCycle"]["path"][1]["name"], "b");
        assert_eq!(v["InCycle"]["path"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn errors_sort_by_kind_then_keys() {
        let mut v = [
            GraphError::Cycle {
                path: keys(&["a", "b", "a"]),
            },
            GraphError::SelfDependency { platform: k("z") },
            GraphError::MissingDependency {
                platform: k("b"),
                missing: k("x"),
            },
            GraphError::MissingDependency {
                platform: k("a"),
                missing: k("x"),
            },
        ];
        v.sort();
        let cats: Vec<_> = v.iter().map(GraphError::category).collect();
        assert_eq!(
            cats,
            [
                "MissingDependency",
                "MissingDependency",
                "SelfDependency",
                "Cycle"
            ]
        );
        assert!(
            matches!(&v[0], GraphError::MissingDependency { platform, .. } if *platform == k("a"))
        );
    }
}

//! The project's CRDs on a real API server: they install and are accepted, the server prints
//! Platforms with the printer columns, `kubectl explain` reads well, and the example stack
//! applies with kubectl's (server-side, OpenAPI-based) field validation on. Skips without
//! `PMP_TEST_KUBECONFIG` (see tests/real_support).

mod real_support;

use std::path::Path;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::Value;

use platform_operator::manifest::split_documents;

use real_support::{RealEnv, TEST_MANAGER, eventually};

const PLATFORM_COLUMNS: [&str; 7] = ["Name", "Phase", "Ready", "Deps", "Restarts", "Wave", "Age"];

#[tokio::test]
async fn crds_install_by_server_side_apply_without_warnings() {
    let Some(env) = real_support::env().await else {
        return;
    };
    // install_crds waits for Established and NamesAccepted on each.
    let crds = env.install_crds().await;
    assert_eq!(
        crds.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["platforms.pmp.dev", "platformgroups.pmp.dev"]
    );
    // The same objects through kubectl, which prints the server's warnings (for example on
    // formats the API server does not know): there must be none.
    let file = std::env::temp_dir().join(format!("pmp-real-crds-{}.json", std::process::id()));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds});
    std::fs::write(&file, serde_json::to_vec(&list).expect("json")).expect("temp file");
    let out = env.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        &format!("--field-manager={TEST_MANAGER}"),
        "-f",
        &file.to_string_lossy(),
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(out.success, "kubectl apply of the CRDs: {}", out.stderr);
    assert!(
        !out.stderr.contains("Warning"),
        "the API server warned about the CRDs:\n{}",
        out.stderr
    );
}

/// deploy/examples/trading-stack.yaml moved into `namespace` (its Namespace document dropped),
/// as a file kubectl can apply.
fn trading_stack_in(namespace: &str) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/trading-stack.yaml");
    let text = std::fs::read_to_string(&source).expect("trading-stack.yaml");
    let (mut documents, mut errors) = (Vec::new(), Vec::new());
    split_documents(&source, &text, &mut documents, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let mut out = String::new();
    for mut document in documents {
        if document.kind() == "Namespace" {
            continue;
        }
        document.value["metadata"]["namespace"] = Value::String(namespace.into());
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&document.value).expect("json"));
        out.push('\n');
    }
    let file = std::env::temp_dir().join(format!("pmp-real-{namespace}.yaml"));
    std::fs::write(&file, out).expect("temp file");
    file
}

/// The trading stack applied with kubectl as a user would, validation on (kubectl's default
/// `--validate=strict` asks the server for strict field validation against the OpenAPI schema).
async fn apply_trading_stack(env: &RealEnv, namespace: &str) {
    let file = trading_stack_in(namespace);
    let out = env.kubectl(&["apply", "--server-side", "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    assert!(
        out.success,
        "kubectl apply --server-side of the trading stack failed:\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        !out.stderr.contains("Warning"),
        "warnings applying the trading stack:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.lines().count(),
        7,
        "one group and six platforms applied:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn example_stack_applies_with_validation_and_prints_the_printer_columns() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("crds").await;
    apply_trading_stack(&env, &ns.name).await;

    // The API server's Table, as kubectl get asks for it.
    let mut request = kube::core::Request::new(format!(
        "/apis/pmp.dev/v1alpha1/namespaces/{}/platforms",
        ns.name
    ))
    .list(&ListParams::default())
    .expect("request");
    request.headers_mut().insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io"
            .parse()
            .expect("header"),
    );
    let table: Value = env.client.request(request).await.expect("Table");
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, PLATFORM_COLUMNS);
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "{table}");
    for row in rows {
        assert_eq!(
            row["cells"].as_array().map(Vec::len),
            Some(PLATFORM_COLUMNS.len())
        );
    }

    let out = env.kubectl_ok(&["get", "plat", "-n", &ns.name]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "READY", "DEPS", "RESTARTS", "WAVE", "AGE"],
        "{out}"
    );
    let mut names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "feature-engineering",
            "market-data-service",
            "ml-inference",
            "order-management",
            "position-management",
            "strategy-generation"
        ]
    );
    let groups = env.kubectl_ok(&["get", "pgroup", "-n", &ns.name, "-o", "name"]);
    assert_eq!(groups.trim(), "platformgroup.pmp.dev/trading");
}

#[tokio::test]
async fn kubectl_explain_prints_descriptions_as_paragraphs() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    // The OpenAPI document follows the CRD a moment after it is Established.
    let explain = |field: &str| {
        let field = field.to_string();
        let env = &env;
        async move {
            eventually(
                Duration::from_secs(30),
                &format!("kubectl explain {field}"),
                || {
                    let out = env.kubectl(&["explain", &field]);
                    async move { out.success.then_some(out.stdout) }
                },
            )
            .await
        }
    };
    let depends_on = explain("platform.spec.dependsOn").await;
    assert!(
        depends_on.contains("FIELD: dependsOn <[]Object>"),
        "{depends_on}"
    );
    let description = section(&depends_on, "DESCRIPTION:");
    assert!(
        description.starts_with(
            "Platforms that must be Ready before this one starts, and that are stopped only after this one has stopped."
        ),
        "DESCRIPTION of dependsOn:\n{depends_on}"
    );
    assert!(
        depends_on.contains("name\t<string> -required-"),
        "{depends_on}"
    );
    for field in [
        "platform.spec.dependsOn",
        "platform.spec",
        "platformgroup.spec",
    ] {
        let out = if field == "platform.spec.dependsOn" {
            depends_on.clone()
        } else {
            explain(field).await
        };
        let broken = broken_lines(&out);
        assert!(
            broken.is_empty(),
            "kubectl explain {field}: lines broken mid-sentence (the next word would have fit): {broken:#?}\n{out}"
        );
    }
}

/// The text of a section (`DESCRIPTION:`) of `kubectl explain`, its lines joined by spaces.
fn section(out: &str, title: &str) -> String {
    out.lines()
        .skip_while(|l| l.trim() != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Description lines that end mid-sentence although the next line's first word would have
/// fitted: a line break from the source text rather than kubectl's wrapping. kubectl wraps at
/// a fixed width; the longest line printed is a lower bound of it.
fn broken_lines(out: &str) -> Vec<(String, String)> {
    let width = out.lines().map(str::len).max().unwrap_or(0);
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = out.lines().collect();
    let mut broken = Vec::new();
    for pair in lines.windows(2) {
        let (line, next) = (pair[0], pair[1]);
        // Description text is indented by at least four spaces (field headers by two).
        let prose = indent(line) >= 4 && indent(next) == indent(line) && !next.trim().is_empty();
        if !prose || line.trim_end().ends_with(['.', ':', ';', '!', '?']) {
            continue;
        }
        let next_word = next.split_whitespace().next().unwrap_or("");
        if line.trim_end().len() + 1 + next_word.len() <= width {
            broken.push((line.to_string(), next.to_string()));
        }
    }
    broken
}

#[test]
fn broken_lines_finds_a_source_line_break_and_passes_wrapping() {
    let wrapped = "DESCRIPTION:\n    Platforms that must be Ready before this one starts, and that are stopped\n    only after this one has stopped.\n";
    assert!(broken_lines(wrapped).is_empty());
    let broken = "DESCRIPTION:\n    Platforms that must be Ready before this one starts, and that are stopped\n    only after this one\n    has stopped.\n";
    assert_eq!(
        broken_lines(broken),
        [(
            "    only after this one".to_string(),
            "    has stopped.".to_string()
        )]
    );
}

//! `kubectl platform status|tree|graph` and the errors, against the operator in the simulated
//! cluster.

mod support;

use platform_operator::api::graph::{graph_view, render_dot, render_mermaid};
use platform_operator::api::views::platform_status;
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;
use platform_operator::graph::NodeKey;
use serde_json::Value;
use support::Env;

const READY_AFTER: &str = "sim.pmp.dev/ready-after";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_readable_and_its_json_is_the_rest_apis_view() {
    let env = Env::start().await;
    env.create(vec![
        platform("feed").build(),
        platform("pricer")
            .depends_on(["feed"])
            .platform_id("pricer_svc")
            .config("window", "30s")
            .build(),
    ])
    .await;
    env.wait_for(&["feed", "pricer"], Phase::Running).await;

    let text = env.ok(&["status", "pricer"]).await;
    for line in [
        "Name:         pricer",
        "Phase:        Running",
        "Replicas:     1/1 ready",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        text.contains("  feed  Running  true"),
        "the dependency: {text}"
    );
    assert!(text.contains("  window  30s"), "the config: {text}");
    assert_eq!(
        env.ok(&["status", "pricer_svc"]).await,
        text,
        "the legacy id names it too"
    );

    let json: Value = serde_json::from_str(&env.ok(&["status", "pricer", "-o", "json"]).await)
        .expect("-o json is JSON");
    let (_, snapshot) = env.snapshot().await;
    let pricer = &snapshot.platforms[&NodeKey::new("default", "pricer")];
    let view = serde_json::to_value(platform_status(&snapshot, pricer)).expect("view");
    assert_eq!(
        json, view,
        "the same document as GET /api/v1/platform/pricer/status"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_shows_when_each_became_ready_and_what_gated_it() {
    let env = Env::start().await;
    // a and b start together; c needs both, so it waits for b, the slower; d needs only a.
    env.create(vec![
        platform("a").pod_annotation(READY_AFTER, "2s").build(),
        platform("b").pod_annotation(READY_AFTER, "10s").build(),
        platform("c")
            .depends_on(["a", "b"])
            .pod_annotation(READY_AFTER, "1s")
            .build(),
        platform("d")
            .depends_on(["a"])
            .pod_annotation(READY_AFTER, "1s")
            .build(),
    ])
    .await;
    env.wait_for(&["a", "b", "c", "d"], Phase::Running).await;

    let out = env.ok(&["tree"]).await;
    let mut lines = out.lines();
    let chain = lines.next().expect("the critical chain");
    assert!(
        chain.starts_with("critical chain: b @") && chain.contains(" → c @"),
        "{out}"
    );
    let rows: Vec<Vec<&str>> = lines
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| {
            r.iter()
                .find(|c| c.ends_with(|ch: char| ch.is_ascii_lowercase()))
                .copied()
                .unwrap_or("")
        })
        .map(|n| n.trim_start_matches(['└', '├', '─', '│']))
        .collect();
    assert_eq!(
        names,
        ["a", "d", "b", "c"],
        "by readiness, each under its gate:\n{out}"
    );
    let row = |name: &str| {
        rows.iter()
            .find(|r| {
                r.iter()
                    .any(|c| c.trim_start_matches(['└', '├', '─']) == name)
            })
            .expect("row")
    };
    assert_eq!(
        row("c").first(),
        Some(&"*"),
        "c is on the critical chain:\n{out}"
    );
    assert_eq!(row("c").last(), Some(&"b"), "c was gated by b:\n{out}");
    assert_eq!(row("d").last(), Some(&"a"), "d was gated by a:\n{out}");
    assert_ne!(row("a").first(), Some(&"*"), "a is not critical:\n{out}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_renders_dot_mermaid_and_json() {
    let env = Env::start().await;
    env.create(vec![
        platform("a").build(),
        platform("b").depends_on(["a"]).build(),
    ])
    .await;
    env.wait_for(&["a", "b"], Phase::Running).await;
    let (_, snapshot) = env.snapshot().await;
    let view = graph_view(&snapshot, |k| k.namespace == "default");

    let dot = env.ok(&["graph", "-o", "dot"]).await;
    assert!(dot.contains("\"default/b\" -> \"default/a\";"), "{dot}");
    assert_eq!(dot, render_dot(&view));
    let mermaid = env.ok(&["graph", "-o", "mermaid"]).await;
    assert!(mermaid.contains("default__b --> default__a"), "{mermaid}");
    assert_eq!(mermaid, render_mermaid(&view));
    let json: Value = serde_json::from_str(&env.ok(&["graph", "-o", "json"]).await).expect("JSON");
    assert_eq!(json, serde_json::to_value(&view).expect("view"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_impossible_actions_exit_1_and_usage_errors_2() {
    let env = Env::start().await;
    env.create(vec![platform("a").stopped().build()]).await;
    env.wait_for(&["a"], Phase::Stopped).await;

    for args in [
        &["status", "nope"][..],
        &["stop", "nope"],
        &["start", "nope", "--wait"],
    ] {
        let run = env.kubectl(args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(
            run.stderr.trim(),
            "error: platform \"nope\" not found in namespace \"default\"",
            "{args:?}"
        );
    }
    let run = env.kubectl(&["-n", "elsewhere", "status", "a"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("not found in namespace \"elsewhere\""),
        "{run:?}"
    );
    let run = env.kubectl(&["tree", "no-such-group"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("platform group \"no-such-group\" not found"),
        "{run:?}"
    );

    let run = env.kubectl(&["restart", "a"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("a is Stopped, not running"), "{run:?}");
    let a = env.platform("a").await;
    assert!(
        a.metadata.annotations.unwrap_or_default().is_empty(),
        "nothing written when the action is not possible"
    );

    for args in [&["frobnicate"][..], &["start"], &["graph", "-o", "png"]] {
        let run = env.kubectl(args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    env.shutdown().await;
}

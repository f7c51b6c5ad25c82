use std::path::PathBuf;

use super::*;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/trading-stack.yaml")
}

fn plan_text(yaml: &str) -> Plan {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    crate::manifest::split_documents(
        std::path::Path::new("t.yaml"),
        yaml,
        &mut documents,
        &mut errors,
    );
    let mut stack = check_documents(documents, "default");
    stack.errors.extend(errors);
    plan_stack(&stack)
}

fn platform_yaml(name: &str, deps: &[&str]) -> String {
    let deps: String = deps.iter().map(|d| format!("    - name: {d}\n")).collect();
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!("  dependsOn:\n{deps}")
    };
    format!(
        "---\napiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: {name}\nspec:\n  image: x\n{deps}"
    )
}

#[test]
fn the_trading_stack_comes_up_in_six_waves_in_chain_order() {
    let plan = plan_files(&[example()], "default");
    assert!(plan.is_clean(), "{}", render_text(&plan));
    let expected = [
        "market-data-service",
        "feature-engineering",
        "ml-inference",
        "strategy-generation",
        "order-management",
        "position-management",
    ];
    let waves: Vec<Vec<String>> = expected.iter().map(|n| vec![n.to_string()]).collect();
    assert_eq!(plan.waves, waves);
    let reversed: Vec<String> = expected.iter().rev().map(|n| n.to_string()).collect();
    assert_eq!(plan.shutdown_order, reversed);
    assert_eq!(plan.critical_chain.chain.len(), 6);
    assert_eq!(
        plan.critical_chain.worst_case_seconds,
        60 + 120 + 180 + 90 + 60 + 60
    );
    assert_eq!(plan.groups[0].members.len(), 6);
}

#[test]
fn a_cycle_is_an_error_with_its_path() {
    let yaml = platform_yaml("a", &["c"])
        + &platform_yaml("b", &["a"])
        + &platform_yaml("c", &["b"])
        + &platform_yaml("free", &[]);
    let plan = plan_text(&yaml);
    assert!(!plan.is_clean());
    assert!(
        plan.graph_errors
            .iter()
            .any(|e| e.contains("a → c → b → a")),
        "{:?}",
        plan.graph_errors
    );
    assert_eq!(plan.blocked.len(), 3);
    assert_eq!(
        plan.waves,
        vec![vec!["free".to_string()]],
        "unrelated platforms still plan"
    );
}

#[test]
fn a_missing_dependency_is_an_error_naming_it() {
    let plan = plan_text(&platform_yaml("a", &["ghost"]));
    assert!(!plan.is_clean());
    assert!(
        plan.graph_errors.iter().any(|e| e.contains("ghost")),
        "{:?}",
        plan.graph_errors
    );
    assert!(plan.blocked.contains_key("a"));
}

#[test]
fn an_invalid_field_names_file_document_and_field() {
    let yaml = platform_yaml("a", &[])
        + &platform_yaml("b", &[]).replace("image: x", "image: x\n  replicas: -1");
    let plan = plan_text(&yaml);
    let text = render_text(&plan);
    assert!(text.contains("error: t.yaml (document 2): Platform default/b is invalid:\n  - spec.replicas: Invalid value: -1"), "{text}");
    assert_eq!(plan.platforms, 1, "the valid document is still planned");
}

#[test]
fn a_platform_in_two_groups_is_reported() {
    let group = |name: &str| {
        format!(
            "---\napiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels:\n      s: t\n"
        )
    };
    let yaml = platform_yaml("a", &[]).replace("  name: a\n", "  name: a\n  labels:\n    s: t\n")
        + &group("g1")
        + &group("g2");
    let plan = plan_text(&yaml);
    assert!(
        plan.graph_errors
            .iter()
            .any(|e| e.contains("selected by several groups: g1, g2")),
        "{:?}",
        plan.graph_errors
    );
}

#[test]
fn json_output_has_the_waves() {
    let plan = plan_files(&[example()], "default");
    let json = serde_json::to_value(&plan).expect("plan serializes");
    assert_eq!(json["waves"][0][0], "market-data-service");
    assert_eq!(json["shutdownOrder"][0], "position-management");
}

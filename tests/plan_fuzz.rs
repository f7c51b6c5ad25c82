//! `plan` must never panic, whatever it is given: random bytes, random YAML structure, and
//! random mutations of a valid stack.

use proptest::prelude::*;

use platform_operator::manifest::{check_documents, split_documents};
use platform_operator::plan::{plan_stack, render_text};

fn plan_of(text: &str) -> String {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    split_documents(
        std::path::Path::new("fuzz.yaml"),
        text,
        &mut documents,
        &mut errors,
    );
    let mut stack = check_documents(documents, "default");
    stack.errors.extend(errors);
    render_text(&plan_stack(&stack))
}

fn yaml_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z/ -]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("dependsOn".to_string()),
                    Just("spec".to_string()),
                    Just("replicas".to_string()),
                    Just("healthCheck".to_string()),
                    Just("selector".to_string()),
                    Just("namespace".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_text_never_panics(text in "(?s).{0,400}") {
        plan_of(&text);
    }

    #[test]
    fn random_structures_under_our_kinds_never_panic(
        kind in prop_oneof![Just("Platform"), Just("PlatformGroup")],
        metadata in yaml_value(),
        spec in yaml_value(),
    ) {
        let document = serde_json::json!({
            "apiVersion": "pmp.dev/v1alpha1",
            "kind": kind,
            "metadata": metadata,
            "spec": spec,
        });
        let text = serde_saphyr::to_string(&document).expect("serializable");
        plan_of(&text);
    }

    #[test]
    fn mutated_example_never_panics(cut in 0usize..6000, insert in "[-:{}\\[\\] a-z0-9\n]{0,10}") {
        let example = include_str!("../deploy/examples/trading-stack.yaml");
        let mut at = cut.min(example.len());
        while !example.is_char_boundary(at) {
            at -= 1;
        }
        let text = format!("{}{}{}", &example[..at], insert, &example[at..]);
        plan_of(&text);
    }
}

use std::path::Path;

use super::*;

fn documents(text: &str) -> (Vec<Document>, Vec<ManifestError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    split_documents(Path::new("stack.yaml"), text, &mut documents, &mut errors);
    (documents, errors)
}

fn check(text: &str) -> Stack {
    let (docs, errors) = documents(text);
    assert!(errors.is_empty(), "{errors:?}");
    check_documents(docs, "default")
}

const GOOD: &str = "
apiVersion: pmp.dev/v1alpha1
kind: Platform
metadata:
  name: b
spec:
  image: busybox
  dependsOn:
    - name: a
";

#[test]
fn documents_keep_their_index_and_a_broken_one_does_not_hide_the_rest() {
    let text = "---\nkind: A\n---\n# only a comment\n---\nkind: [unclosed\n---\nkind: D\n";
    let (docs, errors) = documents(text);
    let indices: Vec<usize> = docs.iter().map(|d| d.source.index).collect();
    assert_eq!(indices, vec![1, 4]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].origin.index, 3);
    assert!(
        errors[0].problem.starts_with("invalid YAML"),
        "{}",
        errors[0].problem
    );
}

#[test]
fn a_scalar_document_is_an_error_not_a_panic() {
    let (_, errors) = documents("just a string\n");
    assert_eq!(errors.len(), 1);
}

#[test]
fn a_valid_platform_is_parsed_with_defaults_and_namespace() {
    let stack = check(GOOD);
    assert!(stack.errors.is_empty(), "{:?}", stack.errors);
    let (_, platform) = &stack.platforms[0];
    assert_eq!(platform.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(platform.spec.replicas, 1);
    assert_eq!(platform.spec.depends_on[0].name, "a");
}

#[test]
fn an_unknown_field_names_its_path() {
    let stack = check(&GOOD.replace("  image: busybox", "  image: busybox\n  replica: 3"));
    assert_eq!(stack.errors.len(), 1);
    assert_eq!(stack.errors[0].causes[0].field, "spec.replica");
    assert!(
        stack.errors[0]
            .to_string()
            .contains("stack.yaml (document 1): Platform default/b")
    );
}

#[test]
fn a_value_out_of_range_names_field_and_limit() {
    let stack = check(&GOOD.replace("  image: busybox", "  image: busybox\n  replicas: 5000"));
    let message = stack.errors[0].to_string();
    assert!(message.contains("spec.replicas"), "{message}");
    assert!(message.contains("1000"), "{message}");
}

#[test]
fn other_kinds_pass_through_and_foreign_pmp_kinds_are_errors() {
    let stack = check(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\napiVersion: pmp.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    assert_eq!(stack.other.len(), 1);
    assert_eq!(stack.errors.len(), 1);
    assert!(stack.errors[0].problem.contains("unknown kind"));
}

#[test]
fn bad_names_and_versions_are_reported() {
    let stack = check(&GOOD.replace("name: b", "name: B_"));
    assert!(
        stack.errors[0].problem.contains("metadata.name"),
        "{:?}",
        stack.errors
    );
    let stack = check(&GOOD.replace("v1alpha1", "v9"));
    assert!(stack.errors[0].problem.contains("unsupported apiVersion"));
}

#[test]
fn dns_subdomain_names() {
    assert!(is_dns_subdomain("market-data-service"));
    assert!(is_dns_subdomain("a.b"));
    assert!(!is_dns_subdomain("-a"));
    assert!(!is_dns_subdomain("A"));
    assert!(!is_dns_subdomain(""));
    assert!(!is_dns_subdomain("a..b"));
}

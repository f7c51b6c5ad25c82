//! Every validation rule of the CRDs, with a manifest that must be rejected and one that must
//! pass, checked by the same code the simulated API server admits objects with.

use platform_operator::manifest::{check_documents, split_documents};

/// Errors for one manifest (empty when it is accepted).
fn problems(yaml: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    split_documents(
        std::path::Path::new("case.yaml"),
        yaml,
        &mut documents,
        &mut errors,
    );
    let stack = check_documents(documents, "default");
    errors
        .into_iter()
        .chain(stack.errors)
        .flat_map(|e| {
            if e.causes.is_empty() {
                vec![e.problem]
            } else {
                e.causes.iter().map(ToString::to_string).collect()
            }
        })
        .collect()
}

fn platform(spec: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\nspec:\n  image: nginx\n{spec}"
    )
}

fn group(spec: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: stack\nspec:\n  selector:\n    matchLabels:\n      s: t\n{spec}"
    )
}

/// `bad` must be rejected with a message containing `expected`; `good` must pass.
fn rule(bad: &str, good: &str, expected: &str) {
    let found = problems(bad);
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?} for:\n{bad}\ngot {found:?}"
    );
    let accepted = problems(good);
    assert!(
        accepted.is_empty(),
        "expected acceptance of:\n{good}\ngot {accepted:?}"
    );
}

#[test]
fn depends_on_entries_are_unique() {
    rule(
        &platform("  dependsOn:\n    - name: db\n    - name: db\n"),
        &platform("  dependsOn:\n    - name: db\n    - name: db\n      namespace: shared\n"),
        "spec.dependsOn: dependsOn entries must be unique",
    );
}

#[test]
fn no_self_dependency() {
    rule(
        &platform("  dependsOn:\n    - name: web\n"),
        &platform("  dependsOn:\n    - name: web\n      namespace: other\n"),
        "a platform cannot depend on itself",
    );
}

#[test]
fn depends_on_is_bounded() {
    let many: String = (0..65).map(|i| format!("    - name: dep-{i}\n")).collect();
    let enough: String = (0..64).map(|i| format!("    - name: dep-{i}\n")).collect();
    rule(
        &platform(&format!("  dependsOn:\n{many}")),
        &platform(&format!("  dependsOn:\n{enough}")),
        "spec.dependsOn: Too many: 65",
    );
}

#[test]
fn dependency_names_are_dns_labels() {
    rule(
        &platform("  dependsOn:\n    - name: Not_A_Name\n"),
        &platform("  dependsOn:\n    - name: a-name\n"),
        "spec.dependsOn[0].name",
    );
}

#[test]
fn replicas_range() {
    rule(
        &platform("  replicas: 1001\n"),
        &platform("  replicas: 1000\n"),
        "spec.replicas",
    );
    rule(
        &platform("  replicas: -1\n"),
        &platform("  replicas: 0\n"),
        "spec.replicas",
    );
}

#[test]
fn desired_state_values() {
    rule(
        &platform("  desiredState: Paused\n"),
        &platform("  desiredState: Stopped\n"),
        "spec.desiredState: Unsupported value",
    );
}

#[test]
fn platform_id_pattern_and_length() {
    rule(
        &platform("  platformId: 'has space'\n"),
        &platform("  platformId: market_data_service\n"),
        "spec.platformId",
    );
    let long = "x".repeat(129);
    rule(
        &platform(&format!("  platformId: {long}\n")),
        &platform("  platformId: x\n"),
        "spec.platformId: Too long",
    );
}

#[test]
fn image_length() {
    let long = "i".repeat(1025);
    rule(
        &format!(
            "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\nspec:\n  image: {long}\n"
        ),
        &platform(""),
        "spec.image: Too long",
    );
}

#[test]
fn health_check_intervals_are_bounded() {
    rule(
        &platform("  healthCheck:\n    intervalSeconds: 0\n"),
        &platform("  healthCheck:\n    intervalSeconds: 1\n"),
        "spec.healthCheck.intervalSeconds",
    );
    rule(
        &platform("  healthCheck:\n    intervalSeconds: 3601\n"),
        &platform("  healthCheck:\n    intervalSeconds: 3600\n"),
        "spec.healthCheck.intervalSeconds",
    );
    rule(
        &platform("  healthCheck:\n    startupTimeoutSeconds: 0\n"),
        &platform("  healthCheck:\n    startupTimeoutSeconds: 60\n"),
        "spec.healthCheck.startupTimeoutSeconds",
    );
    rule(
        &platform("  healthCheck:\n    failureThreshold: 101\n"),
        &platform("  healthCheck:\n    failureThreshold: 3\n"),
        "spec.healthCheck.failureThreshold",
    );
}

#[test]
fn health_check_timeout_within_interval() {
    rule(
        &platform("  healthCheck:\n    intervalSeconds: 5\n    timeoutSeconds: 10\n"),
        &platform("  healthCheck:\n    intervalSeconds: 10\n    timeoutSeconds: 10\n"),
        "timeoutSeconds must not exceed intervalSeconds",
    );
}

#[test]
fn probe_has_exactly_one_kind() {
    rule(
        &platform(
            "  healthCheck:\n    probe:\n      tcp: {port: 80}\n      exec: {command: [/bin/true]}\n",
        ),
        &platform("  healthCheck:\n    probe:\n      tcp: {port: 80}\n"),
        "exactly one of http, tcp or exec must be set",
    );
    rule(
        &platform("  healthCheck:\n    probe: {}\n"),
        &platform("  healthCheck:\n    probe:\n      exec: {command: [/bin/check]}\n"),
        "exactly one of http, tcp or exec must be set",
    );
}

#[test]
fn http_probe_path_and_port() {
    rule(
        &platform("  healthCheck:\n    probe:\n      http: {path: healthz, port: 80}\n"),
        &platform("  healthCheck:\n    probe:\n      http: {path: /healthz, port: 80}\n"),
        "path must start with '/'",
    );
    rule(
        &platform("  healthCheck:\n    probe:\n      http: {path: /, port: 70000}\n"),
        &platform("  healthCheck:\n    probe:\n      http: {path: /, port: 65535}\n"),
        "spec.healthCheck.probe.http.port",
    );
}

#[test]
fn restart_policy_ranges_and_backoff_order() {
    rule(
        &platform("  restartPolicy:\n    maxRestartAttempts: 101\n"),
        &platform("  restartPolicy:\n    maxRestartAttempts: 0\n"),
        "spec.restartPolicy.maxRestartAttempts",
    );
    rule(
        &platform("  restartPolicy:\n    windowSeconds: 0\n"),
        &platform("  restartPolicy:\n    windowSeconds: 86400\n"),
        "spec.restartPolicy.windowSeconds",
    );
    rule(
        &platform("  restartPolicy:\n    backoff: {initialSeconds: 60, maxSeconds: 10}\n"),
        &platform("  restartPolicy:\n    backoff: {initialSeconds: 10, maxSeconds: 60}\n"),
        "initialSeconds must not exceed maxSeconds",
    );
}

#[test]
fn shutdown_ranges() {
    rule(
        &platform("  shutdown:\n    timeoutSeconds: 0\n"),
        &platform("  shutdown:\n    timeoutSeconds: 180\n"),
        "spec.shutdown.timeoutSeconds",
    );
    rule(
        &platform("  shutdown:\n    gracePeriodSeconds: 3601\n"),
        &platform("  shutdown:\n    gracePeriodSeconds: 0\n"),
        "spec.shutdown.gracePeriodSeconds",
    );
}

#[test]
fn reactions_values() {
    rule(
        &platform("  reactions:\n    onResourceExceeded: Explode\n"),
        &platform("  reactions:\n    onResourceExceeded: Restart\n"),
        "spec.reactions.onResourceExceeded: Unsupported value",
    );
    rule(
        &platform("  reactions:\n    onHealthCheckFailed: Stop\n"),
        &platform("  reactions:\n    onHealthCheckFailed: Ignore\n"),
        "spec.reactions.onHealthCheckFailed: Unsupported value",
    );
    rule(
        &platform("  reactions:\n    onDependencyFailed: Restart\n"),
        &platform("  reactions:\n    onDependencyFailed: Ignore\n"),
        "spec.reactions.onDependencyFailed: Unsupported value",
    );
}

#[test]
fn ports_are_bounded() {
    rule(
        &platform("  ports:\n    - containerPort: 0\n"),
        &platform("  ports:\n    - containerPort: 8080\n      name: http\n"),
        "spec.ports[0].containerPort",
    );
    rule(
        &platform("  ports:\n    - containerPort: 80\n      protocol: HTTP\n"),
        &platform("  ports:\n    - containerPort: 80\n      protocol: UDP\n"),
        "spec.ports[0].protocol",
    );
}

#[test]
fn config_is_bounded() {
    let many: String = (0..257).map(|i| format!("    k{i}: v\n")).collect();
    rule(
        &platform(&format!("  config:\n{many}")),
        &platform("  config:\n    k: v\n"),
        "spec.config: Too many",
    );
}

#[test]
fn alert_channels_unique_and_typed() {
    let channel = |name: &str, kind: &str| {
        format!(
            "      - name: {name}\n        type: {kind}\n        secretRef: {{name: alerts, key: url}}\n"
        )
    };
    rule(
        &platform(&format!(
            "  alerts:\n    channels:\n{}{}",
            channel("ops", "Slack"),
            channel("ops", "Email")
        )),
        &platform(&format!(
            "  alerts:\n    channels:\n{}{}    events: [CircuitOpen]\n",
            channel("ops", "Slack"),
            channel("oncall", "Email")
        )),
        "channel names must be unique",
    );
    rule(
        &platform(&format!(
            "  alerts:\n    channels:\n{}",
            channel("ops", "Pager")
        )),
        &platform(&format!(
            "  alerts:\n    channels:\n{}",
            channel("ops", "Webhook")
        )),
        "spec.alerts.channels[0].type",
    );
}

#[test]
fn unknown_fields_are_rejected() {
    rule(
        &platform("  replica: 3\n"),
        &platform("  replicas: 3\n"),
        "unknown field \"spec.replica\"",
    );
}

#[test]
fn template_is_an_open_object() {
    rule(
        &platform("  template: []\n"),
        &platform(
            "  template:\n    spec:\n      containers:\n        - name: main\n          image: nginx\n",
        ),
        "spec.template",
    );
}

#[test]
fn group_ordering_edges_differ_and_are_bounded() {
    rule(
        &group("  startup:\n    ordering:\n      - {before: a, after: a}\n"),
        &group("  startup:\n    ordering:\n      - {before: a, after: b}\n"),
        "before and after must differ",
    );
    rule(
        &group("  startup:\n    maxConcurrentStarts: 1001\n"),
        &group("  startup:\n    maxConcurrentStarts: 0\n"),
        "spec.startup.maxConcurrentStarts",
    );
}

#[test]
fn group_requires_a_selector_and_known_state() {
    rule(
        "apiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: g\nspec: {}\n",
        &group(""),
        "spec.selector: Required value",
    );
    rule(
        &group("  desiredState: Off\n"),
        &group("  desiredState: Stopped\n"),
        "spec.desiredState",
    );
}

#[test]
fn group_defaults_are_validated_like_platform_settings() {
    rule(
        &group("  defaults:\n    healthCheck:\n      intervalSeconds: 0\n"),
        &group("  defaults:\n    healthCheck:\n      intervalSeconds: 60\n"),
        "spec.defaults.healthCheck.intervalSeconds",
    );
}

fn with_metadata(metadata: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n{metadata}spec:\n  image: nginx\n"
    )
}

/// The checked, parsed Platform of one manifest that must be accepted.
fn accepted_platform(yaml: &str) -> platform_operator::crd::Platform {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    split_documents(
        std::path::Path::new("case.yaml"),
        yaml,
        &mut documents,
        &mut errors,
    );
    let mut stack = check_documents(documents, "default");
    assert!(
        errors.is_empty() && stack.errors.is_empty(),
        "{errors:?} {:?}",
        stack.errors
    );
    stack.platforms.remove(0).1
}

#[test]
fn label_keys_are_qualified_names() {
    rule(
        &with_metadata("  labels:\n    'bad key!': x\n"),
        &with_metadata("  labels:\n    pmp.dev/stack: trading\n    app.kubernetes.io/name: web\n"),
        "metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters",
    );
    rule(
        &with_metadata("  labels:\n    Not_A.Domain/x: v\n"),
        &with_metadata("  labels:\n    Not_A.Domain: v\n"),
        "prefix part a lowercase RFC 1123 subdomain",
    );
    rule(
        &with_metadata(&format!("  labels:\n    {}: x\n", "k".repeat(64))),
        &with_metadata(&format!("  labels:\n    {}: x\n", "k".repeat(63))),
        "name part must be no more than 63 characters",
    );
}

#[test]
fn label_values_are_valid() {
    rule(
        &with_metadata("  labels:\n    stack: 'not a value'\n"),
        &with_metadata("  labels:\n    stack: a-value\n    empty: ''\n"),
        "metadata.labels: Invalid value: \"not a value\": a valid label must be an empty string",
    );
    rule(
        &with_metadata(&format!("  labels:\n    stack: {}\n", "v".repeat(64))),
        &with_metadata(&format!("  labels:\n    stack: {}\n", "v".repeat(63))),
        "must be no more than 63 characters",
    );
}

#[test]
fn annotation_keys_and_total_size_are_bounded() {
    rule(
        &with_metadata("  annotations:\n    'bad key!': x\n"),
        &with_metadata("  annotations:\n    Example.COM/Owner: any text, at all\n"),
        "metadata.annotations: Invalid value: \"bad key!\"",
    );
    let big =
        |bytes: usize| with_metadata(&format!("  annotations:\n    a: {}\n", "x".repeat(bytes)));
    rule(
        &big(256 * 1024),
        &big(256 * 1024 - 1),
        "metadata.annotations: Too long: may not be more than 262144 bytes",
    );
}

#[test]
fn unknown_metadata_fields_are_rejected() {
    rule(
        &with_metadata("  owner: me\n"),
        &with_metadata("  annotations:\n    owner: me\n  finalizers: [example.com/keep]\n"),
        "unknown field \"metadata.owner\"",
    );
}

#[test]
fn whole_number_floats_are_integers() {
    assert_eq!(
        accepted_platform(&platform("  replicas: 3.0\n"))
            .spec
            .replicas,
        3
    );
    rule(
        &platform("  replicas: 1.5\n"),
        &platform("  replicas: 2.0\n"),
        "spec.replicas: Invalid value: 1.5: must be of type integer",
    );
}

#[test]
fn nulls_are_unset_and_defaulted() {
    let from_null = accepted_platform(&platform("  replicas: null\n"));
    let unset = accepted_platform(&platform(""));
    assert_eq!(from_null.spec.replicas, unset.spec.replicas);
    assert_eq!(from_null.spec.replicas, 1);
    let nested = accepted_platform(&platform("  healthCheck:\n    intervalSeconds: null\n"));
    assert_eq!(
        nested
            .spec
            .health_check
            .as_ref()
            .and_then(|h| h.interval_seconds),
        None
    );
    rule(
        &platform("  dependsOn:\n    - null\n"),
        &platform("  dependsOn: null\n"),
        "spec.dependsOn[0]: Invalid value: null: must be of type object",
    );
}

#[test]
fn status_in_a_manifest_is_ignored() {
    let parsed = accepted_platform(&platform("status:\n  phase: Exploded\n"));
    assert!(parsed.status.is_none(), "{:?}", parsed.status);
    assert!(problems(&group("status:\n  phase: Exploded\n")).is_empty());
    // Unknown fields still fail a server-side apply, status included.
    rule(
        &platform("status:\n  bogus: 1\n"),
        &platform("status:\n  phase: Running\n"),
        "unknown field \"status.bogus\"",
    );
}

#[test]
fn resource_quantities_have_quantity_syntax() {
    rule(
        &platform("  resources:\n    requests: {cpu: four}\n"),
        &platform("  resources:\n    requests: {cpu: 4}\n"),
        "spec.resources.requests.cpu: Invalid value: \"four\": should match",
    );
    rule(
        &platform("  resources:\n    limits: {memory: 8 GB}\n"),
        &platform(
            "  resources:\n    requests: {cpu: \"500m\", memory: 8Gi}\n    limits: {cpu: \"1\", memory: 1Gi}\n",
        ),
        "spec.resources.limits.memory",
    );
    rule(
        &group("  defaults:\n    resources:\n      requests: {memory: lots}\n"),
        &group("  defaults:\n    resources:\n      requests: {memory: 1.5Gi, cpu: 2}\n"),
        "spec.defaults.resources.requests.memory",
    );
}

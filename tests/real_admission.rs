//! `plan` (and the simulated API server, which admits with the same `schema` checks) against
//! the real API server: for every manifest of a table, the verdict of
//! `platform_operator::manifest::check_documents` must be the verdict of a server-side apply
//! (dry run, strict field validation) to kube-apiserver with the project's CRDs. The table
//! holds the cases of tests/crd_rules.rs (each rule's rejected and accepted manifest) and
//! cases only a real server decides for sure (numbers as floats, nulls, metadata, status
//! sent to the main resource). Skips without `PMP_TEST_KUBECONFIG` (see tests/real_support).

mod real_support;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use platform_operator::manifest::{check_documents, split_documents};

use real_support::TEST_MANAGER;

/// One manifest, `bad` when it was written to be rejected (for the report only: the test
/// compares the two verdicts, whichever they are).
struct Case {
    name: String,
    yaml: String,
    bad: bool,
}

fn platform(spec: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\nspec:\n  image: nginx\n{spec}"
    )
}

fn bare_platform(spec: &str) -> String {
    format!("apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\nspec:\n{spec}")
}

fn group(spec: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: stack\nspec:\n  selector:\n    matchLabels:\n      s: t\n{spec}"
    )
}

fn named(name: &str) -> String {
    format!(
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: {name}\nspec:\n  image: nginx\n"
    )
}

fn channel(name: &str, kind: &str) -> String {
    format!(
        "      - name: {name}\n        type: {kind}\n        secretRef: {{name: alerts, key: url}}\n"
    )
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rule = |name: &str, bad: String, good: String| {
        cases.push(Case {
            name: format!("{name} (rejected)"),
            yaml: bad,
            bad: true,
        });
        cases.push(Case {
            name: format!("{name} (accepted)"),
            yaml: good,
            bad: false,
        });
    };
    // The rules of tests/crd_rules.rs, each with the manifest it rejects and one it accepts.
    rule(
        "duplicate dependsOn",
        platform("  dependsOn:\n    - name: db\n    - name: db\n"),
        platform("  dependsOn:\n    - name: db\n    - name: db\n      namespace: shared\n"),
    );
    rule(
        "self-dependency",
        platform("  dependsOn:\n    - name: web\n"),
        platform("  dependsOn:\n    - name: web\n      namespace: other\n"),
    );
    let many: String = (0..65).map(|i| format!("    - name: dep-{i}\n")).collect();
    let enough: String = (0..64).map(|i| format!("    - name: dep-{i}\n")).collect();
    rule(
        "dependsOn bounded",
        platform(&format!("  dependsOn:\n{many}")),
        platform(&format!("  dependsOn:\n{enough}")),
    );
    rule(
        "dependency name is a DNS label",
        platform("  dependsOn:\n    - name: Not_A_Name\n"),
        platform("  dependsOn:\n    - name: a-name\n"),
    );
    rule(
        "replicas 2000",
        platform("  replicas: 2000\n"),
        platform("  replicas: 1000\n"),
    );
    rule(
        "replicas 1001",
        platform("  replicas: 1001\n"),
        platform("  replicas: 1\n"),
    );
    rule(
        "replicas -1",
        platform("  replicas: -1\n"),
        platform("  replicas: 0\n"),
    );
    rule(
        "desiredState values",
        platform("  desiredState: Paused\n"),
        platform("  desiredState: Stopped\n"),
    );
    rule(
        "platformId pattern",
        platform("  platformId: 'has space'\n"),
        platform("  platformId: market_data_service\n"),
    );
    rule(
        "platformId length",
        platform(&format!("  platformId: {}\n", "x".repeat(129))),
        platform(&format!("  platformId: {}\n", "x".repeat(128))),
    );
    rule(
        "image length",
        bare_platform(&format!("  image: {}\n", "i".repeat(1025))),
        bare_platform(&format!("  image: {}\n", "i".repeat(1024))),
    );
    rule(
        "healthCheck.intervalSeconds minimum",
        platform("  healthCheck:\n    intervalSeconds: 0\n"),
        platform("  healthCheck:\n    intervalSeconds: 1\n"),
    );
    rule(
        "healthCheck.intervalSeconds maximum",
        platform("  healthCheck:\n    intervalSeconds: 3601\n"),
        platform("  healthCheck:\n    intervalSeconds: 3600\n"),
    );
    rule(
        "healthCheck.startupTimeoutSeconds minimum",
        platform("  healthCheck:\n    startupTimeoutSeconds: 0\n"),
        platform("  healthCheck:\n    startupTimeoutSeconds: 60\n"),
    );
    rule(
        "healthCheck.failureThreshold maximum",
        platform("  healthCheck:\n    failureThreshold: 101\n"),
        platform("  healthCheck:\n    failureThreshold: 3\n"),
    );
    rule(
        "timeout > interval",
        platform("  healthCheck:\n    intervalSeconds: 5\n    timeoutSeconds: 10\n"),
        platform("  healthCheck:\n    intervalSeconds: 10\n    timeoutSeconds: 10\n"),
    );
    rule(
        "two probe kinds",
        platform(
            "  healthCheck:\n    probe:\n      tcp: {port: 80}\n      exec: {command: [/bin/true]}\n",
        ),
        platform("  healthCheck:\n    probe:\n      tcp: {port: 80}\n"),
    );
    rule(
        "no probe kind",
        platform("  healthCheck:\n    probe: {}\n"),
        platform("  healthCheck:\n    probe:\n      exec: {command: [/bin/check]}\n"),
    );
    rule(
        "http probe path starts with /",
        platform("  healthCheck:\n    probe:\n      http: {path: healthz, port: 80}\n"),
        platform("  healthCheck:\n    probe:\n      http: {path: /healthz, port: 80}\n"),
    );
    rule(
        "http probe port range",
        platform("  healthCheck:\n    probe:\n      http: {path: /, port: 70000}\n"),
        platform("  healthCheck:\n    probe:\n      http: {path: /, port: 65535}\n"),
    );
    rule(
        "restartPolicy.maxRestartAttempts maximum",
        platform("  restartPolicy:\n    maxRestartAttempts: 101\n"),
        platform("  restartPolicy:\n    maxRestartAttempts: 0\n"),
    );
    rule(
        "restartPolicy.windowSeconds minimum",
        platform("  restartPolicy:\n    windowSeconds: 0\n"),
        platform("  restartPolicy:\n    windowSeconds: 86400\n"),
    );
    rule(
        "backoff initial > max",
        platform("  restartPolicy:\n    backoff: {initialSeconds: 60, maxSeconds: 10}\n"),
        platform("  restartPolicy:\n    backoff: {initialSeconds: 10, maxSeconds: 60}\n"),
    );
    rule(
        "shutdown.timeoutSeconds minimum",
        platform("  shutdown:\n    timeoutSeconds: 0\n"),
        platform("  shutdown:\n    timeoutSeconds: 180\n"),
    );
    rule(
        "shutdown.gracePeriodSeconds maximum",
        platform("  shutdown:\n    gracePeriodSeconds: 3601\n"),
        platform("  shutdown:\n    gracePeriodSeconds: 0\n"),
    );
    rule(
        "reactions.onResourceExceeded values",
        platform("  reactions:\n    onResourceExceeded: Explode\n"),
        platform("  reactions:\n    onResourceExceeded: Restart\n"),
    );
    rule(
        "reactions.onHealthCheckFailed values",
        platform("  reactions:\n    onHealthCheckFailed: Stop\n"),
        platform("  reactions:\n    onHealthCheckFailed: Ignore\n"),
    );
    rule(
        "reactions.onDependencyFailed values",
        platform("  reactions:\n    onDependencyFailed: Restart\n"),
        platform("  reactions:\n    onDependencyFailed: Ignore\n"),
    );
    rule(
        "ports containerPort minimum",
        platform("  ports:\n    - containerPort: 0\n"),
        platform("  ports:\n    - containerPort: 8080\n      name: http\n"),
    );
    rule(
        "ports protocol values",
        platform("  ports:\n    - containerPort: 80\n      protocol: HTTP\n"),
        platform("  ports:\n    - containerPort: 80\n      protocol: UDP\n"),
    );
    let config: String = (0..257).map(|i| format!("    k{i}: v\n")).collect();
    rule(
        "config bounded",
        platform(&format!("  config:\n{config}")),
        platform("  config:\n    k: v\n"),
    );
    rule(
        "duplicate alert channel names",
        platform(&format!(
            "  alerts:\n    channels:\n{}{}",
            channel("ops", "Slack"),
            channel("ops", "Email")
        )),
        platform(&format!(
            "  alerts:\n    channels:\n{}{}    events: [CircuitOpen]\n",
            channel("ops", "Slack"),
            channel("oncall", "Email")
        )),
    );
    rule(
        "alert channel type values",
        platform(&format!(
            "  alerts:\n    channels:\n{}",
            channel("ops", "Pager")
        )),
        platform(&format!(
            "  alerts:\n    channels:\n{}",
            channel("ops", "Webhook")
        )),
    );
    rule(
        "unknown field",
        platform("  replica: 3\n"),
        platform("  replicas: 3\n"),
    );
    rule(
        "unknown field in a nested object",
        platform("  healthCheck:\n    interval: 5\n"),
        platform("  healthCheck:\n    intervalSeconds: 5\n"),
    );
    rule(
        "unknown field in an EnvVar",
        platform("  env:\n    - name: A\n      value: b\n      secret: c\n"),
        platform(
            "  env:\n    - name: A\n      valueFrom:\n        fieldRef: {fieldPath: metadata.name}\n",
        ),
    );
    rule(
        "template is an object",
        platform("  template: []\n"),
        platform(
            "  template:\n    spec:\n      containers:\n        - name: main\n          image: nginx\n",
        ),
    );
    rule(
        "missing both image and template",
        bare_platform("  replicas: 1\n"),
        bare_platform(
            "  template:\n    metadata:\n      anything: kept\n    spec:\n      containers:\n        - name: main\n          image: nginx\n",
        ),
    );
    rule(
        "ordering before == after",
        group("  startup:\n    ordering:\n      - {before: a, after: a}\n"),
        group("  startup:\n    ordering:\n      - {before: a, after: b}\n"),
    );
    rule(
        "group maxConcurrentStarts maximum",
        group("  startup:\n    maxConcurrentStarts: 1001\n"),
        group("  startup:\n    maxConcurrentStarts: 0\n"),
    );
    rule(
        "group selector required",
        "apiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: g\nspec: {}\n"
            .into(),
        group(""),
    );
    rule(
        "group desiredState values",
        group("  desiredState: Off\n"),
        group("  desiredState: Stopped\n"),
    );
    rule(
        "group defaults validated",
        group("  defaults:\n    healthCheck:\n      intervalSeconds: 0\n"),
        group("  defaults:\n    healthCheck:\n      intervalSeconds: 60\n"),
    );
    rule(
        "group defaults backoff order",
        group(
            "  defaults:\n    restartPolicy:\n      backoff: {initialSeconds: 9, maxSeconds: 8}\n",
        ),
        group(
            "  defaults:\n    restartPolicy:\n      backoff: {initialSeconds: 8, maxSeconds: 9}\n",
        ),
    );
    // Numbers, strings and nulls as they come out of YAML.
    rule(
        "replicas as a string",
        platform("  replicas: \"3\"\n"),
        platform("  replicas: 3\n"),
    );
    rule(
        "replicas as a fraction",
        platform("  replicas: 1.5\n"),
        platform("  replicas: 2\n"),
    );
    rule(
        "resource quantity",
        platform("  resources:\n    requests: {cpu: four}\n"),
        platform("  resources:\n    requests: {cpu: 4, memory: 8192Mi}\n"),
    );
    rule(
        "cpu quantity as a string",
        platform("  resources:\n    requests: {cpu: '4 cores'}\n"),
        platform("  resources:\n    requests: {cpu: \"500m\"}\n"),
    );
    rule(
        "memory quantity",
        platform("  resources:\n    limits: {memory: 8 GB}\n"),
        platform("  resources:\n    limits: {memory: 8Gi}\n"),
    );
    rule(
        "group defaults quantity",
        group("  defaults:\n    resources:\n      requests: {memory: lots}\n"),
        group("  defaults:\n    resources:\n      requests: {memory: 1.5Gi, cpu: 2}\n"),
    );
    // Metadata: the server validates it for every kind.
    rule("name is a DNS subdomain", named("Web_1"), named("web.1"));
    rule(
        "name length",
        named(&"n".repeat(254)),
        named(&"n".repeat(253)),
    );
    rule(
        "label key",
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  labels:\n    'bad key!': x\nspec:\n  image: nginx\n".into(),
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  labels:\n    pmp.dev/stack: trading\nspec:\n  image: nginx\n".into(),
    );
    rule(
        "label value",
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  labels:\n    stack: 'not a value'\nspec:\n  image: nginx\n".into(),
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  labels:\n    stack: a-value\nspec:\n  image: nginx\n".into(),
    );
    rule(
        "annotation key",
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  annotations:\n    'bad key!': x\nspec:\n  image: nginx\n".into(),
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  annotations:\n    Example.COM/Owner: any text at all\nspec:\n  image: nginx\n".into(),
    );
    let annotation = |bytes: usize| {
        format!(
            "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  annotations:\n    a: {}\nspec:\n  image: nginx\n",
            "x".repeat(bytes)
        )
    };
    rule(
        "annotations total size",
        annotation(256 * 1024),
        annotation(256 * 1024 - 1),
    );
    rule(
        "unknown metadata field",
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  owner: me\nspec:\n  image: nginx\n".into(),
        "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  annotations:\n    owner: me\nspec:\n  image: nginx\n".into(),
    );
    // Cases that are accepted or rejected depending on details of the server.
    let single = |name: &str, yaml: String, bad: bool| Case {
        name: name.into(),
        yaml,
        bad,
    };
    cases.extend([
        single("replicas 3.0 (an integral float)", platform("  replicas: 3.0\n"), false),
        single("replicas null", platform("  replicas: null\n"), false),
        single(
            "nested null",
            platform("  healthCheck:\n    intervalSeconds: null\n"),
            false,
        ),
        single(
            "null list item",
            platform("  dependsOn:\n    - null\n"),
            true,
        ),
        single(
            "cpu 4.0 (an integral float)",
            platform("  resources:\n    requests: {cpu: 4.0}\n"),
            false,
        ),
        single(
            "cpu 0.5 as a number",
            platform("  resources:\n    requests: {cpu: 0.5}\n"),
            true,
        ),
        single(
            "label value as a number",
            "apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: web\n  labels:\n    stack: 1\nspec:\n  image: nginx\n".into(),
            true,
        ),
        single(
            "group status sent to the main resource",
            format!("{}status:\n  phase: Exploded\n", group("")),
            false,
        ),
        single("empty image", bare_platform("  image: \"\"\n"), false),
        single(
            "status with an unknown phase sent to the main resource",
            platform("status:\n  phase: Exploded\n"),
            false,
        ),
        single(
            "status with an unknown field sent to the main resource",
            platform("status:\n  bogus: 1\n"),
            false,
        ),
        single(
            "self-dependency naming its own namespace explicitly",
            platform("  dependsOn:\n    - name: web\n      namespace: NAMESPACE\n"),
            false,
        ),
        single(
            "label selector operator",
            "apiVersion: pmp.dev/v1alpha1\nkind: PlatformGroup\nmetadata:\n  name: stack\nspec:\n  selector:\n    matchExpressions:\n      - {key: a, operator: Near}\n".into(),
            true,
        ),
    ]);
    cases
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Rejected(String),
}

impl Verdict {
    fn accepted(&self) -> bool {
        *self == Verdict::Accepted
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("accepted"),
            Verdict::Rejected(why) => write!(f, "rejected: {why}"),
        }
    }
}

/// `plan`'s verdict (the simulator admits with the same checks).
fn plan_verdict(yaml: &str, namespace: &str) -> Verdict {
    let (mut documents, mut errors) = (Vec::new(), Vec::new());
    split_documents(
        std::path::Path::new("case.yaml"),
        yaml,
        &mut documents,
        &mut errors,
    );
    let stack = check_documents(documents, namespace);
    let problems: Vec<String> = errors
        .iter()
        .chain(&stack.errors)
        .map(|e| e.problem.clone())
        .collect();
    if problems.is_empty() {
        Verdict::Accepted
    } else {
        Verdict::Rejected(problems.join("; "))
    }
}

/// The real server's verdict on a dry-run server-side apply with strict field validation.
async fn server_verdict(client: &kube::Client, yaml: &str, namespace: &str) -> Verdict {
    let mut value: Value = serde_saphyr::from_str(yaml).expect("case is YAML");
    value["metadata"]["namespace"] = Value::String(namespace.into());
    let kind = value["kind"].as_str().expect("kind").to_string();
    let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("pmp.dev", "v1alpha1", &kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let params = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some(TEST_MANAGER.into()),
        field_validation: Some(ValidationDirective::Strict),
    };
    match api.patch(&name, &params, &Patch::Apply(&value)).await {
        Ok(_) => Verdict::Accepted,
        Err(kube::Error::Api(status)) => {
            Verdict::Rejected(format!("{} {}", status.code, status.message))
        }
        Err(other) => panic!("dry-run apply failed without an answer from the server: {other}"),
    }
}

#[tokio::test]
async fn plan_and_the_api_server_agree_on_every_manifest() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("admission").await;
    let mut disagreements = Vec::new();
    let cases = cases();
    for case in &cases {
        let yaml = case.yaml.replace("NAMESPACE", &ns.name);
        let plan = plan_verdict(&yaml, &ns.name);
        let server = server_verdict(&env.client, &yaml, &ns.name).await;
        let agree = plan.accepted() == server.accepted();
        println!(
            "{} {}{}\n    plan:   {plan}\n    server: {server}",
            if agree { "agree   " } else { "DISAGREE" },
            case.name,
            if case.bad { "" } else { " [meant valid]" },
        );
        if !agree {
            disagreements.push(format!(
                "{}:\n    plan:   {plan}\n    server: {server}",
                case.name
            ));
        }
    }
    println!("{} cases", cases.len());
    assert!(
        disagreements.is_empty(),
        "plan and the API server disagree on {} of {} cases:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

/// How the real server treats an unknown field, by request kind and field validation: a
/// server-side apply fails (500, "field not declared in schema") whatever the validation,
/// while a create drops it (Ignore), warns (Warn) or refuses it with 400 (Strict).
#[tokio::test]
async fn unknown_fields_by_request_kind_and_field_validation() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("unknown").await;
    let mut value: Value = serde_saphyr::from_str(&platform("  replica: 3\n")).expect("YAML");
    value["metadata"]["namespace"] = Value::String(ns.name.clone());
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("pmp.dev", "v1alpha1", "Platform"));
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns.name, &resource);
    for validation in [
        ValidationDirective::Ignore,
        ValidationDirective::Warn,
        ValidationDirective::Strict,
    ] {
        let params = PatchParams {
            dry_run: true,
            force: true,
            field_manager: Some(TEST_MANAGER.into()),
            field_validation: Some(validation.clone()),
        };
        let refused = api
            .patch("web", &params, &Patch::Apply(&value))
            .await
            .expect_err("server-side apply refuses an unknown field");
        assert!(
            matches!(&refused, kube::Error::Api(s) if s.code == 500 && s.message.contains(".spec.replica: field not declared in schema")),
            "apply with {validation:?}: {refused}"
        );
    }
    // PostParams has no field validation: the query parameter is added to the request.
    let body = serde_json::to_vec(&value).expect("json");
    let client = env.client.clone();
    let path = format!("/apis/pmp.dev/v1alpha1/namespaces/{}/platforms", ns.name);
    let create = |validation: &'static str| {
        let (client, body, path) = (client.clone(), body.clone(), path.clone());
        async move {
            let params = PostParams {
                dry_run: true,
                field_manager: Some(TEST_MANAGER.into()),
            };
            let mut request = kube::core::Request::new(path)
                .create(&params, body)
                .expect("request");
            *request.uri_mut() = format!("{}&fieldValidation={validation}", request.uri())
                .parse()
                .expect("uri");
            client.request::<Value>(request).await
        }
    };
    let ignored = create("Ignore")
        .await
        .expect("create drops the unknown field");
    assert!(ignored["spec"].get("replica").is_none(), "{ignored}");
    create("Warn").await.expect("create warns");
    let strict = create("Strict").await.expect_err("strict create refuses");
    assert_eq!(real_support::status_code(&strict), 400, "{strict}");
    assert!(
        strict
            .to_string()
            .contains("unknown field \"spec.replica\""),
        "{strict}"
    );
}

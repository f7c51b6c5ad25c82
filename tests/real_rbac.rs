//! RBAC for real: deploy/operator/rbac.yaml names no wildcards and grants exactly what the
//! operator uses (each use justified below against src/controller and src/api); the operator, run
//! in-process as its ServiceAccount, brings the trading stack up in dependency order and
//! deletes it in reverse order without a single Forbidden; the unprivileged user is refused.
//! Skips without `PMP_TEST_KUBECONFIG` (see tests/real_support).

mod real_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use platform_operator::controller::{Operator, OperatorConfig, SystemClock};
use platform_operator::crd::{Phase, Platform, PlatformGroup};
use platform_operator::fixtures::{group, platform};
use platform_operator::manifest::split_documents;

use real_support::{OPERATOR_SA, OPERATOR_SA_NAMESPACE, TEST_MANAGER, apply_body, status_code};

/// What the operator does with the API, and where: `(apiGroup, resource[/subresource], verbs,
/// why)`. The ClusterRole must grant exactly this; a verb missing here fails
/// `the_operator_runs_the_trading_stack_as_its_service_account`, a verb granted beyond it fails
/// `the_cluster_role_grants_exactly_what_the_operator_uses`.
const USED: &[(&str, &str, &[&str], &str)] = &[
    (
        "pmp.dev",
        "platforms",
        &["list", "watch"],
        "run.rs platform_events: watcher (reflector) over Platforms",
    ),
    (
        "pmp.dev",
        "platforms",
        &["patch"],
        "apply.rs change_finalizer (guarded JSON patch) and request_restart (merge patch); \
         api/platforms.rs execute: the REST API's control requests (merge patch)",
    ),
    (
        "pmp.dev",
        "platforms/status",
        &["patch"],
        "apply.rs apply_status via write_status (server-side apply of the status)",
    ),
    (
        "pmp.dev",
        "platformgroups",
        &["list", "watch"],
        "run.rs group_events: watcher (reflector) over PlatformGroups",
    ),
    (
        "pmp.dev",
        "platformgroups",
        &["patch"],
        "api/groups.rs control_group: the REST API starts or stops a group (merge patch)",
    ),
    (
        "pmp.dev",
        "platformgroups/status",
        &["patch"],
        "group.rs reconcile: apply_status of the group status",
    ),
    (
        "apps",
        "deployments",
        &["list", "watch"],
        "run.rs platform_controller: watched(deployments), label app.kubernetes.io/managed-by",
    ),
    (
        "apps",
        "deployments",
        &["create", "patch"],
        "platform.rs: apply_owned, a server-side apply (patch), which the API server also \
         authorizes as create when it creates the object; never get or delete: the garbage \
         collector deletes through the ownerReference",
    ),
    (
        "",
        "configmaps",
        &["list", "watch"],
        "run.rs platform_controller: watched(configmaps)",
    ),
    (
        "",
        "configmaps",
        &["create", "patch"],
        "platform.rs: apply_owned of the <name>-config ConfigMap (create: as for Deployments)",
    ),
    (
        "",
        "pods",
        &["list", "watch"],
        "run.rs platform_controller: watched(pods), label pmp.dev/platform (observed only)",
    ),
    (
        "",
        "events",
        &["list", "watch"],
        "controller/warnings.rs watch_warnings: Warning Events on pods (field selector \
         involvedObject.kind=Pod,type=Warning), never written",
    ),
    (
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "events.rs publish_events: kube's Recorder creates an Event, patches its series on repeats",
    ),
    (
        "",
        "secrets",
        &["get"],
        "alerts/secrets.rs SecretCache: the Secret an alert channel names (webhook URL or \
         address), by name only",
    ),
    (
        "metrics.k8s.io",
        "pods",
        &["list"],
        "controller/usage.rs poll_usage: the platforms' pods' usage, listed by label",
    ),
    (
        "authentication.k8s.io",
        "tokenreviews",
        &["create"],
        "api/auth.rs review_token: the REST API authenticates its callers' bearer tokens",
    ),
    (
        "authorization.k8s.io",
        "subjectaccessreviews",
        &["create"],
        "api/auth.rs review_access: the REST API authorizes its callers with RBAC",
    ),
];

/// Every (verb, resource) that is checked against the live server: anything here that is not
/// in [`USED`] must be refused.
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const RESOURCES: &[(&str, &str)] = &[
    ("pmp.dev", "platforms"),
    ("pmp.dev", "platforms/status"),
    ("pmp.dev", "platforms/finalizers"),
    ("pmp.dev", "platformgroups"),
    ("pmp.dev", "platformgroups/status"),
    ("pmp.dev", "platformgroups/finalizers"),
    ("apps", "deployments"),
    ("apps", "deployments/status"),
    ("apps", "deployments/scale"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("", "configmaps"),
    ("", "pods"),
    ("", "pods/log"),
    ("", "pods/exec"),
    ("", "pods/eviction"),
    ("", "events"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "serviceaccounts/token"),
    ("", "namespaces"),
    ("", "services"),
    ("", "nodes"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("authentication.k8s.io", "tokenreviews"),
    ("metrics.k8s.io", "pods"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
];

const TRADING: [&str; 6] = [
    "market-data-service",
    "feature-engineering",
    "ml-inference",
    "strategy-generation",
    "order-management",
    "position-management",
];

type Grant = (String, String, String);
/// One access check: (apiGroup, resource, verb, namespace or cluster-wide).
type Check = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn used() -> BTreeSet<Grant> {
    USED.iter()
        .flat_map(|(group, resource, verbs, _)| {
            verbs
                .iter()
                .map(|verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect()
}

fn rbac_documents() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/operator/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("rbac.yaml");
    let (mut documents, mut errors) = (Vec::new(), Vec::new());
    split_documents(&path, &text, &mut documents, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    documents.into_iter().map(|d| d.value).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The (group, resource, verb) triples the ClusterRole grants.
fn granted(documents: &[Value]) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for role in documents.iter().filter(|d| d["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

#[test]
fn rbac_yaml_has_no_wildcards_and_grants_exactly_what_the_operator_uses() {
    let documents = rbac_documents();
    let kinds: Vec<&str> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    for role in documents
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = strings(&rule[field]);
                assert!(!values.is_empty(), "rule without {field}: {rule}");
                assert!(
                    values.iter().all(|v| !v.contains('*')),
                    "wildcard in {field}: {rule}"
                );
            }
            for field in ["nonResourceURLs", "resourceNames"] {
                assert!(rule.get(field).is_none(), "{field} in {rule}");
            }
        }
        assert!(role.get("aggregationRule").is_none());
    }
    let granted = granted(&documents);
    let used = used();
    let extra: Vec<&Grant> = granted.difference(&used).collect();
    let missing: Vec<&Grant> = used.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "rbac.yaml grants {extra:?} that the operator does not use, and lacks {missing:?}"
    );
    let binding = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("binding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_SA_NAMESPACE}])
    );
}

#[tokio::test]
async fn the_cluster_role_grants_exactly_what_the_operator_uses() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    env.apply_operator_rbac().await;
    let used = used();
    let mut checks = Vec::new();
    for (group, resource) in RESOURCES {
        for verb in VERBS {
            for namespace in [None, Some("default")] {
                checks.push((*group, *resource, *verb, namespace));
            }
        }
    }
    for (group, resource, verbs, _) in USED {
        assert!(
            RESOURCES.contains(&(group, resource)),
            "{group}/{resource} is used but not checked"
        );
        for verb in *verbs {
            assert!(VERBS.contains(verb), "{verb} is used but not checked");
        }
    }
    let client = &env.client;
    let answers: Vec<(Check, bool)> = futures::stream::iter(checks)
        .map(|check| async move {
            let (group, resource, verb, namespace) = check;
            (
                check,
                real_support::operator_may(client, group, resource, verb, namespace).await,
            )
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut wrong = Vec::new();
    for ((group, resource, verb, namespace), allowed) in &answers {
        let expected = used.contains(&(group.to_string(), resource.to_string(), verb.to_string()));
        if *allowed != expected {
            wrong.push(format!(
                "{verb} {group}/{resource} ({}): {} but the operator {}",
                namespace.map_or("cluster-wide".to_string(), |n| format!("in {n}")),
                if *allowed { "allowed" } else { "refused" },
                if expected {
                    "uses it"
                } else {
                    "does not use it"
                }
            ));
        }
    }
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} of {} access checks wrong:\n{}",
        wrong.len(),
        answers.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn the_unprivileged_user_cannot_get_list_or_patch_platforms() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("unprivileged").await;
    let admin: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    admin
        .patch(
            "web",
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(apply_body(&platform("web").namespace(&ns.name).build())),
        )
        .await
        .expect("platform created by the admin");
    let user = env.unprivileged_client().await;
    let api: Api<Platform> = Api::namespaced(user.clone(), &ns.name);
    let get = api.get("web").await.expect_err("get refused");
    assert_eq!(status_code(&get), 403, "{get}");
    let list = api
        .list(&ListParams::default())
        .await
        .expect_err("list refused");
    assert_eq!(status_code(&list), 403, "{list}");
    let all = Api::<Platform>::all(user)
        .list(&ListParams::default())
        .await
        .expect_err("cluster-wide list refused");
    assert_eq!(status_code(&all), 403, "{all}");
    let patch = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
        )
        .await
        .expect_err("patch refused");
    assert_eq!(status_code(&patch), 403, "{patch}");
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .expect_err("status patch refused");
    assert_eq!(status_code(&status), 403, "{status}");
    let unchanged = admin.get("web").await.expect("still there");
    assert_eq!(
        serde_json::to_value(unchanged.spec.desired_state).expect("json"),
        json!("Running")
    );
}

#[tokio::test]
async fn the_operator_runs_the_trading_stack_as_its_service_account() {
    let Some(env) = real_support::env().await else {
        return;
    };
    if std::env::var_os("RUST_LOG").is_some() {
        platform_operator::logging::init(platform_operator::logging::LogFormat::Text, "info");
    }
    env.install_crds().await;
    env.apply_operator_rbac().await;
    let ns = env.namespace("rbac").await;
    let client = env.operator_client().await;
    let started = Instant::now();
    let operator = Operator::start(
        client,
        OperatorConfig {
            namespace: Some(ns.name.clone()),
            clock: Arc::new(SystemClock),
            instance: Some("real-rbac-test".into()),
            ..OperatorConfig::default()
        },
    );
    tokio::time::timeout(Duration::from_secs(20), operator.wait_for_caches())
        .await
        .expect("the operator's caches list within 20 s (a refused list or watch never does)");

    let platforms: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    for (i, name) in TRADING.iter().enumerate() {
        let mut builder = platform(name)
            .namespace(&ns.name)
            .pod_annotation("sim.pmp.dev/ready-after", "200ms")
            .config("platform", name)
            .label("pmp.dev/stack", "trading");
        if i > 0 {
            builder = builder.depends_on([TRADING[i - 1]]);
        }
        platforms
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER),
                &Patch::Apply(apply_body(&builder.build())),
            )
            .await
            .expect("platform applied");
    }

    // Their group (its status is the operator's platformgroups/status write).
    let groups: Api<PlatformGroup> = Api::namespaced(env.client.clone(), &ns.name);
    let trading = group("trading")
        .namespace(&ns.name)
        .selecting("pmp.dev/stack", "trading")
        .build();
    groups
        .patch(
            "trading",
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(apply_body(&trading)),
        )
        .await
        .expect("group applied");

    // Up: each Deployment is scaled up only once its dependency runs.
    let mut scaled_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut running_at: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0.. {
        let seen = real_support::snapshot(&env.client, &ns.name).await;
        for name in &seen.scaled_up {
            scaled_at.entry(name.clone()).or_insert(round);
        }
        for (name, phase) in &seen.phases {
            if *phase == Some(Phase::Running) {
                running_at.entry(name.clone()).or_insert(round);
            }
        }
        if running_at.len() == TRADING.len() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "the stack did not come up in 60 s: phases {:?}\nwarnings: {:#?}",
                seen.phases,
                real_support::warnings(&env.client, &ns.name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let up = started.elapsed();
    for pair in TRADING.windows(2) {
        assert!(
            running_at[pair[0]] <= scaled_at[pair[1]],
            "{} was scaled up (round {}) before {} was Running (round {})",
            pair[1],
            scaled_at[pair[1]],
            pair[0],
            running_at[pair[0]]
        );
        assert!(running_at[pair[0]] <= running_at[pair[1]]);
    }
    println!("stack up after {up:?}: first Running per platform (poll round) {running_at:?}");

    real_support::eventually(
        Duration::from_secs(10),
        "the group reporting 6/6 ready members",
        || {
            let groups = groups.clone();
            async move {
                let status = groups.get("trading").await.ok()?.status?;
                (status.ready_members == 6 && status.total_members == 6).then_some(())
            }
        },
    )
    .await;

    let out = env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "plat",
        "--all",
        "-n",
        &ns.name,
        "--timeout=30s",
    ]);
    assert!(
        out.success,
        "kubectl wait failed:\n{}{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stdout.lines().count(), 6, "{}", out.stdout);

    // Down: deleting them all stops them in reverse order; each platform disappears once its
    // pods are gone (the finalizer), its dependency is scaled down only after that.
    let deleting = Instant::now();
    platforms
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("platforms deleted");
    let mut pods_gone_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut scaled_down_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut gone_at: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0.. {
        let seen = real_support::snapshot(&env.client, &ns.name).await;
        for name in TRADING {
            if !seen.scaled_up.contains(name) {
                scaled_down_at.entry(name.into()).or_insert(round);
            }
            if !seen.with_pods.contains(name) {
                pods_gone_at.entry(name.into()).or_insert(round);
            }
            if !seen.phases.contains_key(name) {
                gone_at.entry(name.into()).or_insert(round);
            }
        }
        if gone_at.len() == TRADING.len() && pods_gone_at.len() == TRADING.len() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "the stack was not deleted in 90 s: phases {:?}, pods of {:?}\nwarnings: {:#?}",
                seen.phases,
                seen.with_pods,
                real_support::warnings(&env.client, &ns.name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down = deleting.elapsed();
    for pair in TRADING.windows(2) {
        let (dependency, dependent) = (pair[0], pair[1]);
        assert!(
            pods_gone_at[dependent] <= scaled_down_at[dependency],
            "{dependency} was scaled down (round {}) while {dependent} still had pods (until round {})",
            scaled_down_at[dependency],
            pods_gone_at[dependent]
        );
        assert!(
            gone_at[dependent] <= gone_at[dependency],
            "{dependency} was gone before {dependent}: {gone_at:?}"
        );
    }
    println!("stack deleted after {down:?}: gone per platform (poll round) {gone_at:?}");
    operator.shutdown().await;

    let events: Vec<Event> = Api::<Event>::namespaced(env.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let forbidden: Vec<String> = events
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("Forbidden")
        })
        .map(|e| format!("{:?}: {:?}", e.involved_object.name, e.message))
        .collect();
    assert!(forbidden.is_empty(), "Forbidden reconciles: {forbidden:#?}");
    let warnings = real_support::warnings(&env.client, &ns.name).await;
    println!("Warning events: {warnings:#?}");
    // The audit trail was published (events.k8s.io create): a Started Event per platform.
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &events {
        if event.reporting_component.as_deref() == Some("platform-operator") {
            reasons
                .entry(event.involved_object.name.clone().unwrap_or_default())
                .or_default()
                .push(event.reason.clone().unwrap_or_default());
        }
    }
    println!("operator Events per platform: {reasons:?}");
    for event in events
        .iter()
        .filter(|e| e.reporting_component.as_deref() == Some("platform-operator"))
    {
        println!(
            "  {} {} {}: {}",
            event.involved_object.name.as_deref().unwrap_or(""),
            event.type_.as_deref().unwrap_or(""),
            event.reason.as_deref().unwrap_or(""),
            event.message.as_deref().unwrap_or("")
        );
    }
    for name in TRADING {
        assert!(
            reasons
                .get(name)
                .is_some_and(|r| r.iter().any(|r| r == "Started")),
            "no Started Event for {name}: {reasons:?}"
        );
    }
}

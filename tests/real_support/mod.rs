//! Helpers for the tests against a real API server (`make testenv`): which control plane to
//! use (env `PMP_TEST_KUBECONFIG`; the tests skip and pass without it), clients for the admin,
//! the operator's ServiceAccount and the unprivileged user, a fresh namespace per test (deleted
//! when the test ends, also when it fails), the project's CRDs installed, and kubectl.
//!
//! Env: `PMP_TEST_KUBECONFIG` (admin), `PMP_TEST_KUBECTL` (default: the first
//! `target/testenv/bin/*/kubectl`, else `kubectl` on PATH), `PMP_TEST_OPERATOR_KUBECONFIG` and
//! `PMP_TEST_UNPRIVILEGED_KUBECONFIG` (default: `operator.kubeconfig` and
//! `unprivileged.kubeconfig` next to the admin kubeconfig), `PMP_TEST_KEEP_NAMESPACES=1` to
//! keep each test's namespace for a look afterwards.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::Value;

use platform_operator::controller::build::PLATFORM_LABEL;
use platform_operator::crd::{Phase, Platform, all_crds};

/// Field manager of everything the tests write as a user would.
pub const TEST_MANAGER: &str = "pmp-real-tests";
/// The operator's ServiceAccount, as deploy/operator/rbac.yaml creates it.
pub const OPERATOR_SA_NAMESPACE: &str = "platform-operator-system";
pub const OPERATOR_SA: &str = "platform-operator";
/// Field manager that applies deploy/operator/rbac.yaml (the same as testenv/operator-kubeconfig.sh,
/// so that both keep one owner of the ClusterRole's rules).
const RBAC_MANAGER: &str = "pmp-testenv";

/// The real control plane the tests run against.
pub struct RealEnv {
    pub admin_kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub client: Client,
}

/// The environment, or `None` (after printing why) when `PMP_TEST_KUBECONFIG` is unset: the
/// calling test then returns and passes.
pub async fn env() -> Option<RealEnv> {
    let Some(admin) = std::env::var_os("PMP_TEST_KUBECONFIG").filter(|v| !v.is_empty()) else {
        println!("skipped: PMP_TEST_KUBECONFIG not set (make testenv)");
        return None;
    };
    let admin_kubeconfig = PathBuf::from(admin);
    let client = client_from(&admin_kubeconfig).await;
    Some(RealEnv {
        kubectl: kubectl_path(),
        admin_kubeconfig,
        client,
    })
}

fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("PMP_TEST_KUBECTL").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testenv/bin");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(bin)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("kubectl"))
        .filter(|path| path.is_file())
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A client for the kubeconfig at `path` (its current context).
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    config_client(kubeconfig).await
}

async fn config_client(kubeconfig: Kubeconfig) -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client from kubeconfig")
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl RealEnv {
    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        run_kubectl(&self.kubectl, &self.admin_kubeconfig, args)
    }

    /// Runs kubectl as the admin and fails the test unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.success,
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `sibling` next to the admin kubeconfig unless `variable` names a file.
    pub fn kubeconfig_path(&self, variable: &str, sibling: &str) -> (PathBuf, bool) {
        match std::env::var_os(variable).filter(|v| !v.is_empty()) {
            Some(path) => (PathBuf::from(path), true),
            None => (
                self.admin_kubeconfig
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(sibling),
                false,
            ),
        }
    }

    /// The unprivileged user's client.
    pub async fn unprivileged_client(&self) -> Client {
        let (path, _) = self.kubeconfig_path(
            "PMP_TEST_UNPRIVILEGED_KUBECONFIG",
            "unprivileged.kubeconfig",
        );
        client_from(&path).await
    }

    /// Applies deploy/operator/rbac.yaml as it is in the repository (so the test checks this
    /// file, not what an earlier run left in the cluster), then waits until the authorizer
    /// lets the ServiceAccount list platforms (a new ClusterRole takes a moment to count).
    pub async fn apply_operator_rbac(&self) {
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/operator/rbac.yaml");
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            &format!("--field-manager={RBAC_MANAGER}"),
            "-f",
            &rbac.to_string_lossy(),
        ]);
        let user = format!("system:serviceaccount:{OPERATOR_SA_NAMESPACE}:{OPERATOR_SA}");
        eventually(
            Duration::from_secs(10),
            "the operator's ClusterRole in effect",
            || {
                let out = self.kubectl(&[
                    "auth",
                    "can-i",
                    "list",
                    "platforms.pmp.dev",
                    "--all-namespaces",
                    &format!("--as={user}"),
                ]);
                async move { (out.stdout.trim() == "yes").then_some(()) }
            },
        )
        .await;
    }

    /// A client acting as the operator's ServiceAccount: `PMP_TEST_OPERATOR_KUBECONFIG` when
    /// set; else `operator.kubeconfig` next to the admin kubeconfig when its token is still
    /// accepted (testenv/operator-kubeconfig.sh writes it; a restarted testenv has new keys);
    /// else a fresh token for the ServiceAccount (TokenRequest) on the admin's cluster entry.
    pub async fn operator_client(&self) -> Client {
        let (path, explicit) =
            self.kubeconfig_path("PMP_TEST_OPERATOR_KUBECONFIG", "operator.kubeconfig");
        if explicit {
            return client_from(&path).await;
        }
        if let Ok(kubeconfig) = Kubeconfig::read_from(&path) {
            let client = config_client(kubeconfig).await;
            let probe: Api<Platform> = Api::all(client.clone());
            if probe.list(&ListParams::default().limit(1)).await.is_ok() {
                return client;
            }
        }
        let accounts: Api<ServiceAccount> =
            Api::namespaced(self.client.clone(), OPERATOR_SA_NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = accounts
            .create_token_request(OPERATOR_SA, &PostParams::default(), &request)
            .await
            .expect("token for the operator's ServiceAccount")
            .status
            .expect("token request status")
            .token;
        let kubeconfig = Kubeconfig::read_from(&self.admin_kubeconfig).expect("admin kubeconfig");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("usable admin kubeconfig");
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Client::try_from(config).expect("client with the ServiceAccount token")
    }

    /// A fresh namespace, deleted when the returned guard is dropped. Waits for its `default`
    /// ServiceAccount (pods cannot be created before it exists).
    pub async fn namespace(&self, test: &str) -> TestNamespace {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("pmp-real-{test}-")),
                labels: Some([("pmp.dev/real-test".to_string(), test.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        let name = created.name_any();
        let guard = TestNamespace {
            name: name.clone(),
            kubectl: self.kubectl.clone(),
            kubeconfig: self.admin_kubeconfig.clone(),
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &name);
        eventually(
            Duration::from_secs(30),
            "the default ServiceAccount",
            || {
                let accounts = accounts.clone();
                async move { accounts.get_opt("default").await.ok().flatten() }
            },
        )
        .await;
        guard
    }

    /// Installs the project's CRDs (`all_crds()`) by server-side apply and waits until each is
    /// Established with NamesAccepted. Returns them.
    pub async fn install_crds(&self) -> Vec<CustomResourceDefinition> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crds = all_crds();
        for crd in &crds {
            let mut body = serde_json::to_value(crd).expect("serializable CRD");
            body["apiVersion"] = "apiextensions.k8s.io/v1".into();
            body["kind"] = "CustomResourceDefinition".into();
            api.patch(
                &crd.name_any(),
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap_or_else(|e| panic!("CRD {} applied: {e}", crd.name_any()));
        }
        for crd in &crds {
            let name = crd.name_any();
            eventually(
                Duration::from_secs(30),
                &format!("CRD {name} Established and NamesAccepted"),
                || {
                    let (api, name) = (api.clone(), name.clone());
                    async move {
                        let crd = api.get(&name).await.ok()?;
                        let conditions = crd.status?.conditions?;
                        let is_true = |kind: &str| {
                            conditions
                                .iter()
                                .any(|c| c.type_ == kind && c.status == "True")
                        };
                        (is_true("Established") && is_true("NamesAccepted")).then_some(())
                    }
                },
            )
            .await;
        }
        crds
    }
}

fn run_kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> KubectlOutput {
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    KubectlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A namespace of one test. Dropping it deletes the namespace without waiting, after removing
/// the finalizers of Platforms left in it (a failed test may leave some that no operator will
/// ever release, which would keep the namespace terminating forever).
pub struct TestNamespace {
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("PMP_TEST_KEEP_NAMESPACES").is_some_and(|v| v == "1") {
            println!("kept namespace {}", self.name);
            return;
        }
        let ns = self.name.as_str();
        let kubectl = |args: &[&str]| run_kubectl(&self.kubectl, &self.kubeconfig, args);
        let left = kubectl(&["get", "platforms.pmp.dev", "-n", ns, "-o", "name"]);
        for platform in left.stdout.lines().filter(|l| !l.is_empty()) {
            kubectl(&[
                "patch",
                "-n",
                ns,
                platform,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
        kubectl(&[
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `object` as a server-side apply body with its `apiVersion` and `kind`.
pub fn apply_body<K: kube::Resource<DynamicType = ()> + serde::Serialize>(object: &K) -> Value {
    let mut body = serde_json::to_value(object).expect("serializable");
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    body
}

/// The error code of a failed request (0 for errors without an API status).
pub fn status_code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        _ => 0,
    }
}

/// Whether the operator's ServiceAccount may do `verb` on `group`/`resource` (cluster-wide when
/// `namespace` is `None`), as the live API server's authorizer answers.
pub async fn operator_may(
    client: &Client,
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!(
                "system:serviceaccount:{OPERATOR_SA_NAMESPACE}:{OPERATOR_SA}"
            )),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{OPERATOR_SA_NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(verb.into()),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// One look at the namespace: deployments first, then pods, then platforms, so that whatever
/// a later list shows happened after what an earlier one shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Deployments present with replicas > 0.
    pub scaled_up: BTreeSet<String>,
    /// Platforms with at least one pod.
    pub with_pods: BTreeSet<String>,
    pub phases: BTreeMap<String, Option<Phase>>,
}

pub async fn snapshot(client: &Client, namespace: &str) -> Snapshot {
    let lp = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .expect("deployments");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(PLATFORM_LABEL))
        .await
        .expect("pods");
    let platforms = Api::<Platform>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .expect("platforms");
    Snapshot {
        scaled_up: deployments
            .items
            .iter()
            .filter(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) > 0)
            .map(ResourceExt::name_any)
            .collect(),
        with_pods: pods
            .items
            .iter()
            .filter_map(|p| p.labels().get(PLATFORM_LABEL).cloned())
            .collect(),
        phases: platforms
            .items
            .iter()
            .map(|p| (p.name_any(), p.status.as_ref().and_then(|s| s.phase)))
            .collect(),
    }
}

pub async fn warnings(client: &Client, namespace: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            format!(
                "{} {}: {}",
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

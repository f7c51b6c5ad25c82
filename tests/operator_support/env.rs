//! One cluster per test, simulated or real, with the operator running in-process.
//!
//! [`TestEnv::start`] picks the cluster:
//! - by default the embedded simulator (`platform_sandbox::Sandbox`, simulated time at
//!   [`SPEED`] × real time), one per test;
//! - with `PMP_TEST_KUBECONFIG` set to a kubeconfig (`make testenv` writes
//!   `target/testenv/kubeconfig`), that cluster: the CRDs are server-side applied once per
//!   test binary, and the operator runs with the system clock.
//!
//! Either way each test gets a namespace of its own (created here, deleted best-effort at the
//! end on a real cluster), the operator watches only that namespace, and a [`Recorder`] watches
//! it from before the test applies anything. The tests do not know which cluster they have;
//! those that need what only the simulator has use [`TestEnv::sim_only`]. With `RUST_LOG` set,
//! the operator's logs go to stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use tokio::sync::OnceCell;

use platform_operator::controller::{Operator, OperatorConfig};
use platform_operator::crd::all_crds;
use platform_sandbox::{OperatorClock, Sandbox, SandboxConfig};
use pmp_sim::SimCluster;

use super::history::History;
use super::recorder::Recorder;
use super::view::View;

/// Simulated seconds per real second on the simulator.
pub const SPEED: f64 = 20.0;
/// The environment variable naming a real cluster's kubeconfig.
pub const KUBECONFIG_VAR: &str = "PMP_TEST_KUBECONFIG";
/// Field manager of the harness's own writes (CRDs, namespaces).
const HARNESS: &str = "pmp-test-harness";

enum Cluster {
    Simulated(Box<Sandbox>),
    Real { kubeconfig: PathBuf },
}

/// A test's cluster, namespace, operator and recorder.
pub struct TestEnv {
    cluster: Option<Cluster>,
    client: Client,
    namespace: String,
    operator: Option<Operator>,
    recorder: Recorder,
    /// The namespace has been cleaned up (or needs no cleanup).
    cleaned: bool,
}

/// The real cluster's kubeconfig, if the tests run on one.
pub fn real_kubeconfig() -> Option<PathBuf> {
    std::env::var_os(KUBECONFIG_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl TestEnv {
    /// The cluster (see the module documentation), a fresh namespace and the operator.
    pub async fn start() -> TestEnv {
        if std::env::var_os("RUST_LOG").is_some() {
            // The operator's logs on stderr (not captured: run one test at a time).
            platform_operator::logging::init(platform_operator::logging::LogFormat::Text, "info");
        }
        let namespace = namespace_name();
        let (cluster, client) = match real_kubeconfig() {
            Some(kubeconfig) => {
                let client = real_client(&kubeconfig).await;
                install_crds(&client).await;
                (Cluster::Real { kubeconfig }, client)
            }
            None => {
                let sandbox = Sandbox::start(SandboxConfig {
                    speed: SPEED,
                    ..SandboxConfig::default()
                })
                .await
                .expect("sandbox starts");
                let client = sandbox.client();
                (Cluster::Simulated(Box::new(sandbox)), client)
            }
        };
        create_namespace(&client, &namespace, matches!(cluster, Cluster::Real { .. })).await;
        let recorder = Recorder::start(client.clone(), &namespace).await;
        let mut env = TestEnv {
            cleaned: matches!(cluster, Cluster::Simulated(_)),
            cluster: Some(cluster),
            client,
            namespace,
            operator: None,
            recorder,
        };
        // Like an operator that has been running: its caches have done their first list
        // before the test applies anything.
        env.start_operator();
        env.wait_for_operator_caches().await;
        env
    }

    /// Polls until the operator's caches have done their first list. Not `wait_for_caches`:
    /// a store's readiness is a `futures` oneshot that wakes only the last of its waiters, and
    /// kube-runtime's controller waits on the Platform store too, so one of the two would
    /// sleep until something else woke it (seen as 30 s stalls on the real cluster).
    pub async fn wait_for_operator_caches(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.operator().stores().synced() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator's caches did not sync in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`TestEnv::start`] on the simulator; on a real cluster prints why the test is skipped
    /// and returns `None`.
    pub async fn sim_only(why: &str) -> Option<TestEnv> {
        if real_kubeconfig().is_some() {
            eprintln!("skipped on the real cluster: {why}");
            return None;
        }
        Some(TestEnv::start().await)
    }

    /// A client of the cluster, as `kubectl` or a user would have.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The test's own namespace; the operator watches only this one.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The simulator, for tests started with [`TestEnv::sim_only`].
    pub fn sim(&self) -> &SimCluster {
        match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => &sandbox.cluster,
            _ => panic!("only on the simulator: start the test with TestEnv::sim_only"),
        }
    }

    /// A kubeconfig file for the cluster (written into `dir` for the simulator).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => {
                let path = dir.join("config");
                sandbox
                    .cluster
                    .write_kubeconfig(&path)
                    .expect("kubeconfig written");
                path
            }
            Some(Cluster::Real { kubeconfig }) => kubeconfig.clone(),
            None => unreachable!("the cluster lives as long as the env"),
        }
    }

    /// A kube configuration for the cluster, for clients a test builds itself.
    pub async fn kube_config(&self) -> Config {
        let kubeconfig = match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => sandbox.cluster.kubeconfig(),
            Some(Cluster::Real { kubeconfig }) => {
                Kubeconfig::read_from(kubeconfig).expect("kubeconfig readable")
            }
            None => unreachable!("the cluster lives as long as the env"),
        };
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("usable kubeconfig")
    }

    /// The clock an operator of this cluster runs on (the simulator's, or the system's).
    pub fn operator_clock(&self) -> Arc<dyn platform_operator::controller::Clock> {
        match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => {
                Arc::new(OperatorClock(sandbox.cluster.clock().clone()))
            }
            _ => Arc::new(platform_operator::controller::SystemClock),
        }
    }

    /// Starts the operator (again), watching the test's namespace.
    pub fn start_operator(&mut self) -> &Operator {
        self.start_operator_with(|_| {})
    }

    /// Starts the operator (again) with its configuration adjusted by `adjust`.
    pub fn start_operator_with(&mut self, adjust: impl FnOnce(&mut OperatorConfig)) -> &Operator {
        let mut config = OperatorConfig {
            namespace: Some(self.namespace.clone()),
            instance: Some(format!("test-{}", self.namespace)),
            ..OperatorConfig::default()
        };
        if let Some(Cluster::Simulated(sandbox)) = &self.cluster {
            config.clock = Arc::new(OperatorClock(sandbox.cluster.clock().clone()));
        }
        adjust(&mut config);
        let operator = Operator::start(self.client.clone(), config);
        self.operator.insert(operator)
    }

    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("the operator is running")
    }

    /// Stops the operator at once, as a crash would.
    pub fn kill_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
    }

    /// Stops the operator gracefully (reconciles in flight finish); panics if that takes
    /// longer than 30 s.
    pub async fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(30), operator.shutdown()).await;
            assert!(
                stopped.is_ok(),
                "the operator did not shut down gracefully in 30 s"
            );
        }
    }

    /// The namespace's objects as the recorder's watches last showed them.
    pub fn view(&self) -> View {
        self.recorder.view()
    }

    /// Everything recorded in the namespace so far, once the watches have caught up.
    pub async fn history(&self) -> History {
        self.recorder.history().await
    }

    /// Waits until `check` returns something on the recorded state; panics with `what` after
    /// `timeout` (real time). Re-checked on every recorded change, not on a timer.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&View) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut changed = self.recorder.subscribe();
            let view = self.view();
            if let Some(found) = check(&view) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; platforms:\n{}",
                    super::describe_platforms(&view.platforms())
                );
            }
        }
    }

    /// Lets `duration` of the cluster's time pass, for assertions that nothing happens.
    ///
    /// On the simulator this advances the simulated clock at once and then waits until the
    /// cluster and the operator are quiet ([`TestEnv::settle`]): whatever became due has been
    /// done. On a real cluster time cannot be advanced, so this sleeps `duration` of real time.
    pub async fn let_time_pass(&self, duration: Duration) {
        match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => {
                sandbox.cluster.clock().advance(duration);
                self.settle().await;
            }
            _ => tokio::time::sleep(duration).await,
        }
    }

    /// Waits until nothing changes any more: no write in the namespace for a quiet period, the
    /// recorder caught up, and none of the operator's writes waiting for their watch echo.
    /// The quiet period is 10 polls 10 ms apart on the simulator (2 s of simulated time, longer
    /// than any of the operator's reactions there) and 1 s on a real cluster.
    pub async fn settle(&self) {
        let (interval, polls) = match &self.cluster {
            Some(Cluster::Simulated(_)) => (Duration::from_millis(10), 10),
            _ => (Duration::from_millis(100), 10),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = None;
        let mut quiet = 0;
        while quiet < polls {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not settle in 30 s"
            );
            tokio::time::sleep(interval).await;
            let own_writes = self
                .operator
                .as_ref()
                .map_or(0, |o| o.context().table_sizes().own_writes);
            let now = (self.recorder.len(), self.server_version());
            if last == Some(now) && own_writes == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
            last = Some(now);
        }
        self.recorder.sync(Duration::from_secs(30)).await;
    }

    /// The simulator's global resourceVersion (any write anywhere moves it).
    fn server_version(&self) -> u64 {
        match &self.cluster {
            Some(Cluster::Simulated(sandbox)) => sandbox.cluster.store().resource_version(),
            _ => 0,
        }
    }

    /// Stops the operator and the cluster (the simulator) or cleans up the namespace (a real
    /// cluster).
    pub async fn shutdown(mut self) {
        self.stop_operator().await;
        self.recorder.stop();
        match self.cluster.take() {
            Some(Cluster::Simulated(sandbox)) => {
                let stopped =
                    tokio::time::timeout(Duration::from_secs(30), sandbox.shutdown()).await;
                assert!(stopped.is_ok(), "the simulator did not shut down in 30 s");
            }
            Some(Cluster::Real { .. }) => {
                cleanup(&self.client, &self.namespace).await;
                self.cleaned = true;
            }
            None => {}
        }
    }
}

impl Drop for TestEnv {
    /// After a failed test: stops the operator and deletes a real cluster's namespace from a
    /// thread of its own (the test's runtime is unwinding).
    fn drop(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
        if self.cleaned {
            return;
        }
        let Some(Cluster::Real { kubeconfig }) = self.cluster.take() else {
            return;
        };
        let namespace = self.namespace.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let client = real_client(&kubeconfig).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    cleanup_namespace(&client, &namespace),
                )
                .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// `t-<test name>-<unique suffix>`, a valid namespace name (at most 63 characters).
fn namespace_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let test = test.rsplit("::").next().unwrap_or(test);
    let mut name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    name = name.trim_matches('-').to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = (u64::from(std::process::id()) << 32 | u64::from(nanos))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)));
    format!("t-{name}-{:06x}", suffix & 0xff_ffff)
}

async fn real_client(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={}: {e}", kubeconfig.display()));
    Client::try_from(config).expect("client from the kubeconfig")
}

/// Server-side applies the project's CRDs once per test binary and waits until they are
/// Established.
async fn install_crds(client: &Client) {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let api: Api<CustomResourceDefinition> = Api::all(client.clone());
            for crd in all_crds() {
                let name = crd.name_any();
                api.patch(
                    &name,
                    &PatchParams::apply(HARNESS).force(),
                    &Patch::Apply(&crd),
                )
                .await
                .unwrap_or_else(|e| panic!("CRD {name} applied: {e}"));
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            for crd in all_crds() {
                let name = crd.name_any();
                loop {
                    let current = api.get(&name).await.expect("CRD readable");
                    let established = current
                        .status
                        .and_then(|s| s.conditions)
                        .into_iter()
                        .flatten()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    if established {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "CRD {name} not Established after 30 s"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
}

/// Creates the namespace; on a real cluster also waits for its `default` ServiceAccount,
/// without which the ServiceAccount admission plugin rejects pods (the ReplicaSet controller
/// would retry with back-off, delaying the first start by seconds).
async fn create_namespace(client: &Client, name: &str, real: bool) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("pmp.dev/test".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("namespace {name} created: {e}"));
    if !real {
        return;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while accounts
        .get_opt("default")
        .await
        .expect("service accounts readable")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no default ServiceAccount in {name} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cleanup(client: &Client, namespace: &str) {
    if tokio::time::timeout(
        Duration::from_secs(20),
        cleanup_namespace(client, namespace),
    )
    .await
    .is_err()
    {
        eprintln!("namespace {namespace}: cleanup timed out; left for the testenv to drop");
    }
}

/// Best-effort: lets the namespace go without the operator (its finalizers removed, pods
/// deleted without grace) and deletes it. Does not wait for it to be gone.
async fn cleanup_namespace(client: &Client, namespace: &str) {
    let platforms: Api<platform_operator::crd::Platform> =
        Api::namespaced(client.clone(), namespace);
    if let Ok(list) = platforms.list(&ListParams::default()).await {
        for platform in list.items {
            let _ = platforms
                .patch(
                    &platform.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces
        .delete(namespace, &DeleteParams::background())
        .await
    {
        eprintln!("namespace {namespace}: not deleted: {e}");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default(),
        )
        .await;
}

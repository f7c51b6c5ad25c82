//! The library API tests and `sandbox` use: start a simulated cluster, get clients and a
//! kubeconfig for it, inspect objects and the write history, and steer time and faults.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{
    Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::admission::CrdAdmission;
use super::auth::AuthTable;
use super::clock::SimClock;
use super::error::{ApiError, SimError};
use super::faults::{FaultConfig, FaultHandle};
use super::gc;
use super::registry::{self, Caller, Core, PatchKind, Target};
use super::resources::{ResourceRef, ResourceTable};
use super::server::{App, PausableListener, router};
use super::store::{Store, WriteRecord};

/// An error a request would have got, as the Kubernetes `Status` it carries.
pub type ApiStatusError = ApiError;

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// How many events watches can resume from (smaller forces `410 Gone` sooner).
    pub watch_window: usize,
    pub crds: Vec<CustomResourceDefinition>,
    /// The schema checks of custom resources (none: they are stored as sent).
    pub admission: Option<Arc<dyn CrdAdmission>>,
    pub faults: FaultConfig,
    pub auth: AuthTable,
    /// Simulated time between bookmarks on watches that allow them.
    pub bookmark_interval: Duration,
    /// Seeds UIDs and generated names.
    pub seed: u64,
    /// Namespaces that exist at start.
    pub namespaces: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            speed: 1.0,
            watch_window: 10_000,
            crds: Vec::new(),
            admission: None,
            faults: FaultConfig::default(),
            auth: AuthTable::default(),
            bookmark_interval: Duration::from_secs(60),
            seed: 1,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl SimConfig {
    pub fn with_crds(mut self, crds: Vec<CustomResourceDefinition>) -> Self {
        self.crds = crds;
        self
    }

    /// Checks writes of custom resources against their schemas with `admission`.
    pub fn with_admission(mut self, admission: impl CrdAdmission) -> Self {
        self.admission = Some(Arc::new(admission));
        self
    }

    pub fn with_speed(mut self, speed: f64) -> Self {
        self.speed = speed;
        self
    }

    pub fn with_watch_window(mut self, events: usize) -> Self {
        self.watch_window = events;
        self
    }

    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    pub fn with_auth(mut self, auth: AuthTable) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    pub fn with_bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }
}

/// Names one object, as returned by [`SimCluster::apply_manifests`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// A running simulated cluster. Dropping it without [`SimCluster::shutdown`] leaves the server
/// running until the runtime ends.
pub struct SimCluster {
    core: Arc<Core>,
    app: Arc<App>,
    addr: SocketAddr,
    client_config: kube::Config,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    collector: JoinHandle<()>,
}

/// Records pod usage for the metrics API; cheap to clone and to move into other tasks.
#[derive(Clone)]
pub struct UsageRecorder(Arc<Core>);

impl UsageRecorder {
    pub fn set(&self, namespace: &str, pod: &str, cpu: &str, memory: &str) {
        self.0.store.set_pod_usage(namespace, pod, cpu, memory);
    }

    pub fn clear(&self, namespace: &str, pod: &str) {
        self.0.store.clear_pod_usage(namespace, pod);
    }
}

const MANIFEST_MANAGER: &str = "sim-manifests";

impl SimCluster {
    pub async fn start(config: SimConfig) -> Result<SimCluster, SimError> {
        let clock = SimClock::new(config.speed);
        let table = ResourceTable::new(&config.crds, config.admission.as_deref())?;
        let store = Store::new(clock.clone(), config.watch_window, config.seed);
        let (gc_tx, gc_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            store,
            table,
            clock: clock.clone(),
            gc: gc_tx,
        });
        let collector = gc::spawn(core.clone(), gc_rx);
        let faults = FaultHandle::new(config.faults.clone(), clock);
        let app = Arc::new(App {
            core: core.clone(),
            faults: faults.clone(),
            auth: Arc::new(RwLock::new(config.auth.clone())),
            bookmark_interval: config.bookmark_interval,
            requests: Default::default(),
        });
        for ns in &config.namespaces {
            let Some(def) = core.table.find("", "v1", "namespaces") else {
                break;
            };
            let target = Target {
                def,
                version: "v1".into(),
                namespace: None,
                name: None,
                subresource: None,
            };
            // Only fails for an invalid name, which then simply does not exist.
            let _ = registry::create(
                &core,
                &target,
                json!({"metadata": {"name": ns}}),
                &Caller::internal("sim-bootstrap"),
            );
        }
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.addr,
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = router(app.clone());
        let server = tokio::spawn(async move {
            let listener = PausableListener {
                inner: listener,
                faults,
            };
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let kubeconfig = kubeconfig_for(addr);
        let client_config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| SimError::Client(e.to_string()))?;
        Ok(SimCluster {
            core,
            app,
            addr,
            client_config,
            stop: Some(stop),
            server,
            collector,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client built from [`SimCluster::kubeconfig`], exactly as the operator builds one.
    pub fn try_client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.client_config.clone())
            .map_err(|e| SimError::Client(e.to_string()))
    }

    /// Like [`SimCluster::try_client`]; building a plain-HTTP client only fails outside a Tokio
    /// runtime, which is a bug in the calling test.
    pub fn client(&self) -> kube::Client {
        match self.try_client() {
            Ok(client) => client,
            Err(e) => panic!("SimCluster::client must be called inside a Tokio runtime: {e}"),
        }
    }

    pub fn kubeconfig(&self) -> Kubeconfig {
        kubeconfig_for(self.addr)
    }

    /// Writes the kubeconfig (as JSON, which kubectl reads like YAML).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text =
            serde_json::to_string_pretty(&self.kubeconfig()).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    pub fn clock(&self) -> &SimClock {
        &self.core.clock
    }

    /// A reader of the number of requests the API server has received so far (any verb, any
    /// client), that can move into another task.
    pub fn request_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let app = self.app.clone();
        move || app.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn faults(&self) -> FaultHandle {
        self.app.faults.clone()
    }

    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// A handle the simulated kubelet reports pod usage through (served by the metrics API).
    pub fn usage_recorder(&self) -> UsageRecorder {
        UsageRecorder(self.core.clone())
    }

    pub fn resources(&self) -> &ResourceTable {
        &self.core.table
    }

    pub fn writes(&self) -> Vec<WriteRecord> {
        self.core.store.writes()
    }

    /// Replaces the TokenReview / SubjectAccessReview table.
    pub fn set_auth(&self, auth: AuthTable) {
        *self.app.auth.write().unwrap_or_else(|p| p.into_inner()) = auth;
    }

    /// Sets what `metrics.k8s.io` reports for a pod.
    pub fn set_pod_usage(&self, namespace: &str, pod: &str, cpu: &str, memory: &str) {
        self.core.store.set_pod_usage(namespace, pod, cpu, memory);
    }

    /// Ends a pod's grace period now, as the kubelet does once its containers have stopped: the
    /// pod goes unless finalizers hold it. Also works on a pod not yet being deleted. Returns
    /// whether the pod was removed.
    pub fn remove_pod_now(&self, namespace: &str, name: &str) -> bool {
        registry::finish_pod_grace(&self.core, namespace, name, None, "kubelet")
    }

    /// Server-side applies every document of a multi-document YAML (forced, manager
    /// `sim-manifests`), creating namespaces as needed. Each document gets its own result, so
    /// an invalid one does not stop the others.
    pub async fn apply_manifests(&self, yaml: &str) -> Vec<Result<ObjectRef, ApiStatusError>> {
        let docs: Vec<Value> = match serde_saphyr::from_multiple::<Value>(yaml) {
            Ok(docs) => docs,
            Err(e) => {
                return vec![Err(ApiError::bad_request(format!(
                    "error decoding YAML: {e}"
                )))];
            }
        };
        docs.into_iter()
            .filter(|d| !d.is_null())
            .map(|doc| self.apply_document(doc))
            .collect()
    }

    /// Server-side applies one document, as `apply_manifests` does for each.
    pub fn apply_document(&self, doc: Value) -> Result<ObjectRef, ApiError> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = registry::meta_str(&doc, "name")
            .unwrap_or_default()
            .to_string();
        let (def, version) = self
            .core
            .table
            .by_kind(&api_version, &kind)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("no matches for kind \"{kind}\" in version \"{api_version}\""),
                )
            })?;
        let namespace = def.namespaced.then(|| {
            registry::meta_str(&doc, "namespace")
                .unwrap_or("default")
                .to_string()
        });
        if let Some(ns) = &namespace {
            self.ensure_namespace(ns)?;
        }
        let target = Target {
            def,
            version,
            namespace: namespace.clone(),
            name: Some(name.clone()),
            subresource: None,
        };
        let caller = Caller::internal(MANIFEST_MANAGER);
        registry::patch(
            &self.core,
            &target,
            PatchKind::Apply { force: true },
            doc,
            &caller,
        )?;
        Ok(ObjectRef {
            api_version,
            kind,
            namespace,
            name,
        })
    }

    fn ensure_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let ns_ref = ResourceRef::new("", "v1", "namespaces");
        if self.core.store.get(&ns_ref, None, ns).is_some() {
            return Ok(());
        }
        let Some(def) = self.core.table.find("", "v1", "namespaces") else {
            return Ok(());
        };
        let target = Target {
            def,
            version: "v1".into(),
            namespace: None,
            name: None,
            subresource: None,
        };
        match registry::create(
            &self.core,
            &target,
            json!({"metadata": {"name": ns}}),
            &Caller::internal(MANIFEST_MANAGER),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the server and the simulated controllers; open watch streams are cut.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; long-running watches would hold it, so
        // give it a moment and then cut them.
        if tokio::time::timeout(Duration::from_millis(200), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        self.collector.abort();
    }
}

fn kubeconfig_for(addr: SocketAddr) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: "sim".into(),
            cluster: Some(Cluster {
                server: Some(format!("http://{addr}")),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "sim".into(),
            context: Some(Context {
                cluster: "sim".into(),
                user: Some("sim".into()),
                namespace: Some("default".into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "sim".into(),
            auth_info: Some(Default::default()),
            other: Default::default(),
        }],
        current_context: Some("sim".into()),
        kind: Some("Config".into()),
        api_version: Some("v1".into()),
        ..Kubeconfig::default()
    }
}

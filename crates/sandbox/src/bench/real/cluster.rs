//! The benchmark's dealings with the control plane apart from the measured runs: connecting,
//! the CRDs, and one fresh namespace per run that is deleted afterwards, loudly if that fails.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use platform_operator::crd::{Platform, all_crds};

use super::RealError;

/// Field manager of the benchmark's own writes (CRDs, Platforms).
pub(super) const BENCH_MANAGER: &str = "pmp-bench";
/// Label of the benchmark's namespaces, so that leftovers of an interrupted run can be found.
const BENCH_LABEL: &str = "pmp.dev/bench";
/// Requests the benchmark has in flight at once for bulk writes.
pub(super) const IN_FLIGHT: usize = 32;

/// A client for the kubeconfig's current context, checked to reach the API server.
/// A client for the control plane, and the API server's port (whose connections the
/// benchmark counts).
pub(super) async fn connect(kubeconfig: &Path) -> Result<(Client, u16), RealError> {
    let read = |source| RealError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        source,
    };
    let file = Kubeconfig::read_from(kubeconfig).map_err(read)?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(read)?;
    let https = config.cluster_url.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = config
        .cluster_url
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let client = Client::try_from(config).map_err(RealError::Unreachable)?;
    client
        .apiserver_version()
        .await
        .map_err(RealError::Unreachable)?;
    Ok((client, port))
}

/// Waits (up to `timeout`) for the namespaces of earlier runs that are still being deleted:
/// their pods take the node's capacity and keep the controllers busy. Namespaces an
/// interrupted run left are only reported (another benchmark may be using them).
pub(super) async fn wait_for_earlier_runs(client: &Client, timeout: Duration) {
    let api: Api<Namespace> = Api::all(client.clone());
    let params = ListParams::default().labels(BENCH_LABEL);
    let Ok(list) = api.list(&params).await else {
        return;
    };
    let is_terminating = |namespace: &Namespace| {
        namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Terminating")
    };
    for namespace in list.items.iter().filter(|n| !is_terminating(n)) {
        say!(
            "warning: namespace {0} is left from an earlier benchmark run; \
             delete it with: kubectl delete namespace {0}",
            namespace.name_any()
        );
    }
    let terminating = list.items.iter().filter(|n| is_terminating(n)).count();
    if terminating == 0 {
        return;
    }
    say!("waiting for {terminating} namespaces of earlier runs to be deleted...");
    let all_gone = || async {
        let list = api.list(&params).await.ok()?;
        (!list.items.iter().any(is_terminating)).then_some(())
    };
    if let Err(error) = poll("earlier runs' namespaces deleted", timeout, all_gone).await {
        say!("warning: {error}; going on while they terminate");
    }
}

/// Applies the project's CRDs (the same as `crds/*.yaml`) and waits until they are served.
pub(super) async fn apply_crds(client: &Client) -> Result<(), RealError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in all_crds() {
        let name = crd.name_any();
        let mut body = serde_json::to_value(&crd).map_err(|e| RealError::Fixture {
            name: name.clone(),
            message: e.to_string(),
        })?;
        body["apiVersion"] = "apiextensions.k8s.io/v1".into();
        body["kind"] = "CustomResourceDefinition".into();
        let params = PatchParams::apply(BENCH_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(body))
            .await
            .map_err(|source| RealError::api(format!("apply the CRD {name}"), source))?;
        let established = || async {
            let crd = api.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        };
        poll(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            established,
        )
        .await?;
    }
    Ok(())
}

/// A namespace of one measured run.
pub(super) struct BenchNamespace {
    pub name: String,
}

impl BenchNamespace {
    /// A fresh `pmp-bench-<suffix>`, once its default ServiceAccount exists (pods need it).
    pub async fn create(client: &Client, purpose: &str) -> Result<Self, RealError> {
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some("pmp-bench-".into()),
                labels: Some([(BENCH_LABEL.to_string(), purpose.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| RealError::api("create a namespace", source))?;
        let name = created.name_any();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let has_account = || async { accounts.get_opt("default").await.ok().flatten() };
        poll(
            "the default ServiceAccount",
            Duration::from_secs(30),
            has_account,
        )
        .await?;
        Ok(Self { name })
    }

    /// Deletes the namespace and waits until it is gone (its pods with it), up to `timeout`:
    /// the next run must not share the node's pod capacity or the controllers with this one.
    pub async fn delete_and_wait(self, client: &Client, timeout: Duration) {
        let api: Api<Namespace> = Api::all(client.clone());
        say!(
            "deleting namespace {} and waiting until it is gone...",
            self.name
        );
        if !self.delete(client).await {
            return;
        }
        let gone = || async {
            match api.get_opt(&self.name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        };
        let began = Instant::now();
        match poll(&format!("namespace {} deleted", self.name), timeout, gone).await {
            Ok(()) => say!(
                "namespace {} deleted in {:.1} s",
                self.name,
                began.elapsed().as_secs_f64()
            ),
            Err(error) => say!("warning: {error}; going on while it terminates"),
        }
    }

    /// Removes the Platforms' finalizers (no operator runs any more to release them, and they
    /// would keep the namespace terminating forever), then deletes the namespace without
    /// waiting.
    pub async fn release(self, client: &Client) {
        let api: Api<Platform> = Api::namespaced(client.clone(), &self.name);
        let names = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|p| !p.finalizers().is_empty())
                .map(|p| p.name_any())
                .collect::<Vec<_>>(),
            Err(error) => {
                say!(
                    "warning: failed to list the platforms of {}: {error}",
                    self.name
                );
                Vec::new()
            }
        };
        say!("removing the finalizers of {} platforms...", names.len());
        let patch = json!({"metadata": {"finalizers": null}});
        let failed = futures::stream::iter(names.iter().map(|name| {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                let params = PatchParams::default();
                api.patch(name, &params, &Patch::Merge(patch))
                    .await
                    .is_err()
            }
        }))
        .buffer_unordered(IN_FLIGHT)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
        if failed > 0 {
            say!(
                "warning: {failed} platforms of {} kept their finalizer; the namespace may stay \
                 Terminating (kubectl patch platforms.pmp.dev -n {} NAME --type=merge -p \
                 '{{\"metadata\":{{\"finalizers\":null}}}}')",
                self.name,
                self.name
            );
        }
        if self.delete(client).await {
            say!(
                "namespace {} is being deleted in the background (kubectl get namespace {})",
                self.name,
                self.name
            );
        }
    }

    /// Asks for the deletion; says so on failure (the namespace is then left behind).
    async fn delete(&self, client: &Client) -> bool {
        let api: Api<Namespace> = Api::all(client.clone());
        match api.delete(&self.name, &DeleteParams::background()).await {
            Ok(_) => true,
            Err(error) => {
                say!(
                    "warning: failed to delete namespace {0}: {error}; delete it with: \
                     kubectl delete namespace {0}",
                    self.name
                );
                false
            }
        }
    }
}

/// Calls `probe` every 100 ms until it returns `Some`, for up to `timeout`.
pub(super) async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T, RealError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(RealError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

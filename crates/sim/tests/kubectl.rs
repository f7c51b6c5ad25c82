//! kubectl against the simulator (skipped, with a printed reason, only when kubectl is absent).

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn find_kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
}

async fn kubectl(
    bin: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // Keep kubectl's discovery cache out of the user's home.
    cmd.env("KUBECACHEDIR", kubeconfig.with_extension("cache"));
    let mut child = cmd.spawn().expect("kubectl starts");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.expect("stdin");
        }
        drop(input);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl in time")
        .expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// The simulator serves no OpenAPI documents (`/openapi/v2` and `/openapi/v3` answer 404), and
// kubectl's default `--validate=strict` needs one of them, so every apply passes
// `--validate=false`.
const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
data:
  mode: fast
---
apiVersion: pmp.dev/v1alpha1
kind: Platform
metadata:
  name: web
  namespace: default
spec:
  image: nginx:1
  replicas: 2
"#;

#[tokio::test]
async fn kubectl_get_apply_delete() {
    let Some(bin) = find_kubectl() else {
        println!(
            "SKIPPED: kubectl is not installed (install Debian's kubernetes-client to run this test)"
        );
        return;
    };
    let sim = start().await;
    let dir = std::env::temp_dir().join(format!(
        "sim-kubectl-{}-{}",
        std::process::id(),
        sim.addr().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    let (ok, out, err) = kubectl(
        &bin,
        &kubeconfig,
        &["get", "namespaces", "-o", "name"],
        None,
    )
    .await;
    assert!(ok, "get namespaces: {err}");
    assert!(out.contains("namespace/default"), "{out}");

    let (ok, out, err) = kubectl(
        &bin,
        &kubeconfig,
        &["apply", "--server-side", "--validate=false", "-f", "-"],
        Some(MANIFEST),
    )
    .await;
    assert!(ok, "apply --server-side: {out}\n{err}");
    assert!(
        out.contains("configmap/settings serverside-applied")
            && out.contains("platform.pmp.dev/web serverside-applied"),
        "{out}"
    );
    // Re-applying the same manifest is a no-op for the server.
    let writes = sim.writes().len();
    let (ok, _, err) = kubectl(
        &bin,
        &kubeconfig,
        &["apply", "--server-side", "--validate=false", "-f", "-"],
        Some(MANIFEST),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(sim.writes().len(), writes, "re-apply wrote nothing");
    let manager = sim
        .writes()
        .iter()
        .rev()
        .find(|w| w.name == "web")
        .map(|w| w.actor.clone())
        .unwrap();
    assert_eq!(manager, "kubectl");

    let (ok, out, err) = kubectl(
        &bin,
        &kubeconfig,
        &["get", "plat", "web", "-o", "jsonpath={.spec.replicas}"],
        None,
    )
    .await;
    assert!(ok, "get by short name: {err}");
    assert_eq!(out.trim(), "2");
    let (ok, out, err) = kubectl(&bin, &kubeconfig, &["get", "pmp"], None).await;
    assert!(ok, "get by category: {err}");
    assert!(out.contains("web"), "{out}");

    // Client-side apply (strategic merge patch with kubectl's directives, last-applied annotation).
    let (ok, out, err) = kubectl(&bin, &kubeconfig, &["apply", "--validate=false", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: csa\n  namespace: default\ndata:\n  a: \"1\"\n")).await;
    assert!(ok, "client-side apply: {out}\n{err}");
    let (ok, _, err) = kubectl(&bin, &kubeconfig, &["apply", "--validate=false", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: csa\n  namespace: default\ndata:\n  a: \"2\"\n")).await;
    assert!(ok, "client-side apply update: {err}");
    let cm = sim
        .store()
        .get(
            &pmp_sim::ResourceRef::new("", "v1", "configmaps"),
            Some("default"),
            "csa",
        )
        .unwrap();
    assert_eq!(cm["data"]["a"], "2");

    let (ok, out, err) = kubectl(
        &bin,
        &kubeconfig,
        &["delete", "configmap", "settings"],
        None,
    )
    .await;
    assert!(ok, "delete: {err}");
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) = kubectl(&bin, &kubeconfig, &["get", "configmap", "settings"], None).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

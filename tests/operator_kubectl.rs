//! `kubectl` (Debian's 1.20 in CI) sees the operator's work: `get` and `wait --for=condition=Ready`.
//! Skipped, with a printed reason, only when no kubectl is on the PATH.

mod operator_support;

use std::path::PathBuf;
use std::time::Duration;

use operator_support::*;

fn find_kubectl() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("kubectl"))
        .find(|c| c.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_waits_for_ready_platforms() {
    let Some(kubectl) = find_kubectl() else {
        eprintln!("SKIPPED: kubectl is not installed (CI installs Debian's kubernetes-client)");
        return;
    };
    let sandbox = sandbox().await;
    let client = sandbox.client();
    let dir = std::env::temp_dir().join(format!("pmp-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("config");
    sandbox
        .cluster
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    apply(&client, &chain(&["db", "app"], "1s")).await;

    let run = |args: Vec<&'static str>| {
        let kubectl = kubectl.clone();
        let kubeconfig = kubeconfig.clone();
        let cache = dir.join("cache");
        async move {
            let output = tokio::process::Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .env("KUBECACHEDIR", cache)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(60), output)
                .await
                .expect("in time")
                .expect("runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = run(vec![
        "wait",
        "--for=condition=Ready",
        "platforms/app",
        "-n",
        "default",
        "--timeout=60s",
    ])
    .await;
    assert!(ok, "kubectl wait failed: {out} {err}");
    assert!(out.contains("condition met"), "{out}");
    let (ok, out, err) = run(vec![
        "get",
        "plat",
        "-n",
        "default",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ])
    .await;
    assert!(ok, "kubectl get failed: {err}");
    assert_eq!(out.trim(), "Running Running");
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

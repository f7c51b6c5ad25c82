//! `kubectl` (Debian's 1.20 in CI) sees the operator's work: `get` and `wait --for=condition=Ready`.
//! Uses `PMP_TEST_KUBECTL` if set, else `kubectl` on the PATH; skipped, with a printed reason,
//! only when there is none.

mod operator_support;

use std::path::PathBuf;
use std::time::Duration;

use operator_support::*;

fn find_kubectl() -> Option<PathBuf> {
    if let Some(kubectl) = std::env::var_os("PMP_TEST_KUBECTL").filter(|k| !k.is_empty()) {
        return Some(PathBuf::from(kubectl));
    }
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
    let env = TestEnv::start().await;
    let dir = std::env::temp_dir().join(format!("pmp-kubectl-{}", env.namespace()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = env.kubeconfig(&dir);
    env.apply(&chain(&["db", "app"], "1s")).await;

    let namespace = env.namespace().to_string();
    let run = |args: Vec<&str>| {
        let kubectl = kubectl.clone();
        let kubeconfig = kubeconfig.clone();
        let cache = dir.join("cache");
        let args: Vec<String> = args
            .into_iter()
            .map(String::from)
            .chain(["-n".to_string(), namespace.clone()])
            .collect();
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
        "--timeout=60s",
    ])
    .await;
    assert!(ok, "kubectl wait failed: {out} {err}");
    assert!(out.contains("condition met"), "{out}");
    let (ok, out, err) = run(vec![
        "get",
        "plat",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ])
    .await;
    assert!(ok, "kubectl get failed: {err}");
    assert_eq!(out.trim(), "Running Running");
    env.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

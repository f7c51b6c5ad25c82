//! The plugin against the operator in the simulated cluster: a [`Sandbox`] with the operator,
//! a kubeconfig for it, and the built `kubectl-platform` binary run as a user would run it.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use platform_operator::api::control::Snapshot;
use platform_operator::controller::Topology;
use platform_operator::crd::{Phase, Platform};
use platform_operator::fixtures::TEST_NAMESPACE;
use platform_operator::stack::key_of;
use platform_sandbox::{Sandbox, SandboxConfig};

/// Simulated seconds per real second.
pub const SPEED: f64 = 20.0;
/// The longest a test waits (real time) for the operator to get somewhere.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Env {
    pub sandbox: Sandbox,
    dir: PathBuf,
    pub kubeconfig: PathBuf,
}

/// What one run of the plugin did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub async fn start() -> Env {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let mut sandbox = Sandbox::start(SandboxConfig {
            speed: SPEED,
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox starts");
        sandbox.start_operator().expect("operator starts");
        let dir = std::env::temp_dir().join(format!(
            "kubectl-platform-test-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("config");
        sandbox
            .cluster
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Env {
            sandbox,
            dir,
            kubeconfig,
        }
    }

    pub fn client(&self) -> Client {
        self.sandbox.client()
    }

    /// The kubeconfig's user sends `token` from now on, as a ServiceAccount or OIDC user would.
    pub fn use_token(&self, token: &str) {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("kubeconfig JSON");
        config["users"][0]["user"]["token"] = serde_json::json!(token);
        std::fs::write(&self.kubeconfig, config.to_string()).expect("kubeconfig rewritten");
    }

    pub async fn create(&self, platforms: Vec<Platform>) {
        for platform in platforms {
            let api: Api<Platform> = Api::namespaced(
                self.client(),
                platform
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or(TEST_NAMESPACE),
            );
            api.create(&PostParams::default(), &platform)
                .await
                .expect("platform created");
        }
    }

    pub async fn platform(&self, name: &str) -> Platform {
        Api::<Platform>::namespaced(self.client(), TEST_NAMESPACE)
            .get(name)
            .await
            .expect("platform read")
    }

    /// The platform once the operator has acted on its latest spec.
    pub async fn observed(&self, name: &str) -> Platform {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let platform = self.platform(name).await;
            let observed = platform.status.as_ref().and_then(|s| s.observed_generation);
            if observed.is_some() && observed >= platform.metadata.generation {
                return platform;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: generation {:?} not observed within {PATIENCE:?}",
                platform.metadata.generation
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every platform, as the plugin sees them.
    pub async fn snapshot(&self) -> (Vec<Arc<Platform>>, Snapshot) {
        let platforms: Vec<Arc<Platform>> = Api::<Platform>::all(self.client())
            .list(&ListParams::default())
            .await
            .expect("platforms listed")
            .items
            .into_iter()
            .map(Arc::new)
            .collect();
        let snapshot = Snapshot {
            platforms: platforms
                .iter()
                .map(|p| (key_of(p.as_ref()), Arc::clone(p)))
                .collect::<HashMap<_, _>>(),
            topology: Arc::new(Topology::of(&platforms, &[])),
        };
        (platforms, snapshot)
    }

    /// Waits until each of `names` is in `phase`.
    pub async fn wait_for(&self, names: &[&str], phase: Phase) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut phases = Vec::new();
            for name in names {
                let platform = self.platform(name).await;
                phases.push(platform.status.and_then(|s| s.phase));
            }
            if phases.iter().all(|p| *p == Some(phase)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{names:?} not all {phase} within {PATIENCE:?}: {phases:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `kubectl-platform --kubeconfig <ours> ARGS`.
    pub async fn kubectl(&self, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-platform"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .expect("the plugin runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Like [`Env::kubectl`], failing the test unless the plugin succeeds.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args).await;
        assert_eq!(run.code, 0, "kubectl platform {args:?} failed: {run:?}");
        run.stdout
    }

    pub async fn shutdown(self) {
        self.sandbox.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The platforms (name, change) of a control command's table, in order.
pub fn affected(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("ORDER"))
        .skip(1)
        .take_while(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            Some((cells.get(1)?.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

//! Server-side printing of the project's CRDs: `kubectl get` asks for a `meta.k8s.io` Table and
//! gets the Platform's printer columns, as from a real API server.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use platform_operator::crd::Platform;
use platform_operator::fixtures::{TEST_NAMESPACE, platform};
use pmp_sim::SimCluster;
use serde_json::{Value, json};
use support::*;

/// What kubectl (1.20 and later) sends for `get` with human-readable output.
const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn running_platforms() -> SimCluster {
    let sim = start_with(platform_sandbox::sim_config()).await;
    let api: Api<Platform> = Api::namespaced(sim.client(), TEST_NAMESPACE);
    for (name, deps) in [("db", vec![]), ("app", vec!["db"])] {
        let object = platform(name).depends_on(deps).build();
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    let status = json!({"status": {"phase": "Running", "ready": "1/1", "dependencies": "1/1",
        "restartCount": 3, "startupWave": 1}});
    api.patch_status("app", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    sim.clock().advance(Duration::from_secs(150));
    sim
}

/// Creation timestamps have whole seconds, so the clock moved on by 150 s shows 150 or 151 s.
fn is_age(cell: &str) -> bool {
    matches!(cell, "2m30s" | "2m31s")
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[tokio::test]
async fn platforms_are_printed_with_their_printer_columns() {
    let sim = running_platforms().await;
    let accept = [("accept", KUBECTL_ACCEPT)];
    let path = "/apis/pmp.dev/v1alpha1/namespaces/default/platforms";

    let (code, table) = raw(&sim, "GET", &format!("{path}/app"), &accept, b"").await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(
        (&table["kind"], &table["apiVersion"]),
        (&json!("Table"), &json!("meta.k8s.io/v1"))
    );
    assert_eq!(
        column_names(&table),
        ["Name", "Phase", "Ready", "Deps", "Restarts", "Wave", "Age"]
    );
    let definitions = &table["columnDefinitions"];
    assert_eq!(definitions[0]["format"], "name");
    assert_eq!(definitions[4]["type"], "integer");
    assert_eq!(definitions[6]["type"], "date");
    assert!(
        definitions[1]["description"]
            .as_str()
            .unwrap()
            .contains(".status.phase")
    );
    assert_eq!(definitions[1]["priority"], 0);
    let row = &table["rows"][0];
    let cells = row["cells"].as_array().unwrap();
    assert_eq!(
        cells[..6],
        [
            json!("app"),
            json!("Running"),
            json!("1/1"),
            json!("1/1"),
            json!(3),
            json!(1)
        ]
    );
    assert!(is_age(cells[6].as_str().unwrap()), "{cells:?}");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "app");
    assert!(row["object"].get("spec").is_none(), "metadata only");
    assert!(table["metadata"]["resourceVersion"].is_string());

    // A list: one row per object; absent status fields are null cells.
    let (code, table) = raw(
        &sim,
        "GET",
        &format!("{path}?includeObject=Object"),
        &accept,
        b"",
    )
    .await;
    assert_eq!(code, 200, "{table}");
    let rows = table["rows"].as_array().unwrap();
    let names: Vec<&Value> = rows.iter().map(|r| &r["cells"][0]).collect();
    assert_eq!(names, [&json!("app"), &json!("db")]);
    let cells = rows[1]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..6],
        [
            json!("db"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null
        ]
    );
    assert!(is_age(cells[6].as_str().unwrap()), "{cells:?}");
    assert_eq!(rows[1]["object"]["spec"]["image"], "busybox:1.36");

    // Plain JSON stays the default.
    let (code, object) = raw(&sim, "GET", &format!("{path}/app"), &[], b"").await;
    assert_eq!((code, &object["kind"]), (200, &json!("Platform")));
    sim.shutdown().await;
}

#[tokio::test]
async fn built_in_kinds_get_name_and_age() {
    let sim = start_with(platform_sandbox::sim_config()).await;
    let (code, table) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces",
        &[("accept", KUBECTL_ACCEPT)],
        b"",
    )
    .await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(column_names(&table), ["Name", "Age"]);
    let names: Vec<&Value> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["cells"][0])
        .collect();
    assert!(names.contains(&&json!("default")), "{names:?}");
    sim.shutdown().await;
}

fn find_kubectl() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let Some(kubectl) = find_kubectl() else {
        eprintln!("SKIPPED: kubectl is not installed (CI installs Debian's kubernetes-client)");
        return;
    };
    let sim = running_platforms().await;
    let dir = std::env::temp_dir().join(format!(
        "pmp-table-{}-{}",
        std::process::id(),
        sim.addr().port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("config");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let output = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "plat", "-n", TEST_NAMESPACE])
        .env("KUBECACHEDIR", dir.join("cache"))
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("in time")
        .expect("runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "PHASE", "READY", "DEPS", "RESTARTS", "WAVE", "AGE"]
    );
    assert_eq!(lines[1][..6], ["app", "Running", "1/1", "1/1", "3", "1"]);
    assert!(is_age(lines[1][6]), "{out}");
    // Absent values are null cells, which kubectl leaves blank.
    assert_eq!(lines[2].len(), 2, "{out}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

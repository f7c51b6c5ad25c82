use super::*;

fn pod(container_status: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [container_status]
        }
    }))
    .expect("a pod")
}

#[test]
fn an_oom_kill_counts_while_the_container_is_still_terminated_and_after_its_restart() {
    let terminated = serde_json::json!({
        "reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-12-06T10:00:00Z"
    });
    let before_restart = pod(serde_json::json!({
        "name": "main", "image": "x", "ready": false, "restartCount": 0,
        "state": {"terminated": terminated}
    }));
    let after_restart = pod(serde_json::json!({
        "name": "main", "image": "x", "ready": false, "restartCount": 1,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": terminated}
    }));
    let at: Timestamp = "2026-12-06T10:00:00Z".parse().expect("a time");
    for (what, pod) in [("terminated", before_restart), ("restarted", after_restart)] {
        assert_eq!(
            pod_health(&pod).last_terminated,
            Some(("OOMKilled".to_string(), Some(at))),
            "{what}"
        );
    }
}

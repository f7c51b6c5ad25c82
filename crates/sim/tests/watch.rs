//! Watch streams: events after a resourceVersion, selectors, bookmarks, 410 Expired, timeouts,
//! and kube-runtime's watcher recovering from a forced 410 by re-listing.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use pmp_sim::SimConfig;
use serde_json::json;
use support::*;

fn cm(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"v": "0"}}),
    )
    .unwrap()
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("event in time")
        .unwrap()
        .expect("stream open")
}

fn name_of(event: &WatchEvent<ConfigMap>) -> (String, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(b) => ("BOOKMARK".into(), b.metadata.resource_version.clone()),
        WatchEvent::Error(e) => ("ERROR".into(), e.code.to_string()),
    }
}

#[tokio::test]
async fn watch_from_resource_version_with_label_selector() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(&PostParams::default(), &cm("before", "web"))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();

    api.create(&PostParams::default(), &cm("a", "web"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("other", "db"))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    // Leaving the selector is a DELETED for this watcher; entering it an ADDED.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    api.delete("other", &Default::default()).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(name_of(&next_event(&mut stream).await));
    }
    let expected: Vec<(String, String)> = [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
        ("ADDED", "other"),
        ("DELETED", "other"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn noop_update_emits_no_event() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("n", "web"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.replace("n", &PostParams::default(), &created)
        .await
        .unwrap();
    api.patch(
        "n",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "0"}})),
    )
    .await
    .unwrap();
    api.patch(
        "n",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "changed"}})),
    )
    .await
    .unwrap();
    let first = next_event(&mut stream).await;
    let WatchEvent::Modified(obj) = first else {
        panic!("expected MODIFIED, got {first:?}")
    };
    assert_eq!(
        obj.data.unwrap()["v"],
        "changed",
        "the no-op writes produced no events before this one"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(&PostParams::default(), &cm("x", "web"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("y", "web"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let a = name_of(&next_event(&mut stream).await);
    let b = name_of(&next_event(&mut stream).await);
    assert_eq!(
        (a.0.as_str(), a.1.as_str(), b.0.as_str(), b.1.as_str()),
        ("ADDED", "x", "ADDED", "y")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn old_resource_version_gets_410_expired() {
    let sim = start_with(SimConfig::default().with_watch_window(3)).await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let first = api
        .create(&PostParams::default(), &cm("g", "web"))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..5 {
        api.patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    let event = next_event(&mut stream).await;
    let WatchEvent::Error(status) = event else {
        panic!("expected ERROR, got {event:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        status.message.starts_with("too old resource version"),
        "{}",
        status.message
    );

    // The raw stream is a 200 with one ERROR line carrying a Status.
    let (code, text) = raw_text(
        &sim,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_rv}"),
        "",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "ERROR");
    assert_eq!(line["object"]["kind"], "Status");
    assert_eq!(line["object"]["code"], 410);
    sim.shutdown().await;
}

#[tokio::test]
async fn bookmarks_and_timeout_seconds() {
    let sim =
        start_with(SimConfig::default().with_bookmark_interval(Duration::from_millis(100))).await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = WatchParams {
        bookmarks: true,
        ..WatchParams::default()
    }
    .timeout(1);
    let started = std::time::Instant::now();
    let events: Vec<_> = api.watch(&params, &rv).await.unwrap().collect().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "stream ended at timeoutSeconds, not before"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stream ended at timeoutSeconds"
    );
    let bookmarks = events
        .iter()
        .filter(|e| matches!(e, Ok(WatchEvent::Bookmark(_))))
        .count();
    assert!(bookmarks >= 3, "{events:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn send_initial_events_is_rejected_like_a_server_without_watch_list() {
    let sim = start().await;
    let (code, status) = raw(&sim, "GET", "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", "", b"").await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    sim.shutdown().await;
}

#[tokio::test]
async fn runtime_watcher_sees_changes_and_recovers_from_forced_410() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_api = api.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            if tx.send(event.map_err(|e| e.to_string())).is_err() {
                break;
            }
        }
    });
    let mut expect = async |what: &str, pred: &dyn Fn(&watcher::Event<ConfigMap>) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if let Some(Ok(event)) = event
                && pred(&event)
            {
                return;
            }
        }
    };
    expect("initial list", &|e| matches!(e, watcher::Event::InitDone)).await;
    api.create(&PostParams::default(), &cm("w", "web"))
        .await
        .unwrap();
    expect(
        "create",
        &|e| matches!(e, watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("w")),
    )
    .await;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    expect("update", &|e| matches!(e, watcher::Event::Apply(o) if o.data.as_ref().is_some_and(|d| d["v"] == "2"))).await;
    api.delete("w", &Default::default()).await.unwrap();
    expect(
        "delete",
        &|e| matches!(e, watcher::Event::Delete(o) if o.metadata.name.as_deref() == Some("w")),
    )
    .await;

    // Force the next watch to 410 and cut the current one: the watcher re-lists (Init...InitDone).
    sim.faults().force_gone_next_watches(1);
    sim.faults()
        .update(|f| f.close_watch_every = Some(Duration::from_millis(200)));
    expect("re-list after 410", &|e| matches!(e, watcher::Event::Init)).await;
    expect("re-list done", &|e| matches!(e, watcher::Event::InitDone)).await;
    sim.faults().update(|f| f.close_watch_every = None);
    api.create(&PostParams::default(), &cm("after", "web"))
        .await
        .unwrap();
    expect(
        "create after recovery",
        &|e| matches!(e, watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("after")),
    )
    .await;
    task.abort();
    sim.shutdown().await;
}

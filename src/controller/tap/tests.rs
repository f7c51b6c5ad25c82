use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, store::Writer};

use super::*;
use crate::controller::clock::SystemClock;
use crate::controller::context::{Stores, TableSizes};
use crate::controller::events::EventQueue;
use crate::crd::{Phase, PlatformStatus};
use crate::fixtures::{PlatformBuilder, TEST_NAMESPACE, group, platform};

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + second).expect("valid"))
}

/// A platform as the watch delivers it: identity, a resource version and a reported status.
fn seen(builder: PlatformBuilder) -> Platform {
    let mut p = builder.build();
    p.metadata.uid = Some(format!("uid-{}", p.name_any()));
    p.metadata.generation = Some(1);
    p.metadata.resource_version = Some("100".into());
    p.status = Some(PlatformStatus {
        phase: Some(Phase::Running),
        ready_replicas: Some(1),
        message: Some("1/1 replicas ready".into()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Running".into(),
            message: "1/1 replicas ready".into(),
            observed_generation: Some(1),
            last_transition_time: at(0),
        }],
        ..Default::default()
    });
    p
}

fn base() -> Platform {
    seen(platform("a").label("stack", "s").annotation("note", "x"))
}

fn status(p: &mut Platform) -> &mut PlatformStatus {
    p.status.as_mut().expect("status")
}

fn ready(p: &mut Platform) -> &mut Condition {
    &mut status(p).conditions[0]
}

/// Whether `change` to [`base`] changes (the neighbour signature, the shape signature).
fn changed(change: impl FnOnce(&mut Platform)) -> (bool, bool) {
    let before = base();
    let mut after = base();
    change(&mut after);
    assert_ne!(before, after, "the change changes the platform");
    (
        neighbour_signature(&before) != neighbour_signature(&after),
        shape_signature(&before) != shape_signature(&after),
    )
}

const BOTH: (bool, bool) = (true, true);
const NEIGHBOURS: (bool, bool) = (true, false);
const SHAPE: (bool, bool) = (false, true);
const NEITHER: (bool, bool) = (false, false);

#[test]
fn identity_spec_labels_and_deletion_shape_the_topology() {
    assert_eq!(changed(|p| p.metadata.generation = Some(2)), BOTH);
    assert_eq!(
        changed(|p| p.metadata.deletion_timestamp = Some(at(5))),
        BOTH
    );
    let relabel = |p: &mut Platform| {
        p.labels_mut().insert("tier".into(), "web".into());
    };
    assert_eq!(changed(relabel), BOTH);
    let recreated = |p: &mut Platform| p.metadata.uid = Some("uid-new".into());
    assert_eq!(
        changed(recreated),
        SHAPE,
        "the Delete event fanned out already"
    );
}

#[test]
fn annotations_phase_and_readiness_concern_only_the_neighbours() {
    assert_eq!(changed(|p| p.metadata.annotations = None), NEIGHBOURS);
    assert_eq!(
        changed(|p| status(p).phase = Some(Phase::Degraded)),
        NEIGHBOURS
    );
    assert_eq!(changed(|p| status(p).ready_replicas = Some(0)), NEIGHBOURS);
    assert_eq!(changed(|p| ready(p).status = "False".into()), NEIGHBOURS);
    let new_condition = |p: &mut Platform| {
        let degraded = Condition {
            type_: "Degraded".into(),
            ..ready(p).clone()
        };
        status(p).conditions.push(degraded);
    };
    assert_eq!(changed(new_condition), NEIGHBOURS);
    assert_eq!(changed(|p| p.status = None), NEIGHBOURS);
}

#[test]
fn messages_times_and_bookkeeping_concern_nobody() {
    assert_eq!(changed(|p| ready(p).message = "other".into()), NEITHER);
    assert_eq!(changed(|p| ready(p).last_transition_time = at(9)), NEITHER);
    assert_eq!(
        changed(|p| status(p).message = Some("other".into())),
        NEITHER
    );
    assert_eq!(changed(|p| status(p).restart_count = Some(4)), NEITHER);
    let resource_version = |p: &mut Platform| p.metadata.resource_version = Some("101".into());
    assert_eq!(changed(resource_version), NEITHER);
    let managed = |p: &mut Platform| {
        p.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
    };
    assert_eq!(changed(managed), NEITHER);
    assert_eq!(
        changed(|p| p.metadata.finalizers = Some(vec!["f".into()])),
        NEITHER
    );
}

#[test]
fn signatures_are_equal_for_equal_platforms() {
    assert_eq!(neighbour_signature(&base()), neighbour_signature(&base()));
    assert_eq!(shape_signature(&base()), shape_signature(&base()));
}

/// A context over caches holding `platforms` and `groups`, with a client that never connects
/// (building it needs a Tokio runtime, not a server).
fn context(platforms: &[Platform], groups: &[PlatformGroup]) -> (Arc<Context>, Writer<Platform>) {
    context_with(platforms, groups, &[])
}

fn context_with(
    platforms: &[Platform],
    groups: &[PlatformGroup],
    deployments: &[Deployment],
) -> (Arc<Context>, Writer<Platform>) {
    fn filled<K>(objects: &[K]) -> (reflector::Store<K>, Writer<K>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = reflector::store::<K>();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object.clone()));
        }
        (store, writer)
    }
    let (platform_store, platform_writer) = filled(platforms);
    let stores = Stores {
        platforms: platform_store,
        groups: filled(groups).0,
        deployments: filled(deployments).0,
        configmaps: filled::<ConfigMap>(&[]).0,
        pods: filled::<Pod>(&[]).0,
    };
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let (events, _) = EventQueue::new();
    let ctx = Context::new(client, stores, events, Arc::new(SystemClock));
    (Arc::new(ctx), platform_writer)
}

struct Harness {
    tap: PlatformTap,
    ctx: Arc<Context>,
    groups: mpsc::UnboundedReceiver<ObjectRef<PlatformGroup>>,
}

impl Harness {
    fn new(ctx: &Arc<Context>) -> Self {
        let (groups_tx, groups) = mpsc::unbounded();
        let tap = PlatformTap::new(ctx.clone(), groups_tx);
        Self {
            tap,
            ctx: ctx.clone(),
            groups,
        }
    }

    /// Names queued since the last call: (platforms, groups).
    fn queued(&mut self) -> (Vec<String>, Vec<String>) {
        let mut platforms = Vec::new();
        while let Some((platform, _)) = self.ctx.triage.try_release() {
            self.ctx.triage.finished(&platform);
            platforms.push(platform.name);
        }
        let mut groups = Vec::new();
        while let Ok(r) = self.groups.try_recv() {
            groups.push(r.name);
        }
        (platforms, groups)
    }

    fn tables(&self) -> (Vec<String>, Vec<String>) {
        let names = |keys: Vec<&NodeKey>| {
            let mut names: Vec<String> = keys.into_iter().map(|k| k.name.clone()).collect();
            names.sort();
            names
        };
        (
            names(self.tap.seen.keys().collect()),
            names(self.tap.shapes.keys().collect()),
        )
    }
}

fn names(list: &[&str]) -> (Vec<String>, Vec<String>) {
    let owned: Vec<String> = list.iter().map(|n| n.to_string()).collect();
    (owned.clone(), owned)
}

#[tokio::test]
async fn the_tables_drop_deleted_platforms_and_those_gone_during_a_relist() {
    let (ctx, _) = context(&[], &[]);
    let mut h = Harness::new(&ctx);
    for name in ["a", "b", "c"] {
        h.tap.observe(&watcher::Event::Apply(seen(platform(name))));
    }
    assert_eq!(h.tables(), names(&["a", "b", "c"]));
    assert_eq!(ctx.table_sizes().tap_signatures, 3);

    h.tap.observe(&watcher::Event::Delete(seen(platform("b"))));
    assert_eq!(h.tables(), names(&["a", "c"]));
    assert_eq!(ctx.table_sizes().tap_signatures, 2);

    // The watch was down while c was deleted: the re-list no longer holds it.
    h.tap.observe(&watcher::Event::Init);
    h.tap
        .observe(&watcher::Event::InitApply(seen(platform("a"))));
    h.tap
        .observe(&watcher::Event::InitApply(seen(platform("d"))));
    assert_eq!(
        h.tables(),
        names(&["a", "c", "d"]),
        "kept until the list is done"
    );
    h.tap.observe(&watcher::Event::InitDone);
    assert_eq!(h.tables(), names(&["a", "d"]));
    assert_eq!(ctx.table_sizes().tap_signatures, 2);
}

#[tokio::test]
async fn only_changes_neighbours_react_to_are_fanned_out() {
    let a = seen(platform("a").label("stack", "s"));
    let b = seen(platform("b").depends_on(["a"]));
    let stack = group("stack").selecting("stack", "s").build();
    let (ctx, _) = context(&[a.clone(), b], &[stack]);
    let mut h = Harness::new(&ctx);
    // The changed platform itself is always queued (its own trigger), its neighbours only
    // when something they react to changed.
    let expected = (
        vec!["a".to_string(), "b".to_string()],
        vec!["stack".to_string()],
    );
    let only_itself = (vec!["a".to_string()], vec![]);

    h.tap.observe(&watcher::Event::Apply(a.clone()));
    // a is running: b may start, so it goes first.
    let b_first = (
        vec!["b".to_string(), "a".to_string()],
        vec!["stack".to_string()],
    );
    assert_eq!(h.queued(), b_first, "first sight");
    h.tap.observe(&watcher::Event::Apply(a.clone()));
    assert_eq!(h.queued(), only_itself, "the same again");

    let mut message_only = a.clone();
    ready(&mut message_only).message = "still fine".into();
    message_only.metadata.resource_version = Some("101".into());
    h.tap.observe(&watcher::Event::Apply(message_only));
    assert_eq!(h.queued(), only_itself, "a message alone");

    let mut degraded = a.clone();
    status(&mut degraded).phase = Some(Phase::Degraded);
    h.tap.observe(&watcher::Event::Apply(degraded));
    assert_eq!(h.queued(), expected, "a phase change");
}

#[tokio::test]
async fn a_deletion_reaches_former_dependents_and_forgets_the_platform() {
    let a = seen(platform("a"));
    let b = seen(platform("b").depends_on(["a"]));
    let (ctx, mut writer) = context(&[a.clone(), b], &[]);
    let mut h = Harness::new(&ctx);
    h.tap.observe(&watcher::Event::Apply(a.clone()));
    h.queued();

    // The cache holds the deletion before the tap sees it.
    writer.apply_watcher_event(&watcher::Event::Delete(a.clone()));
    h.tap.observe(&watcher::Event::Delete(a));
    assert_eq!(h.queued().0, ["b"]);
    assert_eq!(h.tables(), (vec![], vec![]));
}

#[tokio::test]
async fn only_shape_changes_rebuild_the_topology() {
    let a = seen(platform("a"));
    let (ctx, _) = context(std::slice::from_ref(&a), &[]);
    let mut h = Harness::new(&ctx);
    let topology = ctx.topology();

    let mut status_only = a.clone();
    status(&mut status_only).phase = Some(Phase::Degraded);
    h.tap.observe(&watcher::Event::InitApply(a.clone()));
    h.tap.observe(&watcher::Event::Apply(status_only));
    assert!(Arc::ptr_eq(&topology, &ctx.topology()), "status only");

    let mut relabelled = a.clone();
    relabelled.labels_mut().insert("stack".into(), "s".into());
    h.tap.observe(&watcher::Event::Apply(relabelled));
    assert!(!Arc::ptr_eq(&topology, &ctx.topology()), "labels shape it");
}

#[test]
fn pods_belong_to_the_platform_their_label_names() {
    let mut pod = Pod::default();
    pod.metadata.namespace = Some(TEST_NAMESPACE.into());
    assert_eq!(platform_of_pod(&pod), None);
    pod.labels_mut().insert(PLATFORM_LABEL.into(), "a".into());
    assert_eq!(
        platform_of_pod(&pod),
        Some(NodeKey::new(TEST_NAMESPACE, "a"))
    );
    pod.metadata.namespace = None;
    assert_eq!(platform_of_pod(&pod), None, "no namespace, no platform");
}

#[tokio::test]
async fn a_thousand_platforms_deleted_behind_a_relist_leave_every_table_empty() {
    let platforms: Vec<Platform> = (0..1000)
        .map(|i| seen(platform(&format!("p{i:04}"))))
        .collect();
    let pods: Vec<Pod> = platforms
        .iter()
        .map(|p| {
            let mut pod = Pod::default();
            pod.metadata.name = Some(format!("{}-pod", p.name_any()));
            pod.metadata.namespace = Some(TEST_NAMESPACE.into());
            pod.metadata.labels = Some([(PLATFORM_LABEL.to_string(), p.name_any())].into());
            pod
        })
        .collect();
    let (platform_store, mut platform_writer) = reflector::store::<Platform>();
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    let stores = Stores {
        platforms: platform_store,
        groups: reflector::store::<PlatformGroup>().0,
        deployments: reflector::store::<Deployment>().0,
        configmaps: reflector::store::<ConfigMap>().0,
        pods: pod_store,
    };
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let (events, _) = EventQueue::new();
    let ctx = Arc::new(Context::new(client, stores, events, Arc::new(SystemClock)));
    let mut h = Harness::new(&ctx);

    // The first list, then what the operator keeps about each platform.
    let list = |writer: &mut Writer<Platform>, h: &mut Harness, items: &[Platform]| {
        for event in std::iter::once(watcher::Event::Init)
            .chain(items.iter().cloned().map(watcher::Event::InitApply))
            .chain(std::iter::once(watcher::Event::InitDone))
        {
            writer.apply_watcher_event(&event);
            h.tap.observe(&event);
        }
    };
    list(&mut platform_writer, &mut h, &platforms);
    for event in std::iter::once(watcher::Event::Init)
        .chain(pods.iter().cloned().map(watcher::Event::InitApply))
        .chain(std::iter::once(watcher::Event::InitDone))
    {
        pod_writer.apply_watcher_event(&event);
        observe_pod(&ctx, &event);
    }
    let stack = NodeKey::new(TEST_NAMESPACE, "stack");
    for p in &platforms {
        let key = key_of(p);
        let mut written = Deployment::default();
        written.metadata.uid = Some(format!("d-{}", key.name));
        written.metadata.generation = Some(1);
        ctx.own_writes.remember_deployment(&key, written);
        assert!(ctx.claim_slot(&stack, &key, 0, &Default::default()));
    }
    let full = ctx.table_sizes();
    assert_eq!(
        (
            full.tap_signatures,
            full.pod_index,
            full.own_writes,
            full.start_slots
        ),
        (1000, 1000, 1000, 1000)
    );

    // All of them (and their pods) are deleted while the watches are down; the re-lists find
    // nothing and deliver no Delete events.
    list(&mut platform_writer, &mut h, &[]);
    for event in [watcher::Event::Init, watcher::Event::InitDone] {
        pod_writer.apply_watcher_event(&event);
        observe_pod(&ctx, &event);
    }
    assert_eq!(ctx.table_sizes(), TableSizes::default());
    assert_eq!(h.tables(), (Vec::new(), Vec::new()));
}

fn deployment(name: &str, replicas: i32, ready: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": TEST_NAMESPACE, "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {},
            "template": {}
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready
        }
    }))
    .expect("a deployment")
}

fn drain(ctx: &Context) -> Vec<String> {
    std::iter::from_fn(|| ctx.triage.try_release())
        .map(|(platform, _)| {
            ctx.triage.finished(&platform);
            platform.name
        })
        .collect()
}

#[tokio::test]
async fn a_workload_becoming_ready_or_unready_queues_the_dependents_only_then() {
    let (ctx, _) = context(
        &[
            seen(platform("a")),
            seen(platform("b").depends_on(["a"])),
            seen(platform("c").depends_on(["a"])),
        ],
        &[],
    );
    let mut tap = DeploymentTap::new(ctx.clone());
    tap.observe(&watcher::Event::InitApply(deployment("a", 1, 0)));
    tap.observe(&watcher::Event::InitDone);
    assert!(
        drain(&ctx).is_empty(),
        "the first list queues nothing by itself"
    );
    tap.observe(&watcher::Event::Apply(deployment("a", 1, 0)));
    assert!(
        drain(&ctx).is_empty(),
        "still starting, nothing read changed"
    );
    tap.observe(&watcher::Event::Apply(deployment("a", 1, 1)));
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("a".to_string(), Urgency::Workload),
            ("b".to_string(), Urgency::Start),
            ("c".to_string(), Urgency::Start),
        ],
        "ready: its status first, then its dependents may start"
    );
    tap.observe(&watcher::Event::Apply(deployment("a", 1, 1)));
    assert!(drain(&ctx).is_empty(), "no change");
    tap.observe(&watcher::Event::Apply(deployment("a", 0, 0)));
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("a".to_string(), Urgency::Workload),
            ("b".to_string(), Urgency::Change),
            ("c".to_string(), Urgency::Change),
        ],
        "scaled down: its platform first"
    );
    tap.observe(&watcher::Event::Delete(deployment("a", 0, 0)));
    assert_eq!(
        drain(&ctx),
        ["a"],
        "gone: only its platform, it was not ready"
    );
    assert_eq!(tap.entries(), 0);
}

#[tokio::test]
async fn a_status_update_that_changes_nothing_read_queues_nobody() {
    let (ctx, _) = context(
        &[seen(platform("a")), seen(platform("b").depends_on(["a"]))],
        &[],
    );
    let mut tap = DeploymentTap::new(ctx.clone());
    tap.observe(&watcher::Event::Apply(deployment("a", 1, 1)));
    assert_eq!(drain(&ctx), ["a", "b"]);
    let mut heartbeat = deployment("a", 1, 1);
    heartbeat.metadata.resource_version = Some("7".into());
    heartbeat
        .status
        .as_mut()
        .expect("a status")
        .available_replicas = Some(1);
    tap.observe(&watcher::Event::Apply(heartbeat));
    assert!(drain(&ctx).is_empty(), "availability is not read");
    let mut rolling = deployment("a", 1, 1);
    rolling.metadata.generation = Some(3);
    tap.observe(&watcher::Event::Apply(rolling));
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("a".to_string(), Urgency::Workload),
            ("b".to_string(), Urgency::Change),
        ],
        "a new spec not yet observed: no longer rolled out"
    );
}

#[tokio::test]
async fn a_relist_queues_what_changed_or_vanished_during_the_gap() {
    let (ctx, _) = context(
        &[
            seen(platform("a")),
            seen(platform("b").depends_on(["a"])),
            seen(platform("x")),
            seen(platform("y").depends_on(["x"])),
            seen(platform("s")),
            seen(platform("n")),
        ],
        &[],
    );
    let mut tap = DeploymentTap::new(ctx.clone());
    tap.observe(&watcher::Event::Init);
    for d in [
        deployment("a", 1, 0),
        deployment("x", 1, 1),
        deployment("s", 1, 1),
    ] {
        tap.observe(&watcher::Event::InitApply(d));
    }
    tap.observe(&watcher::Event::InitDone);
    assert!(drain(&ctx).is_empty(), "the first list is no news");
    // The watch broke; meanwhile a became ready, x's Deployment was deleted and n's created.
    tap.observe(&watcher::Event::Init);
    tap.observe(&watcher::Event::InitApply(deployment("a", 1, 1)));
    tap.observe(&watcher::Event::InitApply(deployment("s", 1, 1)));
    tap.observe(&watcher::Event::InitApply(deployment("n", 1, 0)));
    assert!(
        drain(&ctx).is_empty(),
        "nothing before the list is done: the cache does not show it yet"
    );
    tap.observe(&watcher::Event::InitDone);
    let mut queued = drain_with_urgency(&ctx);
    queued.sort();
    assert_eq!(
        queued,
        [
            ("a".to_string(), Urgency::Workload),
            ("b".to_string(), Urgency::Start),
            ("n".to_string(), Urgency::Change),
            ("x".to_string(), Urgency::Workload),
            ("y".to_string(), Urgency::Change),
        ],
        "s did not change"
    );
    assert_eq!(tap.entries(), 3);
}

/// Drains the triage: (name, urgency) in release order.
fn drain_with_urgency(ctx: &Context) -> Vec<(String, Urgency)> {
    std::iter::from_fn(|| ctx.triage.try_release())
        .map(|(platform, release)| {
            ctx.triage.finished(&platform);
            (platform.name, release.urgency)
        })
        .collect()
}

#[tokio::test]
async fn a_startup_wave_goes_ahead_of_the_first_look_at_blocked_platforms() {
    // Listed in name order, dependents first; nothing has a status yet.
    let fresh = |builder: PlatformBuilder| {
        let mut p = seen(builder);
        p.status = None;
        p
    };
    let platforms = [
        fresh(platform("a-app").depends_on(["z-db"])),
        fresh(platform("b-app").depends_on(["z-db"])),
        fresh(platform("z-db")),
    ];
    let (ctx, _) = context(&platforms, &[]);
    let mut h = Harness::new(&ctx);
    h.tap.observe(&watcher::Event::Init);
    for p in &platforms {
        h.tap.observe(&watcher::Event::InitApply(p.clone()));
    }
    h.tap.observe(&watcher::Event::InitDone);
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("z-db".to_string(), Urgency::Start),
            ("a-app".to_string(), Urgency::Change),
            ("b-app".to_string(), Urgency::Change),
        ],
        "the platform without dependencies first, whatever the listing order"
    );

    // A routine change waits; z-db's workload becoming ready lets its dependents go first.
    ctx.triage
        .push(NodeKey::new(TEST_NAMESPACE, "x-other"), Urgency::Change);
    let mut deployments = DeploymentTap::new(ctx.clone());
    deployments.observe(&watcher::Event::Apply(deployment("z-db", 1, 1)));
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("z-db".to_string(), Urgency::Workload),
            ("a-app".to_string(), Urgency::Start),
            ("b-app".to_string(), Urgency::Start),
            ("x-other".to_string(), Urgency::Change),
        ]
    );

    // A platform created in a running stack whose dependencies are ready may start at once.
    let mut running_db = seen(platform("z-db"));
    running_db.metadata.resource_version = Some("101".into());
    let late = fresh(platform("c-app").depends_on(["z-db"]));
    let (ctx, _) = context_with(
        &[running_db, late.clone()],
        &[],
        &[deployment("z-db", 1, 1)],
    );
    let mut h = Harness::new(&ctx);
    h.tap.observe(&watcher::Event::Apply(late));
    assert_eq!(
        drain_with_urgency(&ctx),
        [
            ("c-app".to_string(), Urgency::Start),
            ("z-db".to_string(), Urgency::Change),
        ]
    );
}

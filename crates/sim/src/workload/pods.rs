//! Pure helpers about the pods a Deployment owns: template hash, naming, selection, readiness.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The label carrying the hash of the pod template a pod was made from.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Characters Kubernetes uses in generated names: lowercase alphanumerics without vowels and
/// look-alikes, so that generated names never spell words.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A stable hash of a pod template, rendered as 10 name-safe characters.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    // Structs serialize in declaration order and maps are sorted, so the text is canonical.
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    encode(hash, 10)
}

/// `len` name-safe characters from `value`.
pub fn encode(mut value: u64, len: usize) -> String {
    let base = NAME_ALPHABET.len() as u64;
    (0..len)
        .map(|_| {
            let c = NAME_ALPHABET[(value % base) as usize] as char;
            value /= base;
            c
        })
        .collect()
}

/// The name of a Deployment's pod: `<deployment>-<templatehash>-<5 random characters>`.
pub fn pod_name(deployment: &str, hash: &str, random: u64) -> String {
    format!("{deployment}-{hash}-{}", encode(random, 5))
}

/// The pod the Deployment's template describes, owned by the Deployment.
pub fn pod_from_template(deployment: &Deployment, hash: &str, name: &str) -> Pod {
    let template = deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.to_owned(), hash.to_owned());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: "Deployment".to_owned(),
                name: deployment.metadata.name.clone().unwrap_or_default(),
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions). An empty selector
/// matches nothing, as for Deployments.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.as_ref();
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_empty() {
        return false;
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && expressions.iter().all(|expr| {
            let value = labels.get(&expr.key);
            let values = expr.values.as_deref().unwrap_or_default();
            match expr.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The pods controlled by `deployment`: in its namespace, matching its selector, with a
/// controller owner reference to it.
pub fn owned_pods<'a>(
    deployment: &Deployment,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<&'a Pod> {
    let Some(spec) = deployment.spec.as_ref() else {
        return Vec::new();
    };
    let uid = deployment.metadata.uid.as_deref();
    let empty = BTreeMap::new();
    pods.into_iter()
        .filter(|pod| pod.metadata.namespace == deployment.metadata.namespace)
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
        })
        .filter(|pod| {
            selector_matches(
                &spec.selector,
                pod.metadata.labels.as_ref().unwrap_or(&empty),
            )
        })
        .collect()
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// When the pod's Ready condition became True, if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (condition.status == "True").then(|| {
        condition
            .last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
    })
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        let min = std::time::Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
        super::timeline::add(since, min) <= now
    })
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

/// Sorts pods so that the ones to delete first come first: not ready before ready, ready for a
/// shorter time before longer, more restarts before fewer, newer before older.
pub fn sort_for_deletion(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                ready_since(p).is_some(),
                std::cmp::Reverse(ready_since(p)),
                std::cmp::Reverse(restart_count(p)),
                std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                std::cmp::Reverse(p.metadata.name.clone()),
            )
        };
        key(a).cmp(&key(b))
    });
}

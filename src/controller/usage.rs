//! Resource usage from the metrics API (`metrics.k8s.io`, served by metrics-server where it is
//! installed), polled at a modest interval and compared with each platform's limits. Where the
//! API is absent the operator carries on and says usage is unknown; it never fails for it.
//!
//! Usage is not written to the Platform's status (it changes on every poll, and a status that
//! changes on every poll is an API write per platform per poll); the status says only whether
//! it is known. The figures are served by the REST API and used by supervision, for which a
//! platform above the threshold fraction of a limit is a resource event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::watch;

use crate::crd::CpuMemory;
use crate::graph::NodeKey;
use crate::stack::effective_settings;

use super::build::PLATFORM_LABEL;
use super::context::Context;
use super::triage::Urgency;

/// How often usage is read unless configured, and the fraction of a limit that counts as
/// exceeded.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_USAGE_THRESHOLD: f64 = 0.9;

/// What the last poll found for one platform: its busiest pod against the limits.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSample {
    /// CPU cores and memory bytes of the busiest pod (by fraction of its limit).
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    /// Usage over the limit, when a limit is set.
    pub cpu_fraction: Option<f64>,
    pub memory_fraction: Option<f64>,
    pub at: Timestamp,
}

/// The usage table the poller fills and reconciles read.
#[derive(Debug, Default)]
pub struct Usage {
    /// `None` until the first poll; then whether the metrics API answered.
    available: Mutex<Option<bool>>,
    samples: Mutex<HashMap<NodeKey, UsageSample>>,
}

impl Usage {
    pub fn available(&self) -> Option<bool> {
        *self.available.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sample(&self, key: &NodeKey) -> Option<UsageSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn all(&self) -> HashMap<NodeKey, UsageSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Deserialize)]
struct PodMetricsList {
    #[serde(default)]
    items: Vec<PodMetrics>,
}

#[derive(Deserialize)]
struct PodMetrics {
    metadata: kube::api::ObjectMeta,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    #[serde(default)]
    usage: HashMap<String, String>,
}

/// Polls the metrics API every `interval` until `stop`, and queues the platforms whose usage
/// crossed `threshold` (either way) for a reconcile.
pub async fn poll_usage(
    ctx: Arc<Context>,
    namespace: Option<String>,
    interval: Duration,
    threshold: f64,
    mut stop: watch::Receiver<bool>,
) {
    let path = match &namespace {
        Some(ns) => format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"),
        None => "/apis/metrics.k8s.io/v1beta1/pods".to_string(),
    };
    let url = format!("{path}?labelSelector={PLATFORM_LABEL}");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        let request = match http::Request::get(&url).body(Vec::new()) {
            Ok(request) => request,
            Err(_) => return,
        };
        let answer: Result<PodMetricsList, kube::Error> = ctx.client.request(request).await;
        let list = match answer {
            Ok(list) => list,
            Err(error) => {
                let was = ctx
                    .usage
                    .available
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(false);
                if was != Some(false) {
                    tracing::info!(%error, "the metrics API does not answer: resource usage is unknown");
                }
                let gone: Vec<NodeKey> = std::mem::take(
                    &mut *ctx.usage.samples.lock().unwrap_or_else(|p| p.into_inner()),
                )
                .into_keys()
                .collect();
                queue_all(&ctx, gone.iter());
                continue;
            }
        };
        *ctx.usage
            .available
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(true);
        // Whether the API answers is known at once, so the first status writes carry it
        // (rather than a write per platform to add it later); the samples need the platforms.
        tokio::select! {
            _ = ctx.stores.wait_until_synced() => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        let fresh = samples(&ctx, &list, Timestamp::now());
        let crossed: Vec<NodeKey> = {
            let mut table = ctx.usage.samples.lock().unwrap_or_else(|p| p.into_inner());
            let over = |s: Option<&UsageSample>| s.is_some_and(|s| exceeds(s, threshold));
            let crossed = fresh
                .keys()
                .chain(table.keys())
                .filter(|k| over(fresh.get(*k)) != over(table.get(*k)))
                .cloned()
                .collect();
            *table = fresh;
            crossed
        };
        queue_all(&ctx, crossed.iter());
    }
}

fn queue_all<'a>(ctx: &Context, keys: impl Iterator<Item = &'a NodeKey>) {
    for key in keys {
        ctx.triage.push(key.clone(), Urgency::Resource);
    }
}

/// Whether a sample is above `threshold` of a limit.
pub fn exceeds(sample: &UsageSample, threshold: f64) -> bool {
    [sample.cpu_fraction, sample.memory_fraction]
        .into_iter()
        .flatten()
        .any(|f| f >= threshold)
}

/// Each platform's busiest pod, from one metrics list.
fn samples(ctx: &Context, list: &PodMetricsList, at: Timestamp) -> HashMap<NodeKey, UsageSample> {
    let topology = ctx.topology();
    let mut samples: HashMap<NodeKey, UsageSample> = HashMap::new();
    for pod in &list.items {
        let (Some(namespace), Some(platform)) = (
            pod.metadata.namespace.clone(),
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PLATFORM_LABEL))
                .cloned(),
        ) else {
            continue;
        };
        let key = NodeKey::new(namespace, platform);
        let Some(spec) = ctx.stores.platform(&key) else {
            continue;
        };
        let defaults = topology
            .group_of(&key)
            .and_then(|g| g.spec.defaults.as_ref());
        let limits = effective_settings(&spec, defaults).resources.limits;
        let sample = pod_sample(&pod.containers, limits.as_ref(), at);
        let busier = samples
            .get(&key)
            .is_none_or(|known| load(&sample) > load(known));
        if busier {
            samples.insert(key, sample);
        }
    }
    samples
}

fn load(sample: &UsageSample) -> f64 {
    sample
        .cpu_fraction
        .unwrap_or(0.0)
        .max(sample.memory_fraction.unwrap_or(0.0))
}

fn pod_sample(
    containers: &[ContainerMetrics],
    limits: Option<&CpuMemory>,
    at: Timestamp,
) -> UsageSample {
    let sum = |resource: &str| -> f64 {
        containers
            .iter()
            .filter_map(|c| c.usage.get(resource))
            .filter_map(|q| parse_quantity(q))
            .sum()
    };
    let (cpu, memory) = (sum("cpu"), sum("memory"));
    let limit = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| parse_quantity(&q.0)).filter(|l| *l > 0.0)
    };
    let cpu_limit = limit(limits.and_then(|l| l.cpu.as_ref()));
    let memory_limit = limit(limits.and_then(|l| l.memory.as_ref()));
    UsageSample {
        cpu_cores: cpu,
        memory_bytes: memory,
        cpu_fraction: cpu_limit.map(|l| cpu / l),
        memory_fraction: memory_limit.map(|l| memory / l),
        at,
    }
}

/// A Kubernetes quantity as a number: `250m` → 0.25, `128Mi` → 134217728, `1e3` → 1000,
/// `100n` → 1e-7.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(value * scale)
}

/// A human reading of a sample against the limits, for evidence.
pub fn describe(sample: &UsageSample) -> String {
    let fraction = |f: Option<f64>| {
        f.map_or("no limit".to_string(), |f| {
            format!("{:.0}% of its limit", f * 100.0)
        })
    };
    format!(
        "cpu {:.3} cores ({}), memory {:.0} MiB ({})",
        sample.cpu_cores,
        fraction(sample.cpu_fraction),
        sample.memory_bytes / 1024.0 / 1024.0,
        fraction(sample.memory_fraction)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubernetes_writes_them() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("128Mi"), Some(134_217_728.0));
        assert_eq!(parse_quantity("1Gi"), Some(1_073_741_824.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1500k"), Some(1_500_000.0));
        assert!((parse_quantity("100n").expect("nanocores") - 1e-7).abs() < 1e-15);
        assert_eq!(parse_quantity("0.5"), Some(0.5));
        for bad in ["", "Mi", "12Qi", "ten"] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_pod_is_measured_against_its_limits_and_over_the_threshold_exceeds() {
        let container = |cpu: &str, memory: &str| ContainerMetrics {
            usage: [
                ("cpu".to_string(), cpu.to_string()),
                ("memory".to_string(), memory.to_string()),
            ]
            .into(),
        };
        let limits = CpuMemory {
            cpu: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1".into(),
            )),
            memory: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1Gi".into(),
            )),
        };
        let at = Timestamp::UNIX_EPOCH;
        let sample = pod_sample(
            &[container("300m", "900Mi"), container("100m", "50Mi")],
            Some(&limits),
            at,
        );
        assert!((sample.cpu_fraction.expect("cpu limit") - 0.4).abs() < 1e-9);
        let memory = sample.memory_fraction.expect("memory limit");
        assert!((memory - 950.0 / 1024.0).abs() < 1e-9);
        assert!(exceeds(&sample, 0.9), "950Mi of 1Gi is over 90%");
        assert!(!exceeds(&sample, 0.95));
        let unlimited = pod_sample(&[container("300m", "900Mi")], None, at);
        assert_eq!(
            (unlimited.cpu_fraction, unlimited.memory_fraction),
            (None, None)
        );
        assert!(
            !exceeds(&unlimited, 0.9),
            "without a limit nothing is exceeded"
        );
        assert!(
            describe(&sample).contains("93% of its limit"),
            "{}",
            describe(&sample)
        );
    }
}

//! Prometheus metrics (OpenMetrics text on `/metrics`). Every label is bounded: controllers,
//! error categories, phases, route templates and status codes; never object names or error
//! text.

use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;

/// The content type of the metrics page.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `platform` or `platformgroup`.
    pub controller: &'static str,
    /// `ok`, or the error's category.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, e.g. `/api/v1/platform/{platform_id}/status`.
    pub route: String,
    pub method: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControlActionLabels {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `start`, `stop` or `restart`.
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertDeliveryLabels {
    /// `webhook`, `slack` or `email`.
    pub channel_type: &'static str,
    /// `sent`, `failed`, `rate_limited` or `dropped`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    /// How the API server answered: `2xx`, `3xx`, `4xx` (but 429), `429`, `5xx`, `other`,
    /// or `error` when no answer came (connection, TLS, timeout).
    pub class: &'static str,
}

/// Every value [`KubeRequestLabels::class`] takes.
pub const KUBE_REQUEST_CLASSES: [&str; 7] = ["2xx", "3xx", "4xx", "429", "5xx", "other", "error"];

/// The operator's requests to the API server by answer class, shared by every kube client of
/// the process and shown by every [`Metrics`]. Process-wide because the clients are built
/// before the controller creates its `Metrics`, and one operator runs per process.
static KUBE_REQUESTS: LazyLock<Family<KubeRequestLabels, Counter>> = LazyLock::new(|| {
    let family = Family::default();
    // Zeros from the start: a scrape tells "no 5xx" apart from "not counted".
    for class in KUBE_REQUEST_CLASSES {
        drop(family.get_or_create(&KubeRequestLabels { class }));
    }
    family
});

/// The process's kube request counters (a handle; clones count into the same family).
pub fn kube_requests() -> Family<KubeRequestLabels, Counter> {
    KUBE_REQUESTS.clone()
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_request_seconds: HistogramFamily<RouteLabels>,
    pub api_control_requests: Family<ActionLabels, Counter>,
    platforms: Family<PhaseLabels, Gauge>,
    pub alert_deliveries: Family<AlertDeliveryLabels, Counter>,
    /// The operator's own control actions (restarts, circuit changes, stops), by kind.
    pub control_actions: Family<ControlActionLabels, Counter>,
    /// The reconcile trigger queue's depth, waits and throughput.
    pub triage: crate::controller::triage::TriageMetrics,
    /// Events waiting to be published (set on each scrape): a full queue holds every
    /// reconcile that audits an action.
    pub event_queue_depth: Gauge,
    /// Serialises scrapes: the phase gauges are set from the cache, then encoded.
    scrape: Mutex<()>,
}

const PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::WaitingForDependencies,
    Phase::Starting,
    Phase::Running,
    Phase::Degraded,
    Phase::Stopping,
    Phase::Stopped,
    Phase::Failed,
    Phase::Blocked,
];

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pmp");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by controller and result (ok or the error category)",
            reconciles.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "REST API requests, by route template, method and status code",
            api_requests.clone(),
        );
        let api_request_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "api_request_seconds",
            "REST API request latency, by route template",
            api_request_seconds.clone(),
        );
        let api_control_requests = Family::<ActionLabels, Counter>::default();
        registry.register(
            "api_control_requests",
            "Control requests accepted by the REST API, by action",
            api_control_requests.clone(),
        );
        let platforms = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "platforms",
            "Platforms in the operator's cache, by phase",
            platforms.clone(),
        );
        let alert_deliveries = Family::<AlertDeliveryLabels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alerts by channel type and result (sent, failed, rate_limited, dropped)",
            alert_deliveries.clone(),
        );
        let control_actions = Family::<ControlActionLabels, Counter>::default();
        registry.register(
            "control_actions",
            "Audited control actions carried out, by action (Start, Stop, Restart, CircuitOpen, ...)",
            control_actions.clone(),
        );
        let triage = crate::controller::triage::TriageMetrics::register(&mut registry);
        let event_queue_depth = Gauge::default();
        registry.register(
            "event_queue_depth",
            "Kubernetes Events waiting to be published (audit Events wait for room when it is full)",
            event_queue_depth.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests of the operator's kube clients to the API server, by answer class",
            kube_requests(),
        );
        Metrics {
            registry,
            triage,
            event_queue_depth,
            alert_deliveries,
            control_actions,
            reconciles,
            api_requests,
            api_request_seconds,
            api_control_requests,
            platforms,
            scrape: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// The OpenMetrics page, with the platform counts of `phases` (one entry per platform).
    pub fn render(&self, phases: impl Iterator<Item = Phase>) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts = [0i64; PHASES.len()];
        for phase in phases {
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in PHASES.iter().zip(counts) {
            self.platforms
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(count);
        }
        let mut page = String::new();
        if encode(&mut page, &self.registry).is_err() {
            tracing::warn!("failed to encode the metrics page");
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_counts_platforms_by_phase_and_reconciles_by_result() {
        let metrics = Metrics::default();
        metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: "platform",
                result: "ok",
            })
            .inc();
        let page = metrics.render([Phase::Running, Phase::Running, Phase::Stopped].into_iter());
        assert!(
            page.contains("pmp_platforms{phase=\"Running\"} 2"),
            "{page}"
        );
        assert!(
            page.contains("pmp_platforms{phase=\"Stopped\"} 1"),
            "{page}"
        );
        assert!(page.contains("pmp_platforms{phase=\"Failed\"} 0"), "{page}");
        assert!(
            page.contains("pmp_reconciles_total{controller=\"platform\",result=\"ok\"} 1"),
            "{page}"
        );
        assert!(
            page.contains("pmp_kube_requests_total{class=\"5xx\"}"),
            "{page}"
        );
        assert!(page.contains("pmp_event_queue_depth 0"), "{page}");
        assert!(page.ends_with("# EOF\n"), "{page}");
    }
}

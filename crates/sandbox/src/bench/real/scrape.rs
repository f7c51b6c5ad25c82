//! The operator's own count of its API requests, read from its `/metrics` page
//! (`pmp_kube_requests_total{class}`) every 500 ms while the stack comes up: the peak rate,
//! and the final totals by answer class.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::server::sample;

const COUNTER: &str = "pmp_kube_requests_total";
const EVENT_QUEUE: &str = "pmp_event_queue_depth";
const EVERY: Duration = Duration::from_millis(500);

/// What the scrapes showed.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestCounts {
    /// The last scrape's totals by class (`2xx`, `429`, `5xx`, ...).
    pub by_class: BTreeMap<String, u64>,
    /// Most requests in one second (between scrapes about a second apart).
    pub peak_per_second: f64,
    /// Scrapes that got no page (before the operator listens, or while it is too busy).
    pub failed_scrapes: usize,
    /// Most Events waiting to be published in one scrape (`pmp_event_queue_depth`).
    pub peak_event_queue: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.by_class.values().sum()
    }

    pub fn class(&self, class: &str) -> u64 {
        self.by_class.get(class).copied().unwrap_or(0)
    }
}

/// Scrapes until [`Scraper::finish`], which takes one last scrape.
pub(super) struct Scraper {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<RequestCounts>,
}

impl Scraper {
    pub fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let client: Client<HttpConnector, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let url = format!("http://127.0.0.1:{port}/metrics");
            let mut counts = RequestCounts::default();
            // (when, total) of the scrapes of about the last second.
            let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
            loop {
                let last = stopping.load(Ordering::Relaxed);
                match scrape(&client, &url).await {
                    Some((by_class, event_queue)) => {
                        counts.peak_event_queue = counts.peak_event_queue.max(event_queue);
                        let now = Instant::now();
                        let total = by_class.values().sum();
                        counts.by_class = by_class;
                        window.push_back((now, total));
                        while window.len() > 1
                            && window.get(1).is_some_and(|(at, _)| {
                                now.duration_since(*at) >= Duration::from_secs(1)
                            })
                        {
                            window.pop_front();
                        }
                        if let Some((first, first_total)) = window.front() {
                            let span = now.duration_since(*first).as_secs_f64();
                            if span >= 0.9 {
                                let rate = total.saturating_sub(*first_total) as f64 / span;
                                counts.peak_per_second = counts.peak_per_second.max(rate);
                            }
                        }
                    }
                    None => counts.failed_scrapes += 1,
                }
                if last {
                    return counts;
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> RequestCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// The request counts by class, and the Events waiting to be published.
async fn scrape(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Option<(BTreeMap<String, u64>, u64)> {
    let uri: http::Uri = url.parse().ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .ok()?
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body = answer.into_body().collect().await.ok()?.to_bytes();
    let page = std::str::from_utf8(&body).ok()?;
    Some((parse_counts(page), parse_gauge(page, EVENT_QUEUE)))
}

/// The value of the unlabelled gauge `name` (0 when the page has none).
fn parse_gauge(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse::<f64>().ok()
        })
        .map_or(0, |value| value as u64)
}

/// `pmp_kube_requests_total{class="5xx"} 3` lines into class → count.
fn parse_counts(page: &str) -> BTreeMap<String, u64> {
    page.lines()
        .filter_map(|line| {
            let (name, labels, value) = sample(line)?;
            let (_, class) = labels.into_iter().find(|(key, _)| *key == "class")?;
            (name == COUNTER).then_some((class, value as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_queue_gauge_is_read_alone() {
        let page = "pmp_event_queue_depth_total 9\npmp_event_queue_depth 1024\n";
        assert_eq!(parse_gauge(page, EVENT_QUEUE), 1024);
        assert_eq!(parse_gauge("", EVENT_QUEUE), 0);
    }

    #[test]
    fn only_the_request_counter_is_read() {
        let page = "# TYPE pmp_kube_requests counter\n\
                    pmp_kube_requests_total{class=\"2xx\"} 120\n\
                    pmp_kube_requests_total{class=\"429\"} 2\n\
                    pmp_kube_requests_created{class=\"2xx\"} 1.7e9\n\
                    pmp_reconciles_total{controller=\"platform\",result=\"ok\"} 9\n\
                    # EOF\n";
        let counts = parse_counts(page);
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert_eq!(counts["2xx"], 120);
        assert_eq!(counts["429"], 2);
    }
}

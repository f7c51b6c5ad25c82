//! What the API server itself counted over each phase, read from its `/metrics` page at the
//! phase's start and end: requests by verb and resource (`apiserver_request_total`) and the
//! watch events it sent, with their bytes (`apiserver_watch_events_total`,
//! `apiserver_watch_events_sizes_sum`). Whoever made them: the operator, the controllers,
//! kwok and the benchmark's own polls and watch. Beside the CPU figures they say what a
//! phase cost the control plane, not only how long it took.

use std::collections::BTreeMap;

use kube::Client;
use serde::{Deserialize, Serialize};

const REQUESTS: &str = "apiserver_request_total";
const WATCH_EVENTS: &str = "apiserver_watch_events_total";
const WATCH_BYTES: &str = "apiserver_watch_events_sizes_sum";
const TERMINATED: &str = "apiserver_terminated_watchers_total";
/// Verbs that change nothing stored.
const READS: [&str; 5] = ["GET", "LIST", "WATCH", "CONNECT", "PROXY"];

/// Counts of one phase (or totals of one reading).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerCounts {
    /// Requests by `VERB resource[/subresource]`, whatever the answer.
    pub requests: BTreeMap<String, u64>,
    /// Watch events sent to all watchers, by resource.
    pub watch_events: BTreeMap<String, u64>,
    /// Their encoded size in bytes, by resource.
    pub watch_bytes: BTreeMap<String, u64>,
    /// Watches the API server closed because their client did not take the events fast
    /// enough, by resource (each is followed by a new watch and a replay of what it missed).
    #[serde(default)]
    pub terminated_watchers: BTreeMap<String, u64>,
}

impl ServerCounts {
    /// Reads the counters of a Prometheus text page; other lines are ignored.
    pub fn parse(page: &str) -> Self {
        let mut counts = Self::default();
        for line in page.lines() {
            let Some((name, labels, value)) = sample(line) else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or("", |(_, v)| v.as_str())
            };
            let table = match name {
                REQUESTS => &mut counts.requests,
                WATCH_EVENTS => &mut counts.watch_events,
                WATCH_BYTES => &mut counts.watch_bytes,
                TERMINATED => &mut counts.terminated_watchers,
                _ => continue,
            };
            let key = if name == REQUESTS {
                let resource = match (label("resource"), label("subresource")) {
                    ("", "") => "(non-resource)".to_string(),
                    ("", path) => path.to_string(),
                    (resource, "") => resource.to_string(),
                    (resource, sub) => format!("{resource}/{sub}"),
                };
                format!("{} {resource}", label("verb"))
            } else {
                label("resource").to_string()
            };
            // Counters are whole numbers, printed as floats by some exporters.
            *table.entry(key).or_default() += value.max(0.0).round() as u64;
        }
        counts
    }

    /// What was counted since `before` (counters only grow; a restart reads as zero).
    pub fn since(&self, before: &ServerCounts) -> ServerCounts {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .filter_map(|(key, value)| {
                    let delta = value.saturating_sub(then.get(key).copied().unwrap_or(0));
                    (delta > 0).then(|| (key.clone(), delta))
                })
                .collect()
        };
        ServerCounts {
            requests: diff(&self.requests, &before.requests),
            watch_events: diff(&self.watch_events, &before.watch_events),
            watch_bytes: diff(&self.watch_bytes, &before.watch_bytes),
            terminated_watchers: diff(&self.terminated_watchers, &before.terminated_watchers),
        }
    }

    /// Requests that change something (every verb but the reads).
    pub fn writes(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(key, _)| is_write(key))
            .map(|(_, count)| count)
            .sum()
    }

    /// The writes, most first (at most `top`: `1000 POST pods, ...`), the watch events and
    /// the watches closed.
    pub fn describe(&self, top: usize) -> String {
        let mut writes: Vec<(&String, &u64)> = self
            .requests
            .iter()
            .filter(|(key, _)| is_write(key))
            .collect();
        writes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = writes
            .iter()
            .take(top)
            .map(|(key, count)| format!("{count} {key}"))
            .collect();
        let watch_mb = self.watch_bytes.values().sum::<u64>() as f64 / 1e6;
        format!(
            "{} writes ({}); {} watch events sent ({watch_mb:.1} MB); {} watches closed as \
             unresponsive",
            self.writes(),
            listed.join(", "),
            self.watch_events.values().sum::<u64>(),
            self.terminated_watchers.values().sum::<u64>()
        )
    }
}

/// `VERB resource`: a verb that changes something stored.
fn is_write(key: &str) -> bool {
    !READS.contains(&key.split(' ').next().unwrap_or_default())
}

/// A label's name and its value, unescaped.
pub(super) type Label<'a> = (&'a str, String);

/// One `name{labels} value` line: the name, the labels and the value.
pub(super) fn sample(line: &str) -> Option<(&str, Vec<Label<'_>>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let name = &line[..open];
    let value = line
        .get(close + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((name, labels(line.get(open + 1..close)?), value))
}

/// `key="value",...`, with the text format's escapes (`\"`, `\\`, `\n`) undone.
fn labels(text: &str) -> Vec<Label<'_>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => {}
                },
                '"' => {
                    end = Some(eq + 2 + at + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key, value));
        let Some(end) = end else { break };
        rest = &rest[end..];
    }
    labels
}

/// Reads the API server's counters through the benchmark's client (it needs `get` on the
/// `/metrics` non-resource URL, which the test control plane's admin has).
#[derive(Clone)]
pub(super) struct ServerCounter {
    client: Client,
}

impl ServerCounter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The counters now; `None` (said once per reading) when the page cannot be read.
    pub async fn read(&self) -> Option<ServerCounts> {
        let request = match http::Request::get("/metrics").body(Vec::new()) {
            Ok(request) => request,
            Err(error) => {
                say!("warning: the API server's /metrics: {error}");
                return None;
            }
        };
        match self.client.request_text(request).await {
            Ok(page) => Some(ServerCounts::parse(&page)),
            Err(error) => {
                say!("warning: the API server's /metrics could not be read: {error}");
                None
            }
        }
    }
}

/// What a phase cost the API server, from readings at its start and end.
pub(super) fn phase_counts(
    before: Option<ServerCounts>,
    after: Option<ServerCounts>,
) -> Option<ServerCounts> {
    Some(after?.since(&before?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="status",verb="PUT",version="v1"} 11400
apiserver_request_total{code="409",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="status",verb="PUT",version="v1"} 2571
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 10
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 3
apiserver_watch_events_total{group="",resource="pods",version="v1"} 72248
apiserver_watch_events_sizes_sum{group="",resource="pods",version="v1"} 1.5e+08
apiserver_terminated_watchers_total{group="apps",resource="deployments"} 41
apiserver_request_duration_seconds_sum{verb="PUT"} 12.5
weird_metric{note="a \"quoted\", comma"} 1
"#;

    #[test]
    fn requests_are_counted_by_verb_and_resource_whatever_the_answer() {
        let counts = ServerCounts::parse(PAGE);
        assert_eq!(counts.requests["PUT deployments/status"], 13971);
        assert_eq!(counts.requests["POST pods"], 2000);
        assert_eq!(counts.requests["LIST pods"], 10);
        assert_eq!(counts.requests["GET /readyz"], 3);
        assert_eq!(counts.watch_events["pods"], 72248);
        assert_eq!(counts.watch_bytes["pods"], 150_000_000);
        assert_eq!(counts.terminated_watchers["deployments"], 41);
        assert_eq!(counts.writes(), 15971, "the reads are not writes");
    }

    #[test]
    fn a_phase_is_the_difference_of_two_readings() {
        let before = ServerCounts::parse(PAGE);
        let after = ServerCounts::parse(&PAGE.replace("} 2000", "} 2500"));
        let phase = phase_counts(Some(before), Some(after)).expect("both read");
        assert_eq!(phase.requests, BTreeMap::from([("POST pods".into(), 500)]));
        assert!(phase.watch_events.is_empty());
        assert_eq!(
            phase.describe(5),
            "500 writes (500 POST pods); 0 watch events sent (0.0 MB); 0 watches closed as \
             unresponsive"
        );
        assert_eq!(phase_counts(None, Some(ServerCounts::default())), None);
    }

    #[test]
    fn label_values_keep_their_escaped_quotes_and_commas() {
        let (name, labels, value) =
            sample(r#"weird_metric{note="a \"quoted\", comma",b="x"} 1"#).expect("a sample");
        assert_eq!(name, "weird_metric");
        assert_eq!(
            labels,
            vec![
                ("note", "a \"quoted\", comma".to_string()),
                ("b", "x".into())
            ]
        );
        assert_eq!(value, 1.0);
    }
}

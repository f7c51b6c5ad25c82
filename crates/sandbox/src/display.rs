//! What `sandbox` shows: every phase transition of every Platform with its time, and on a
//! terminal a live table of the stack ordered by startup wave.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use platform_operator::crd::Platform;

/// Plain log lines, or a live table (for a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    Lines,
    Live,
}

/// The running display.
pub struct Display {
    task: JoinHandle<()>,
}

#[derive(Clone, Default)]
struct Row {
    phase: String,
    ready: String,
    deps: String,
    wave: Option<i32>,
    message: String,
}

impl Display {
    /// Starts following the Platforms of the cluster `client` talks to.
    pub fn spawn(client: Client, mode: DisplayMode) -> Display {
        let task = tokio::spawn(follow(client, mode));
        Display { task }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn follow(client: Client, mode: DisplayMode) {
    let started = Instant::now();
    let api: Api<Platform> = Api::all(client);
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut transitions: VecDeque<String> = VecDeque::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(platform) = event else {
            continue;
        };
        let name = format!(
            "{}/{}",
            platform.namespace().unwrap_or_default(),
            platform.name_any()
        );
        let status = platform.status.clone().unwrap_or_default();
        let row = Row {
            phase: status
                .phase
                .map_or("Pending".to_string(), |p| p.to_string()),
            ready: status.ready.unwrap_or_else(|| "-".into()),
            deps: status.dependencies.unwrap_or_else(|| "-".into()),
            wave: status.startup_wave,
            message: status.message.unwrap_or_default(),
        };
        let previous = rows.insert(name.clone(), row.clone());
        let before = previous.as_ref().map(|r| r.phase.clone());
        if before.as_deref() == Some(row.phase.as_str()) {
            if mode == DisplayMode::Live {
                redraw(&rows, &transitions);
            }
            continue;
        }
        let line = format!(
            "[{:>8.3}s] {name:<40} {:>22} → {:<22} ready {:<5} deps {:<5} {}",
            started.elapsed().as_secs_f64(),
            before.unwrap_or_else(|| "(new)".into()),
            row.phase,
            row.ready,
            row.deps,
            row.message
        );
        match mode {
            DisplayMode::Lines => println!("{line}"),
            DisplayMode::Live => {
                transitions.push_back(line);
                if transitions.len() > 12 {
                    transitions.pop_front();
                }
                redraw(&rows, &transitions);
            }
        }
    }
}

fn redraw(rows: &BTreeMap<String, Row>, transitions: &VecDeque<String>) {
    let mut ordered: Vec<(&String, &Row)> = rows.iter().collect();
    ordered.sort_by_key(|(name, row)| (row.wave.unwrap_or(i32::MAX), (*name).clone()));
    let mut out = String::from("\x1b[2J\x1b[H");
    out.push_str("platform-sandbox: Ctrl-C stops the stack in reverse order\n\n");
    out.push_str(&format!(
        "{:<5} {:<40} {:<24} {:<6} {:<6} {}\n",
        "WAVE", "PLATFORM", "PHASE", "READY", "DEPS", "MESSAGE"
    ));
    for (name, row) in ordered {
        let wave = row.wave.map_or("-".to_string(), |w| w.to_string());
        out.push_str(&format!(
            "{wave:<5} {name:<40} {:<24} {:<6} {:<6} {}\n",
            row.phase, row.ready, row.deps, row.message
        ));
    }
    out.push_str("\nRecent transitions:\n");
    for line in transitions {
        out.push_str(line);
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

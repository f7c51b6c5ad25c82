//! Where the machine's CPU went during each phase: every control-plane process (from the
//! `pids` file `testenv/up.sh` writes beside the kubeconfig), the operator, and the machine as
//! a whole (`/proc/stat`). On a machine the control plane shares with the operator, a ratio
//! above 1 is either the operator waiting or the control plane working harder for it; these
//! figures say which.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::bench::process::cpu_seconds;

/// The processes to account, by name.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuWatch {
    processes: Vec<(String, u32)>,
}

/// One reading of every watched process and of the machine.
#[derive(Debug, Clone)]
pub(super) struct CpuReading {
    at: Instant,
    processes: BTreeMap<String, f64>,
    machine: Option<MachineTicks>,
}

#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    busy: u64,
    total: u64,
}

/// CPU used between two readings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseCpu {
    pub wall_seconds: f64,
    /// All cores busy over the phase, in percent of one core (200 is two cores full).
    pub machine_busy_percent: Option<f64>,
    /// CPU-seconds per process.
    pub processes: BTreeMap<String, f64>,
}

impl CpuWatch {
    /// The control plane listed in `pids` beside `kubeconfig` (`name pid binary` lines); an
    /// empty watch when there is none (a control plane the benchmark did not start).
    pub fn control_plane_beside(kubeconfig: &Path) -> Self {
        let Some(text) = kubeconfig
            .parent()
            .and_then(|dir| std::fs::read_to_string(dir.join("pids")).ok())
        else {
            return Self::default();
        };
        Self {
            processes: parse_pids(&text),
        }
    }

    pub fn with(&self, name: &str, pid: u32) -> Self {
        let mut watch = self.clone();
        watch.processes.push((name.to_string(), pid));
        watch
    }

    pub fn read(&self) -> CpuReading {
        CpuReading {
            at: Instant::now(),
            processes: self
                .processes
                .iter()
                .filter_map(|(name, pid)| Some((name.clone(), cpu_seconds(*pid)?)))
                .collect(),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|stat| machine_ticks(&stat)),
        }
    }
}

impl CpuReading {
    pub fn since(&self, earlier: &CpuReading) -> PhaseCpu {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        let machine = match (earlier.machine, self.machine) {
            (Some(before), Some(after)) if after.total > before.total => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let busy = (after.busy - before.busy) as f64 / (after.total - before.total) as f64;
                Some(busy * cores * 100.0)
            }
            _ => None,
        };
        PhaseCpu {
            wall_seconds: wall,
            machine_busy_percent: machine,
            processes: self
                .processes
                .iter()
                .filter_map(|(name, now)| {
                    let before = earlier.processes.get(name)?;
                    Some((name.clone(), now - before))
                })
                .collect(),
        }
    }
}

impl PhaseCpu {
    /// `name 12.3 s (45%)` per process, largest first, and the machine's share.
    pub fn describe(&self) -> String {
        let mut used: Vec<(&String, &f64)> = self.processes.iter().collect();
        used.sort_by(|a, b| b.1.total_cmp(a.1));
        let wall = self.wall_seconds.max(f64::EPSILON);
        let parts: Vec<String> = used
            .iter()
            .map(|(name, seconds)| {
                format!("{name} {seconds:.1} s ({:.0}%)", *seconds / wall * 100.0)
            })
            .collect();
        let machine = self
            .machine_busy_percent
            .map_or_else(String::new, |busy| format!("; machine {busy:.0}% busy"));
        format!(
            "over {:.1} s: {}{machine}",
            self.wall_seconds,
            parts.join(", ")
        )
    }
}

fn parse_pids(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let pid = fields.next()?.parse().ok()?;
            Some((name.to_string(), pid))
        })
        .collect()
}

/// Busy and total ticks of all cores from `/proc/stat`'s first line (idle and iowait are
/// not busy).
fn machine_ticks(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pids_file_names_each_process() {
        let text = "etcd 101 /bin/etcd\nkube-apiserver 102 /bin/kube-apiserver\nbroken\n";
        assert_eq!(
            parse_pids(text),
            vec![
                ("etcd".to_string(), 101),
                ("kube-apiserver".to_string(), 102)
            ]
        );
    }

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        let ticks = machine_ticks(stat).expect("ticks");
        assert_eq!(ticks.total, 1000);
        assert_eq!(ticks.busy, 150);
    }
}

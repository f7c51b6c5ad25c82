//! `bench startup --kubeconfig PATH` (the real-cluster benchmark) and `bench table` (its
//! reports side by side).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use platform_operator::logging::{self, LogFormat};
use platform_sandbox::bench::{RealBench, RealReport, run_real_bench};

use super::{StartupArgs, operator_process, runtime};
use crate::fail;

#[derive(Args)]
pub struct TableArgs {
    /// Reports written by `bench startup --kubeconfig ... --json FILE`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub(super) fn bench_startup(args: StartupArgs, kubeconfig: PathBuf) -> ExitCode {
    logging::init(LogFormat::Text, "error");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let operator = match operator_process(&args) {
        Ok(operator) => operator,
        Err(code) => return code,
    };
    let bench = RealBench {
        kubeconfig,
        platforms: args.platforms,
        depth: args.depth,
        fan_in: args.fan_in,
        seed: args.seed,
        ready_after: Duration::from_millis(args.ready_after_ms),
        operator,
    };
    let report = match runtime.block_on(run_real_bench(&bench)) {
        Ok(report) => report,
        Err(error) => return fail(&error.to_string()),
    };
    eprintln!("{}", report.summary());
    let text = match serde_json::to_string_pretty(&report) {
        Ok(text) => text,
        Err(error) => return fail(&format!("failed to render the report: {error}")),
    };
    println!("{text}");
    if let Some(path) = args.json
        && let Err(error) = std::fs::write(&path, text)
    {
        return fail(&format!("failed to write {}: {error}", path.display()));
    }
    ExitCode::SUCCESS
}

pub fn bench_table(args: TableArgs) -> ExitCode {
    let mut reports = Vec::new();
    for path in &args.files {
        let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
        match read
            .and_then(|text| serde_json::from_str::<RealReport>(&text).map_err(|e| e.to_string()))
        {
            Ok(report) => reports.push(report),
            Err(error) => return fail(&format!("failed to read {}: {error}", path.display())),
        }
    }
    print!("{}", table(&reports));
    ExitCode::SUCCESS
}

/// The operator's figures and the baseline's, one row per report.
fn table(reports: &[RealReport]) -> String {
    let mut out = format!(
        "{:>9} {:>5} | {:>11} {:>11} {:>6} | {:>7} {:>6} {:>7} {:>9} {:>5} {:>7} {:>8} {:>7} {:>5} {:>5}\n",
        "platforms",
        "depth",
        "operator ms",
        "baseline ms",
        "ratio",
        "RSS MiB",
        "CPU s",
        "sockets",
        "API conns",
        "HTTP",
        "req/s",
        "writes/p",
        "at rest",
        "5xx",
        "429"
    );
    for r in reports {
        out += &format!(
            "{:>9} {:>5} | {:>11.0} {:>11.0} {:>6.2} | {:>7.0} {:>6.1} {:>7} {:>9} {:>5} {:>7.0} {:>8.2} {:>7} {:>5} {:>5}\n",
            r.platforms,
            r.depth,
            r.converge_ms,
            r.baseline_converge_ms,
            r.ratio_operator_to_baseline,
            r.operator_peak_rss_mb,
            r.operator_cpu_seconds,
            r.operator_peak_sockets,
            r.operator_api_connections,
            r.kube_http,
            r.api_requests_per_second_peak,
            r.writes_per_platform,
            r.steady_state_writes,
            r.operator_5xx,
            r.operator_429,
        );
    }
    if let Some(settings) = reports.iter().find_map(|r| r.control_plane.as_ref()) {
        out += &format!("control plane: {}\n", settings.describe());
    }
    out
}

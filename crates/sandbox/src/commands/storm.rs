//! `bench storm`: a dependency failure under a storm of routine pod updates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use platform_operator::logging::{self, LogFormat};
use platform_sandbox::bench::storm::{StormBench, run_storm_bench};

use crate::fail;

#[derive(Args)]
pub struct StormArgs {
    /// Independent platforms whose pods the storm updates.
    #[arg(long, default_value_t = 1000)]
    noise: usize,
    /// Routine pod updates per second.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Seconds of storm before the failure.
    #[arg(long, default_value_t = 3)]
    lead_seconds: u64,
    /// Reconciles at once (the operator's `--concurrency`).
    #[arg(long, default_value_t = platform_operator::controller::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Also write the report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn bench_storm(args: StormArgs) -> ExitCode {
    logging::init(LogFormat::Text, "error");
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let bench = StormBench {
        noise: args.noise,
        rate: args.rate,
        lead: Duration::from_secs(args.lead_seconds),
        concurrency: args.concurrency,
    };
    let report = match runtime.block_on(run_storm_bench(&bench)) {
        Ok(report) => report,
        Err(error) => return fail(&error.to_string()),
    };
    let text = match serde_json::to_string_pretty(&report) {
        Ok(text) => text,
        Err(error) => return fail(&format!("failed to encode the report: {error}")),
    };
    println!("{text}");
    eprintln!(
        "storm of {:.0} pod updates/s over {} platforms (backlog {} routine triggers): \
         decided in {:.1} ms, dependents stopped in {:.1} ms, the platform in {:.1} ms",
        report.storm_updates_per_second,
        report.noise_platforms,
        report.routine_backlog_at_failure,
        report.failure_to_decision_ms,
        report.failure_to_dependents_stopped_ms,
        report.failure_to_platform_stopped_ms
    );
    if let Some(path) = args.json
        && let Err(error) = std::fs::write(&path, text)
    {
        return fail(&format!("failed to write {}: {error}", path.display()));
    }
    ExitCode::SUCCESS
}

//! The `platform-operator` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use platform_operator::{crd, graph, plan};

#[derive(Parser)]
#[command(
    name = "platform-operator",
    version,
    about = "Runs interdependent platforms on Kubernetes in dependency order"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Platform and PlatformGroup CustomResourceDefinitions as YAML.
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check manifests offline and print startup waves, shutdown order and the critical chain.
    Plan {
        /// Manifest files or directories (multi-document YAML).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Namespace for objects that do not name one.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Benchmarks (numbers, not pass/fail).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Validate and compute the waves of a random DAG.
    Graph {
        #[arg(long, default_value_t = 100_000)]
        platforms: usize,
        #[arg(long, default_value_t = 300_000)]
        edges: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Runs; the report shows the best and the median.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir } => write_crds(out_dir),
        Command::Plan {
            files,
            output,
            namespace,
        } => {
            let plan = plan::plan_files(&files, &namespace);
            match output {
                Output::Text => print!("{}", plan::render_text(&plan)),
                Output::Json => match serde_json::to_string_pretty(&plan) {
                    Ok(json) => println!("{json}"),
                    Err(error) => return fail(&format!("failed to render the plan: {error}")),
                },
            }
            if plan.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Bench {
            bench:
                Bench::Graph {
                    platforms,
                    edges,
                    seed,
                    runs,
                    json,
                },
        } => {
            let mut reports: Vec<_> = (0..runs.max(1))
                .map(|_| graph::bench::run_graph_bench(platforms, edges, seed))
                .collect();
            reports.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
            let best = &reports[0];
            let median = &reports[reports.len() / 2];
            println!(
                "graph: {} platforms, {} edges, {} waves: best {:.1} ms (build {:.1} ms + waves {:.1} ms), median {:.1} ms over {} runs; target < 100 ms",
                best.platforms,
                best.edges,
                best.waves,
                best.total_ms,
                best.build_ms,
                best.waves_ms,
                median.total_ms,
                reports.len()
            );
            if let Some(path) = json {
                let document =
                    serde_json::json!({"best": best, "median": median, "runs": reports.len()});
                if let Err(error) = std::fs::write(&path, document.to_string()) {
                    return fail(&format!("failed to write {}: {error}", path.display()));
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn write_crds(out_dir: Option<PathBuf>) -> ExitCode {
    let files = match crd::crd_files() {
        Ok(files) => files,
        Err(error) => return fail(&format!("failed to render the CRDs: {error}")),
    };
    let Some(dir) = out_dir else {
        files.iter().for_each(|(_, yaml)| print!("{yaml}"));
        return ExitCode::SUCCESS;
    };
    for (name, yaml) in files {
        let path = dir.join(name);
        if let Err(error) = std::fs::write(&path, yaml) {
            return fail(&format!("failed to write {}: {error}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

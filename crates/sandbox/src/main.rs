//! The `platform-sandbox` command line: the operator against the simulated cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(
    name = "platform-sandbox",
    version,
    about = "Runs platform-operator against a simulated Kubernetes cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a simulated cluster, load manifests and run the operator against it, live.
    Sandbox(commands::SandboxArgs),
    /// Benchmarks (numbers, not pass/fail).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Validate and compute the waves of a random DAG.
    Graph(commands::GraphArgs),
    /// Bring up a layered stack in the simulated cluster (or with `--kubeconfig` a real
    /// control plane, beside a layer-by-layer baseline) and measure gating latency,
    /// convergence, writes and memory.
    Startup(commands::StartupArgs),
    /// Print real-cluster startup reports (`bench startup --kubeconfig ... --json FILE`) side
    /// by side.
    Table(commands::TableArgs),
    /// A dependency failure under a storm of routine pod updates: how soon the operator acts
    /// on it and stops its dependents.
    Storm(commands::StormArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Sandbox(args) => commands::sandbox(args),
        Command::Bench {
            bench: Bench::Graph(args),
        } => commands::bench_graph(args),
        Command::Bench {
            bench: Bench::Startup(args),
        } => commands::bench_startup(args),
        Command::Bench {
            bench: Bench::Table(args),
        } => commands::bench_table(args),
        Command::Bench {
            bench: Bench::Storm(args),
        } => commands::bench_storm(args),
    }
}

pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

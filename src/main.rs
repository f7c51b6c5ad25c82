//! The `platform-operator` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use platform_operator::{crd, plan};

mod commands;

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
    /// Run the operator against the cluster of the current kube config (or in-cluster).
    Run(Box<commands::RunArgs>),
    /// Print the REST API's OpenAPI 3.1 document (committed as docs/openapi.json).
    Openapi,
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
        Command::Run(args) => commands::run(*args),
        Command::Openapi => match platform_operator::api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&format!("failed to render the OpenAPI document: {error}")),
        },
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

pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

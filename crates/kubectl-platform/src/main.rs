//! `kubectl-platform`: the kubectl plugin of platform-operator (`kubectl platform ...`).
//!
//! It works on the Platform objects through the Kubernetes API with kubectl's credentials,
//! never through the operator's REST API, and carries out a control action exactly as the REST
//! API does: the same plan (`platform_operator::api::control`), the same views, the same test of
//! "done". Exit codes: 0 done, 1 not possible / not found / the cluster refused, 2 usage.

mod cli;
mod cluster;
mod control;
mod error;
mod lookup;
mod status;
mod tree;

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Parser;
use platform_operator::api::control::Action;
use platform_operator::api::graph::{graph_view, render_dot, render_mermaid};
use platform_operator::api::views::platform_status;
use platform_operator::graph::NodeKey;
use platform_operator::stack::key_of;

use cli::{Cli, Command, GraphOutput, StatusOutput};
use cluster::{Cluster, Loaded};
use error::{CliError, EXIT_FAILED};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let cluster = Cluster::connect(&cli.global).await?;
    match cli.command {
        Command::Start(args) => {
            let request = control::Request {
                action: Action::Start,
                name: args.name,
                with_dependencies: args.with_dependencies,
                with_dependents: false,
                wait: args.wait.wait.then_some(args.wait.timeout),
            };
            control::run(&cluster, &request).await
        }
        Command::Stop(args) => {
            let request = control::Request {
                action: Action::Stop,
                name: args.name,
                with_dependencies: false,
                with_dependents: false,
                wait: args.wait.wait.then_some(args.wait.timeout),
            };
            control::run(&cluster, &request).await
        }
        Command::Restart(args) => {
            let request = control::Request {
                action: Action::Restart,
                name: args.name,
                with_dependencies: false,
                with_dependents: args.with_dependents,
                wait: args.wait.wait.then_some(args.wait.timeout),
            };
            control::run(&cluster, &request).await
        }
        Command::Status(args) => {
            let loaded = cluster.load(false).await?;
            let key = lookup::find_platform(&loaded, &args.name, &cluster.namespace)?;
            let platform = loaded
                .snapshot
                .platforms
                .get(&key)
                .ok_or_else(|| CliError::NotFound(format!("platform {key} not found")))?;
            let view = platform_status(&loaded.snapshot, platform);
            match args.output {
                Some(StatusOutput::Json) => println!("{}", to_json(&view)?),
                None => print!("{}", status::render(&view)),
            }
            Ok(())
        }
        Command::Tree(args) => {
            let loaded = cluster.load(args.all_namespaces).await?;
            let scope = scope(
                &loaded,
                &cluster,
                args.group.as_deref(),
                args.all_namespaces,
            )?;
            let home = if args.all_namespaces {
                ""
            } else {
                &cluster.namespace
            };
            print!(
                "{}",
                tree::render(&tree::build(&loaded.snapshot, &scope), home)
            );
            Ok(())
        }
        Command::Graph(args) => {
            let loaded = cluster.load(args.all_namespaces).await?;
            let scope = scope(
                &loaded,
                &cluster,
                args.group.as_deref(),
                args.all_namespaces,
            )?;
            let view = graph_view(&loaded.snapshot, |key| scope.contains(key));
            match args.output {
                GraphOutput::Json => println!("{}", to_json(&view)?),
                GraphOutput::Dot => print!("{}", render_dot(&view)),
                GraphOutput::Mermaid => print!("{}", render_mermaid(&view)),
            }
            Ok(())
        }
    }
}

/// The platforms a tree or graph shows: a group's members, the namespace's, or all.
fn scope(
    loaded: &Loaded,
    cluster: &Cluster,
    group: Option<&str>,
    everywhere: bool,
) -> Result<BTreeSet<NodeKey>, CliError> {
    if let Some(group) = group {
        let group = lookup::find_group(loaded, group, &cluster.namespace)?;
        let members = loaded
            .snapshot
            .topology
            .membership
            .members
            .get(&key_of(group.as_ref()));
        return Ok(members.into_iter().flatten().cloned().collect());
    }
    Ok(loaded
        .snapshot
        .platforms
        .keys()
        .filter(|k| everywhere || k.namespace == cluster.namespace)
        .cloned()
        .collect())
}

fn to_json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::NotPossible(format!("failed to write JSON: {e}")))
}

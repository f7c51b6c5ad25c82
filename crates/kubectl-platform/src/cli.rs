//! The command line, shaped like kubectl's own: `kubectl platform VERB NAME [flags]`, with
//! kubectl's `-n`, `-A`, `--kubeconfig` and `--context`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use platform_operator::api::wait::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-platform",
    bin_name = "kubectl platform",
    version,
    about = "Start, stop, restart and inspect Platforms (pmp.dev) with kubectl's credentials"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a platform and, unless --with-dependencies=false, the stopped platforms it depends on.
    Start(StartArgs),
    /// Stop a platform; the operator stops its dependents first, in reverse order.
    Stop(StopArgs),
    /// Rolling restart of a platform; --with-dependents restarts its dependents after it.
    Restart(RestartArgs),
    /// A platform's status (-o json: the REST API's status view).
    Status(StatusArgs),
    /// The dependency tree with live phases, when each platform became Ready and what gated it.
    Tree(TreeArgs),
    /// The dependency graph as Graphviz DOT, a Mermaid flowchart or JSON.
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The Platform's name (or its legacy spec.platformId).
    pub name: String,
    /// Also start the stopped platforms it depends on, dependencies first.
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub with_dependencies: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The Platform's name (or its legacy spec.platformId).
    pub name: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The Platform's name (or its legacy spec.platformId).
    pub name: String,
    /// Restart its dependents too, each once this platform is Ready again.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub with_dependents: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Block until every affected platform is where the action puts it.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits: 60s, 500ms, 2m, 1m30s.
    #[arg(long, default_value = "60s", value_parser = duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The Platform's name (or its legacy spec.platformId).
    pub name: String,
    /// json: the same document as GET /api/v1/platform/{id}/status.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<StatusOutput>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusOutput {
    Json,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// Only the members of this PlatformGroup.
    pub group: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "group")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Only the members of this PlatformGroup.
    pub group: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    pub output: GraphOutput,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "group")]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphOutput {
    Dot,
    Mermaid,
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 60s, 500ms or 2m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-platform").chain(args.iter().copied()))
    }

    #[test]
    fn with_dependencies_defaults_to_true_and_takes_an_explicit_false() {
        let Command::Start(start) = parse(&["start", "a"]).expect("parses").command else {
            panic!("start");
        };
        assert!(start.with_dependencies);
        let Command::Start(start) = parse(&["start", "a", "--with-dependencies=false"])
            .expect("parses")
            .command
        else {
            panic!("start");
        };
        assert!(!start.with_dependencies);
    }

    #[test]
    fn flags_go_anywhere_and_timeout_needs_wait() {
        let cli = parse(&[
            "-n",
            "trading",
            "restart",
            "a",
            "--with-dependents",
            "--wait",
            "--timeout",
            "2m",
        ])
        .expect("parses");
        assert_eq!(cli.global.namespace.as_deref(), Some("trading"));
        let Command::Restart(restart) = cli.command else {
            panic!("restart");
        };
        assert!(restart.with_dependents && restart.wait.wait);
        assert_eq!(restart.wait.timeout, Duration::from_secs(120));
        assert!(parse(&["stop", "a", "--timeout", "5s"]).is_err());
        assert!(parse(&["stop", "a", "--wait", "--timeout", "soon"]).is_err());
        assert!(parse(&["stop", "a", "--with-dependents"]).is_err());
    }
}

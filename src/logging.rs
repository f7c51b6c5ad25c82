//! Logging setup shared by the binaries: JSON lines or text on stderr, the level from
//! `RUST_LOG` (else the given default), kube-runtime's per-reconcile lines at warn, and ANSI
//! colours only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber (a second call is a no-op).
pub fn init(format: LogFormat, default_level: &str) {
    // kube-runtime logs every reconcile at info; the operator's own audit lines say more.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},kube_runtime=warn,kube_client=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

//! `status NAME`: the REST API's status view, as JSON or as a `kubectl describe`-like text.

use std::fmt::Write as _;

use platform_operator::api::views::PlatformStatusView;

/// The view as text: one `Field: value` line per scalar, then tables.
pub fn render(view: &PlatformStatusView) -> String {
    let mut out = String::new();
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    };
    field("Name", view.name.clone());
    field("Namespace", view.namespace.clone());
    field("Platform ID", dash(&view.platform_id));
    field("Group", dash(&view.group));
    field("Phase", view.phase.clone());
    field("Desired", view.desired_state.clone());
    if let Some(by) = &view.stopped_by {
        field("Stopped by", by.clone());
    }
    field("Message", dash(&view.message));
    field(
        "Replicas",
        format!("{}/{} ready", view.replicas.ready, view.replicas.desired),
    );
    field("Started", dash(&view.started_at));
    field("Stopped", dash(&view.stopped_at));
    field(
        "Restarts",
        match &view.restarts.last_restart_time {
            Some(last) => format!("{} (last {last})", view.restarts.count),
            None => view.restarts.count.to_string(),
        },
    );
    field(
        "Health",
        match (&view.health.healthy, &view.health.reason) {
            (true, _) => "healthy".to_string(),
            (false, Some(reason)) => format!("unhealthy: {reason}"),
            (false, None) => "not running".to_string(),
        },
    );
    if !view.blocked_by.is_empty() {
        field("Waiting for", view.blocked_by.join(", "));
    }
    if let Some(generation) = view.generation {
        let observed = view
            .observed_generation
            .map_or("-".to_string(), |g| g.to_string());
        field("Generation", format!("{generation} (observed {observed})"));
    }
    section(
        &mut out,
        "Dependencies",
        &["NAME", "PHASE", "READY"],
        view.dependencies
            .iter()
            .map(|d| {
                let name = if d.namespace == view.namespace {
                    d.name.clone()
                } else {
                    format!("{}/{}", d.namespace, d.name)
                };
                vec![name, d.phase.clone(), d.ready.to_string()]
            })
            .collect(),
    );
    section(
        &mut out,
        "Conditions",
        &["TYPE", "STATUS", "REASON", "MESSAGE"],
        view.conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect(),
    );
    section(
        &mut out,
        "Config",
        &["KEY", "VALUE"],
        view.config
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect(),
    );
    section(
        &mut out,
        "Last actions",
        &["TIME", "ACTION", "ACTOR", "REASON"],
        view.last_actions
            .iter()
            .map(|a| {
                vec![
                    a.time.clone(),
                    a.action.clone(),
                    a.actor.clone(),
                    a.reason.clone(),
                ]
            })
            .collect(),
    );
    out
}

/// A titled table, columns as wide as their widest cell; `<none>` when empty, as kubectl.
fn section(out: &mut String, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "{title}:");
    if rows.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use platform_operator::api::control::Snapshot;
    use platform_operator::api::views::platform_status;
    use platform_operator::controller::Topology;
    use platform_operator::fixtures::platform;
    use platform_operator::stack::key_of;

    use super::*;

    #[test]
    fn the_text_names_the_dependencies_and_redacts_secret_config() {
        let platforms = vec![
            Arc::new(platform("feed").build()),
            Arc::new(
                platform("pricer")
                    .depends_on(["feed"])
                    .platform_id("pricer_svc")
                    .config("window", "30s")
                    .config("api_key", "hunter2")
                    .build(),
            ),
        ];
        let snapshot = Snapshot {
            platforms: platforms
                .iter()
                .map(|p| (key_of(p.as_ref()), Arc::clone(p)))
                .collect::<HashMap<_, _>>(),
            topology: Arc::new(Topology::of(&platforms, &[])),
        };
        let text = render(&platform_status(&snapshot, &platforms[1]));
        assert!(text.contains("Name:         pricer\n"), "{text}");
        assert!(text.contains("Platform ID:  pricer_svc\n"), "{text}");
        assert!(text.contains("Phase:        Pending\n"), "{text}");
        assert!(
            text.contains("Dependencies:\n  NAME  PHASE    READY\n  feed  Pending  false\n"),
            "{text}"
        );
        assert!(text.contains("  api_key  <redacted>\n"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("Last actions:\n  <none>\n"), "{text}");
    }
}

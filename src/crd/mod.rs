//! The custom resource types (API group `pmp.dev`, version `v1alpha1`): types, defaults and
//! schema validation rules only, no behaviour.

mod alerts;
mod group;
mod platform;
mod settings;
mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use alerts::{AlertChannel, AlertChannelType, AlertEvent, Alerts, SecretKeyRef};
pub use group::{
    GroupDefaults, OrderingRule, PlatformGroup, PlatformGroupSpec, PlatformGroupStatus,
    StartupSettings, group_condition,
};
pub use platform::{
    DependencyRef, DesiredState, MAX_DEPENDENCIES, Platform, PlatformSpec, PodTemplate, PortSpec,
};
pub use settings::{
    Backoff, CpuMemory, DependencyReaction, ExecProbe, HealthCheckReaction, HealthCheckSettings,
    HttpProbe, Probe, Reactions, ResourceReaction, ResourceSettings, RestartPolicySettings,
    ShutdownSettings, TcpProbe,
};
pub use status::{
    CircuitState, FailureRecord, HISTORY_LIMIT, HistoryEntry, Phase, PlatformStatus,
    SupervisionStatus, condition,
};

/// The API group of every custom resource here.
pub const GROUP: &str = "pmp.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Both CustomResourceDefinitions, in a stable order (Platform first).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        for_api_server(Platform::crd()),
        for_api_server(PlatformGroup::crd()),
    ]
}

/// What the generated schema needs to read well on a real API server: descriptions as
/// paragraphs (doc comments keep their line breaks, which `kubectl explain` would print
/// mid-sentence), and no unsigned integer formats, which the API server does not know (it
/// warns on every apply; the ranges already say the values are non-negative).
fn for_api_server(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    tidy_schema(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn tidy_schema(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(text)) = map.get_mut("description") {
                *text = as_paragraphs(text);
            }
            if map
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| f.starts_with("uint"))
            {
                map.remove("format");
            }
            map.values_mut().for_each(tidy_schema);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}

/// Joins the lines of each paragraph with spaces; blank lines separate paragraphs, and list
/// items (`- ...`) keep their own lines.
pub fn as_paragraphs(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push_str("\n\n");
            }
        } else if out.is_empty() || out.ends_with('\n') {
            out.push_str(line);
        } else if line.starts_with("- ") || line.starts_with("* ") {
            out.push('\n');
            out.push_str(line);
        } else {
            out.push(' ');
            out.push_str(line);
        }
    }
    out.trim_end().to_string()
}

/// The CRDs as one multi-document YAML stream (what `platform-operator crds` prints).
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    Ok(crd_files()?.into_iter().map(|(_, yaml)| yaml).collect())
}

/// One YAML document per CRD with the file name it is committed under in `crds/`
/// (`<plural>.<group>.yaml`).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"));
            Ok((name, format!("---\n{}", serde_saphyr::to_string(&crd)?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_as_paragraphs() {
        let text = "Whether the platform should run. `Stopped` scales it to zero after its\ndependents have stopped.\n\nSecond paragraph\ncontinues.\n- item one\n- item two";
        assert_eq!(
            as_paragraphs(text),
            "Whether the platform should run. `Stopped` scales it to zero after its dependents have stopped.\n\nSecond paragraph continues.\n- item one\n- item two"
        );
    }

    #[test]
    fn generated_crds_have_no_line_broken_sentences_or_unsigned_formats() {
        for crd in all_crds() {
            let json = serde_json::to_string(&crd).expect("serializable");
            assert!(!json.contains("\"format\":\"uint"), "{json}");
            let value: serde_json::Value = serde_json::from_str(&json).expect("json");
            let mut descriptions = Vec::new();
            collect_descriptions(&value, &mut descriptions);
            for description in descriptions {
                // Every line break ends a paragraph or starts a list item.
                let lines: Vec<&str> = description.split('\n').collect();
                for pair in lines.windows(2) {
                    let breaks_paragraph = pair[0].is_empty() || pair[1].is_empty();
                    let starts_item = pair[1].starts_with("- ") || pair[1].starts_with("* ");
                    assert!(
                        breaks_paragraph || starts_item,
                        "a sentence is broken across lines: {pair:?} in {description:?}"
                    );
                }
            }
        }
    }

    fn collect_descriptions(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(text)) = map.get("description") {
                    out.push(text.clone());
                }
                map.values().for_each(|v| collect_descriptions(v, out));
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|v| collect_descriptions(v, out))
            }
            _ => {}
        }
    }
}

//! Reading Kubernetes manifests: files or directories of multi-document YAML, each document kept
//! with where it came from so that every problem can name its file and document index.
//! Platform and PlatformGroup documents are checked the way the API server would check them
//! (name, labels and annotations, unknown fields, nulls and defaults, schema, CEL rules; a
//! `status` in a manifest is ignored, as the server ignores it outside the status subresource)
//! and then parsed into the typed resources.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use serde_json::Value;

use crate::crd::{Platform, PlatformGroup, VERSION, all_crds};
use crate::schema::{FieldError, SchemaValidator, crd_schema, prune_unknown, unknown_fields};

pub use crate::schema::is_dns_subdomain;

/// Largest manifest file read (bigger ones are refused rather than exhausting memory).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based index of the document in its file (empty documents are counted too).
    pub index: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.index)
    }
}

/// One non-empty YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        let meta = self.value.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        match meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
        {
            Some(namespace) => format!("{} {namespace}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }
}

/// A problem with one document (or one file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {what}: {problem}")]
pub struct ManifestError {
    pub origin: Source,
    /// The object, e.g. `Platform trading/ml-inference`, or `YAML` for unreadable documents.
    pub what: String,
    pub problem: String,
    /// The field-level causes, when the problem is a schema violation.
    pub causes: Vec<FieldError>,
}

/// Reads every `.yaml`/`.yml`/`.json` file under the given paths (directories recursively, in
/// name order) and splits them into documents. Unreadable files and YAML errors are reported,
/// the rest is still returned.
pub fn read_documents(paths: &[PathBuf]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for file in expand_paths(paths, &mut errors) {
        match read_file(&file) {
            Ok(text) => split_documents(&file, &text, &mut documents, &mut errors),
            Err(problem) => errors.push(ManifestError {
                origin: Source { file, index: 0 },
                what: "file".into(),
                problem,
                causes: Vec::new(),
            }),
        }
    }
    (documents, errors)
}

fn read_file(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "file is {size} bytes, more than the {MAX_FILE_BYTES} allowed"
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))
}

fn expand_paths(paths: &[PathBuf], errors: &mut Vec<ManifestError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                entries.sort();
                for entry in entries.into_iter().rev() {
                    if entry.is_dir() {
                        stack.push(entry);
                    } else if is_manifest(&entry) {
                        files.push(entry);
                    }
                }
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            errors.push(ManifestError {
                origin: Source {
                    file: path.clone(),
                    index: 0,
                },
                what: "file".into(),
                problem: "no such file or directory".into(),
                causes: Vec::new(),
            });
        }
    }
    files.sort();
    files.dedup();
    files
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Splits on `---` lines so that one broken document does not hide the others, then parses each.
pub fn split_documents(
    file: &Path,
    text: &str,
    documents: &mut Vec<Document>,
    errors: &mut Vec<ManifestError>,
) {
    let mut chunks: Vec<String> = vec![String::new()];
    for line in text.lines() {
        if is_separator(line) {
            chunks.push(String::new());
        } else if let Some(current) = chunks.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    // A leading `---` opens the first document rather than ending an empty one.
    if text.trim_start().starts_with("---") && chunks.first().is_some_and(|c| c.trim().is_empty()) {
        chunks.remove(0);
    }
    for (position, chunk) in chunks.iter().enumerate() {
        let source = Source {
            file: file.to_path_buf(),
            index: position + 1,
        };
        if chunk
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "...")
        {
            continue;
        }
        match serde_saphyr::from_str::<Value>(chunk) {
            Ok(Value::Null) => {}
            Ok(value @ Value::Object(_)) => documents.push(Document { source, value }),
            Ok(_) => errors.push(ManifestError {
                origin: source,
                what: "YAML".into(),
                problem: "a manifest must be a mapping with apiVersion, kind and metadata".into(),
                causes: Vec::new(),
            }),
            Err(error) => errors.push(ManifestError {
                origin: source,
                what: "YAML".into(),
                problem: format!("invalid YAML: {error}"),
                causes: Vec::new(),
            }),
        }
    }
}

fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t') || rest.starts_with('#')
    })
}

/// The Platforms and PlatformGroups of a set of documents, checked.
#[derive(Debug, Default)]
pub struct Stack {
    pub platforms: Vec<(Source, Platform)>,
    pub groups: Vec<(Source, PlatformGroup)>,
    /// Documents of other kinds (Namespaces, ConfigMaps, ...), passed over by `plan`.
    pub other: Vec<Document>,
    pub errors: Vec<ManifestError>,
}

/// Validates Platform and PlatformGroup documents as the API server would (strict field
/// validation, schema, CEL) and parses them. Objects without a namespace get `default_namespace`.
pub fn check_documents(documents: Vec<Document>, default_namespace: &str) -> Stack {
    let checker = Checker::new();
    let mut stack = Stack::default();
    for mut document in documents {
        let kind = document.kind().to_string();
        let known = kind == Platform::kind(&()) || kind == PlatformGroup::kind(&());
        let ours = document.api_version().starts_with("pmp.dev/");
        if !(known && ours) {
            if ours {
                stack.errors.push(problem(
                    &document,
                    format!("unknown kind {kind:?} in pmp.dev"),
                    Vec::new(),
                ));
            } else {
                stack.other.push(document);
            }
            continue;
        }
        if document.api_version() != format!("pmp.dev/{VERSION}") {
            let problem_text = format!(
                "unsupported apiVersion {:?}; use pmp.dev/{VERSION}",
                document.api_version()
            );
            stack
                .errors
                .push(problem(&document, problem_text, Vec::new()));
            continue;
        }
        if let Some(meta) = document
            .value
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            && !meta.contains_key("namespace")
        {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        }
        let checks = if kind == "Platform" {
            &checker.platform
        } else {
            &checker.group
        };
        if let Err(error) = checker.admit(checks, &mut document) {
            stack.errors.push(error);
            continue;
        }
        let source = document.source.clone();
        let parsed = if kind == "Platform" {
            serde_json::from_value::<Platform>(document.value.clone())
                .map(|p| stack.platforms.push((source, p)))
        } else {
            serde_json::from_value::<PlatformGroup>(document.value.clone())
                .map(|g| stack.groups.push((source, g)))
        };
        if let Err(error) = parsed {
            stack.errors.push(problem(
                &document,
                format!("cannot be parsed: {error}"),
                Vec::new(),
            ));
        }
    }
    stack
}

struct Checker {
    platform: KindChecks,
    group: KindChecks,
}

/// The checks of one kind: its schema, and whether its status is a subresource.
struct KindChecks {
    validator: SchemaValidator,
    status_subresource: bool,
}

impl KindChecks {
    fn new(crd: Option<&CustomResourceDefinition>) -> Self {
        let version = crd.and_then(|crd| crd.spec.versions.iter().find(|v| v.name == VERSION));
        Self {
            validator: SchemaValidator::new(
                crd.and_then(|crd| crd_schema(crd, VERSION))
                    .unwrap_or(Value::Null),
            ),
            status_subresource: version
                .and_then(|v| v.subresources.as_ref())
                .is_some_and(|s| s.status.is_some()),
        }
    }
}

impl Checker {
    fn new() -> Self {
        let crds = all_crds();
        Self {
            platform: KindChecks::new(crds.first()),
            group: KindChecks::new(crds.get(1)),
        }
    }

    fn admit(&self, checks: &KindChecks, document: &mut Document) -> Result<(), ManifestError> {
        let validator = &checks.validator;
        let name = document
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() {
            return Err(problem(
                document,
                "metadata.name: Required value".into(),
                Vec::new(),
            ));
        }
        if !is_dns_subdomain(name) {
            let text = format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            );
            return Err(problem(document, text, Vec::new()));
        }
        // Unknown fields fail a server-side apply anywhere, status included.
        let mut causes = unknown_fields(validator.schema(), &document.value);
        // With the status subresource, the API server otherwise ignores the status a create or
        // an apply of the main resource carries (the controller writes it through /status).
        if checks.status_subresource
            && let Some(object) = document.value.as_object_mut()
        {
            object.remove("status");
        }
        prune_unknown(validator.schema(), &mut document.value);
        document.value = validator.apply_defaults(&document.value);
        causes.extend(validator.validate(&document.value, None));
        if causes.is_empty() {
            return Ok(());
        }
        let summary: Vec<String> = causes.iter().map(ToString::to_string).collect();
        Err(problem(document, summary.join("; "), causes))
    }
}

fn problem(document: &Document, problem: String, causes: Vec<FieldError>) -> ManifestError {
    ManifestError {
        origin: document.source.clone(),
        what: document.describe(),
        problem,
        causes,
    }
}

#[cfg(test)]
mod tests;

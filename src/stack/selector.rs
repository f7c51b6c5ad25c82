//! Label selector matching (`metav1.LabelSelector` semantics).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The operator is not one of In, NotIn, Exists, DoesNotExist.
    #[error("unknown selector operator {operator:?} for key {key:?}")]
    UnknownOperator { key: String, operator: String },
    /// In and NotIn need values; Exists and DoesNotExist must have none.
    #[error("selector operator {operator} for key {key:?} {problem}")]
    BadValues {
        key: String,
        operator: String,
        problem: &'static str,
    },
}

/// Whether `labels` satisfy `selector`. An empty selector matches everything, as in Kubernetes.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let mut expressions_match = true;
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.as_deref().unwrap_or_default();
        let present = labels.get(&expression.key);
        let bad = |problem| SelectorError::BadValues {
            key: expression.key.clone(),
            operator: expression.operator.clone(),
            problem,
        };
        let matched = match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(bad("needs values")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(bad("takes no values")),
            "In" => present.is_some_and(|v| values.contains(v)),
            "NotIn" => present.is_none_or(|v| !values.contains(v)),
            "Exists" => present.is_some(),
            "DoesNotExist" => present.is_none(),
            other => {
                return Err(SelectorError::UnknownOperator {
                    key: expression.key.clone(),
                    operator: other.to_string(),
                });
            }
        };
        expressions_match &= matched;
    }
    Ok(labels_match && expressions_match)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert_eq!(
            selector_matches(&LabelSelector::default(), &labels(&[])),
            Ok(true)
        );
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("stack", "trading"), ("env", "prod")])),
            ..Default::default()
        };
        assert_eq!(
            selector_matches(
                &selector,
                &labels(&[("stack", "trading"), ("env", "prod"), ("x", "y")])
            ),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&selector, &labels(&[("stack", "trading")])),
            Ok(false)
        );
    }

    #[test]
    fn each_operator() {
        let app = labels(&[("tier", "web")]);
        assert_eq!(
            selector_matches(&expression("tier", "In", &["web", "db"]), &app),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&expression("tier", "NotIn", &["web"]), &app),
            Ok(false)
        );
        assert_eq!(
            selector_matches(&expression("zone", "NotIn", &["a"]), &app),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&expression("tier", "Exists", &[]), &app),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&expression("tier", "DoesNotExist", &[]), &app),
            Ok(false)
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        let app = labels(&[]);
        assert!(selector_matches(&expression("tier", "In", &[]), &app).is_err());
        assert!(selector_matches(&expression("tier", "Exists", &["x"]), &app).is_err());
        assert!(selector_matches(&expression("tier", "Near", &["x"]), &app).is_err());
    }
}

//! Label and field selectors as the list and watch query parameters spell them, parsed into
//! requirements and matched against objects. Pure functions; the set of field labels a
//! resource supports follows kube-apiserver, anything else is refused like it does.

use std::collections::BTreeSet;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(s: &str, whole: &str) -> Result<BTreeSet<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!(
                "unable to parse requirement: found '{whole}', expected: '(' and ')' around values"
            )
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().to_string())
            } else if let Some((key, rest)) = split_word(&part, " notin ") {
                LabelRequirement::NotIn(key, parse_set(&rest, &part)?)
            } else if let Some((key, rest)) = split_word(&part, " in ") {
                LabelRequirement::In(key, parse_set(&rest, &part)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelRequirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelRequirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('>') {
                let n = v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer: {part}"))?;
                LabelRequirement::GreaterThan(k.trim().to_string(), n)
            } else if let Some((k, v)) = part.split_once('<') {
                let n = v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer: {part}"))?;
                LabelRequirement::LessThan(k.trim().to_string(), n)
            } else {
                LabelRequirement::Exists(part.trim().to_string())
            };
            let key = match &req {
                LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _)
                | LabelRequirement::Exists(k)
                | LabelRequirement::DoesNotExist(k)
                | LabelRequirement::GreaterThan(k, _)
                | LabelRequirement::LessThan(k, _) => k,
            };
            if !valid_label_key(key) {
                return Err(format!(
                    "unable to parse requirement: invalid label key \"{key}\""
                ));
            }
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            LabelRequirement::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::DoesNotExist(k) => get(k).is_none(),
            LabelRequirement::GreaterThan(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelRequirement::LessThan(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

fn split_word(part: &str, word: &str) -> Option<(String, String)> {
    let i = part.find(word)?;
    Some((
        part[..i].trim().to_string(),
        part[i + word.len()..].to_string(),
    ))
}

/// Whether a `matchLabels`/`matchExpressions` selector object (as in a Deployment's
/// `spec.selector`) selects the given labels.
pub fn selector_object_matches(selector: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object)
        && !ml.iter().all(|(k, v)| get(k) == v.as_str())
    {
        return false;
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: BTreeSet<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let ok = match e.get("operator").and_then(Value::as_str) {
                Some("In") => get(key).is_some_and(|v| values.contains(v)),
                Some("NotIn") => get(key).is_none_or(|v| !values.contains(v)),
                Some("Exists") => get(key).is_some(),
                Some("DoesNotExist") => get(key).is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed `fieldSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Field labels kube-apiserver accepts per resource, besides `metadata.name` and
/// `metadata.namespace` which every resource supports. `None` means any `involvedObject.*`-like
/// prefix list applies (see `prefixes`).
fn supported_fields(
    group: &str,
    resource: &str,
) -> (&'static [&'static str], &'static [&'static str]) {
    match (group, resource) {
        ("", "pods") => (
            &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            &[],
        ),
        ("", "events") => (
            &["reason", "reportingComponent", "source", "type"],
            &["involvedObject."],
        ),
        ("events.k8s.io", "events") => {
            (&["reason", "reportingController", "type"], &["regarding."])
        }
        ("", "secrets") => (&["type"], &[]),
        ("", "nodes") => (&["spec.unschedulable"], &[]),
        ("", "namespaces") => (&["status.phase"], &[]),
        ("apps", "replicasets") => (&["status.replicas"], &[]),
        ("batch", "jobs") => (&["status.successful"], &[]),
        _ => (&[], &[]),
    }
}

impl FieldSelector {
    /// Parses and checks each field label against what `group`/`resource` supports.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<FieldSelector, String> {
        let (fields, prefixes) = supported_fields(group, resource);
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || field == "metadata.namespace"
                || fields.contains(&field)
                || prefixes.iter().any(|p| field.starts_with(p));
            if !supported {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// A missing field compares as the empty string, so `spec.nodeName=` selects unscheduled pods.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(object, &r.field);
            (actual == r.value) != r.negated
        })
    }

    /// The name an equality requirement on `metadata.name` pins, if any (lets get-by-watch be cheap).
    pub fn pinned_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }
}

fn field_value(object: &Value, field: &str) -> String {
    let mut cur = object;
    for part in field.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "spec": {"nodeName": "node-1"}})
    }

    #[test]
    fn equality_and_set_based_label_selectors() {
        let o = obj(json!({"app": "demo", "tier": "web"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m("app=demo"));
        assert!(m("app==demo,tier!=db"));
        assert!(m("app in (demo, other)"));
        assert!(!m("app notin (demo)"));
        assert!(m("tier notin (db),app"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m(""));
        assert!(!m("app=other"));
        assert!(LabelSelector::parse("app in demo").is_err());
    }

    #[test]
    fn field_selectors_follow_supported_labels() {
        let o = obj(json!({}));
        assert!(
            FieldSelector::parse("spec.nodeName=node-1", "", "pods")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("spec.nodeName=", "", "pods")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse(
                "metadata.name=a,metadata.namespace!=x",
                "apps",
                "deployments"
            )
            .unwrap()
            .matches(&o)
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName=x", "apps", "deployments").unwrap_err(),
            "field label not supported: spec.nodeName"
        );
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}});
        assert!(
            FieldSelector::parse(
                "involvedObject.kind=Pod,involvedObject.name=p",
                "",
                "events"
            )
            .unwrap()
            .matches(&ev)
        );
    }

    #[test]
    fn selector_objects_match_labels() {
        let sel = json!({"matchLabels": {"app": "demo"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]});
        assert!(selector_object_matches(
            &sel,
            &json!({"app": "demo", "tier": "web"})
        ));
        assert!(!selector_object_matches(&sel, &json!({"app": "demo"})));
    }
}

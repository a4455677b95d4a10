//! What kube-apiserver does to an object between decoding and storage for the resources the
//! simulator runs: defaulting (the values `kubectl get -o yaml` shows that nobody wrote) and the
//! validation failures users actually hit (bad names, missing selector, selector not matching
//! the template). It is not the full validation of the real API.

use kausal_core::audit::StatusCause;
use serde_json::{Value, json};

use super::selector::selector_object_matches;
use super::status::cause;

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key.to_string()).or_insert(value);
    }
}

fn default_container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // `:latest` or no tag pulls Always, anything else IfNotPresent (core/v1 defaulting).
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t.to_string());
    let pull = if tag.is_none() || tag.as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(pull));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// PodSpec defaults (also applied inside workload templates).
pub fn default_pod_spec(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
}

fn default_template(spec: &mut Value) {
    if let Some(t) = spec.get_mut("template") {
        if let Some(ps) = t.get_mut("spec") {
            default_pod_spec(ps);
        }
        if let Some(meta) = t.get_mut("metadata") {
            // typed clients serialise an unset timestamp as null; the apiserver stores it so.
            set_default(meta, "creationTimestamp", Value::Null);
        }
    }
}

/// Applies the defaults of `group`/`resource` to an object being created or updated.
pub fn apply_defaults(group: &str, resource: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    match (group, resource) {
        ("", "pods") => default_pod_spec(spec),
        ("apps", "deployments") => {
            set_default(spec, "replicas", json!(1));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            if spec.pointer("/strategy/type").and_then(Value::as_str) == Some("RollingUpdate")
                && let Some(strategy) = spec.get_mut("strategy")
            {
                set_default(strategy, "rollingUpdate", json!({}));
                if let Some(ru) = strategy.get_mut("rollingUpdate") {
                    set_default(ru, "maxUnavailable", json!("25%"));
                    set_default(ru, "maxSurge", json!("25%"));
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            default_template(spec);
        }
        ("apps", "replicasets") => {
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "statefulsets") => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(spec);
        }
        ("apps", "daemonsets") => {
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            default_template(spec);
        }
        ("batch", "jobs") => {
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                set_default(t, "restartPolicy", json!("Never"));
            }
            default_template(spec);
        }
        ("", "services") => {
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "targetPort", port);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The status a freshly created object starts with (pods are `Pending` until scheduled).
pub fn initial_status(group: &str, resource: &str, obj: &mut Value) {
    match (group, resource) {
        ("", "pods") => {
            let status = obj
                .as_object_mut()
                .map(|m| m.entry("status").or_insert(json!({})));
            if let Some(status) = status {
                set_default(status, "phase", json!("Pending"));
                set_default(status, "qosClass", json!("BestEffort"));
            }
        }
        ("", "namespaces") => {
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Active"}));
                m.entry("spec")
                    .or_insert(json!({"finalizers": ["kubernetes"]}));
            }
        }
        _ => {}
    }
}

/// RFC 1123 subdomain, the rule for most object names.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

const DNS_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn check_containers(spec: Option<&Value>, path: &str, causes: &mut Vec<StatusCause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(cause(
            "FieldValueRequired",
            &format!("{path}.containers"),
            "Required value",
        )),
        Some(cs) if cs.is_empty() => causes.push(cause(
            "FieldValueRequired",
            &format!("{path}.containers"),
            "Required value",
        )),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{path}.containers[{i}].name"),
                        "Required value",
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{path}.containers[{i}].image"),
                        "Required value",
                    ));
                }
            }
        }
    }
}

/// Validation failures for an object about to be stored; empty when it is acceptable.
pub fn validate(group: &str, resource: &str, obj: &Value) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if !is_dns_subdomain(name) && resource != "events" {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {DNS_SUBDOMAIN_MESSAGE}"),
        ));
    }
    match (group, resource) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            match obj.pointer("/spec/selector") {
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.selector",
                    "Required value",
                )),
                Some(sel) => {
                    let labels = obj
                        .pointer("/spec/template/metadata/labels")
                        .cloned()
                        .unwrap_or(json!({}));
                    if !selector_object_matches(sel, &labels) {
                        causes.push(cause(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        format!("Invalid value: {labels}: `selector` does not match template `labels`"),
                    ));
                    }
                    check_containers(
                        obj.pointer("/spec/template/spec"),
                        "spec.template.spec",
                        &mut causes,
                    );
                }
            }
        }
        ("", "pods") => check_containers(obj.get("spec"), "spec", &mut causes),
        _ => {}
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
        && group == "apps"
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.replicas",
            format!("Invalid value: {r}: must be greater than or equal to 0"),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_kube_apiserver() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "alpine", "image": "alpine:3.16"}]}}}});
        apply_defaults("apps", "deployments", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let mut p = json!({"spec": {"containers": [{"name": "n", "image": "nginx"}]}});
        apply_defaults("", "pods", &mut p);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn validation_reports_selector_mismatch_and_bad_names() {
        let d = json!({"metadata": {"name": "Demo_1"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "a"}]}}}});
        let causes = validate("apps", "deployments", &d);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
        assert!(is_dns_subdomain("demo-7d9f.x"));
        assert!(!is_dns_subdomain("-demo"));
    }
}

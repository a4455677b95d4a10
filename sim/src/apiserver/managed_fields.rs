//! `metadata.managedFields` bookkeeping: which manager (fieldManager, else the user agent's
//! program name) last set which fields, in the `FieldsV1` notation (`f:` keys, `k:` list
//! elements by merge key, `v:` set members, `.` for the element itself).
//! It approximates server-side apply's ownership well enough for the records to look real;
//! it does not detect apply conflicts between managers.

use serde_json::{Map, Value, json};

/// System-owned metadata that never appears in a field set.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// The manager name for a request: `fieldManager` wins, else the user agent up to the first `/`.
pub fn manager_name(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let program = user_agent.split('/').next().unwrap_or_default().trim();
    if program.is_empty() {
        "unknown".to_string()
    } else {
        program.to_string()
    }
}

fn list_element_key(field: &str, element: &Value) -> Option<String> {
    let keys: &[&str] = match field {
        "ports" if element.get("containerPort").is_some() => &["containerPort", "protocol"],
        "ports" => &["port", "protocol"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "volumeMounts" => &["mountPath"],
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => &["name"],
        _ => return None,
    };
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = element.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    if m.is_empty() {
        return None;
    }
    Some(format!("k:{}", Value::Object(m)))
}

fn leaf() -> Value {
    Value::Object(Map::new())
}

/// Every field set in `value`, as a FieldsV1 tree.
fn fields_of(field: &str, value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(format!("f:{k}"), fields_of(k, v));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            if field == "finalizers" {
                let mut out = Map::new();
                for i in items {
                    out.insert(format!("v:{i}"), leaf());
                }
                return Value::Object(out);
            }
            let keyed: Option<Vec<(String, &Value)>> = items
                .iter()
                .map(|e| list_element_key(field, e).map(|k| (k, e)))
                .collect();
            match keyed {
                Some(elements) if !elements.is_empty() => {
                    let mut out = Map::new();
                    for (k, e) in elements {
                        let mut inner = match fields_of("", e) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        inner.insert(".".to_string(), leaf());
                        out.insert(k, Value::Object(inner));
                    }
                    Value::Object(out)
                }
                _ => leaf(),
            }
        }
        _ => leaf(),
    }
}

/// The fields of `new` that are added or changed relative to `old`, as a FieldsV1 tree.
fn changed(field: &str, old: Option<&Value>, new: &Value) -> Option<Value> {
    let Some(old) = old else {
        return Some(fields_of(field, new));
    };
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, v) in n {
                if let Some(c) = changed(k, o.get(k), v) {
                    out.insert(format!("f:{k}"), c);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        (Value::Array(o), Value::Array(n)) if field != "finalizers" => {
            let old_keys: Option<Vec<(String, &Value)>> = o
                .iter()
                .map(|e| list_element_key(field, e).map(|k| (k, e)))
                .collect();
            let new_keys: Option<Vec<(String, &Value)>> = n
                .iter()
                .map(|e| list_element_key(field, e).map(|k| (k, e)))
                .collect();
            match (old_keys, new_keys) {
                (Some(ok), Some(nk)) if !nk.is_empty() => {
                    let mut out = Map::new();
                    for (k, e) in nk {
                        let prior = ok.iter().find(|(ok, _)| *ok == k).map(|(_, v)| *v);
                        if let Some(Value::Object(mut c)) = changed("", prior, e) {
                            if prior.is_none() {
                                c.insert(".".to_string(), leaf());
                            }
                            out.insert(k, Value::Object(c));
                        }
                    }
                    if out.is_empty() {
                        None
                    } else {
                        Some(Value::Object(out))
                    }
                }
                _ => Some(leaf()),
            }
        }
        _ => Some(fields_of(field, new)),
    }
}

fn strip_untracked(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for k in UNTRACKED_METADATA {
                meta.remove(*k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    o
}

fn union(into: &mut Map<String, Value>, other: &Map<String, Value>) {
    for (k, v) in other {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => union(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Removes from `from` the fields in `taken`; returns whether anything is left.
fn subtract(from: &mut Map<String, Value>, taken: &Map<String, Value>) -> bool {
    for (k, t) in taken {
        let remove = match (from.get_mut(k), t) {
            (Some(Value::Object(f)), Value::Object(t)) if !t.is_empty() => {
                let left = subtract(f, t);
                !left || (f.len() == 1 && f.contains_key("."))
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if remove {
            from.remove(k);
        }
    }
    !from.is_empty()
}

/// What one write did, for the managedFields entry it produces.
pub struct FieldWrite<'a> {
    pub manager: &'a str,
    /// `Update` or `Apply`.
    pub operation: &'a str,
    pub api_version: &'a str,
    /// RFC 3339 with second precision, as the apiserver writes it.
    pub time: &'a str,
    /// `status` for status writes, empty otherwise.
    pub subresource: &'a str,
}

/// The managedFields of `new` after `write` changed it from `old` (None on create): the
/// changed fields join the writer's entry and leave every other manager's.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    write: &FieldWrite<'_>,
) -> Vec<Value> {
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_stripped = old.map(strip_untracked);
    let Some(Value::Object(changes)) = changed("", old_stripped.as_ref(), &strip_untracked(new))
    else {
        return entries;
    };
    let same_entry = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(write.manager)
            && e.get("operation").and_then(Value::as_str) == Some(write.operation)
            && e.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
                == write.subresource
    };
    entries.retain_mut(|e| {
        if same_entry(e) {
            return true;
        }
        match e.get_mut("fieldsV1") {
            Some(Value::Object(f)) => subtract(f, &changes),
            _ => true,
        }
    });
    let mut fields = entries
        .iter()
        .find(|e| same_entry(e))
        .and_then(|e| e.get("fieldsV1"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    union(&mut fields, &changes);
    entries.retain(|e| !same_entry(e));
    let mut entry = json!({
        "manager": write.manager,
        "operation": write.operation,
        "apiVersion": write.api_version,
        "time": write.time,
        "fieldsType": "FieldsV1",
        "fieldsV1": Value::Object(fields),
    });
    if !write.subresource.is_empty() {
        entry["subresource"] = json!(write.subresource);
    }
    entries.push(entry);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<'a>(manager: &'a str, subresource: &'a str) -> FieldWrite<'a> {
        FieldWrite {
            manager,
            operation: "Update",
            api_version: "apps/v1",
            time: "2024-01-01T00:00:00Z",
            subresource,
        }
    }

    #[test]
    fn manager_comes_from_field_manager_or_user_agent() {
        assert_eq!(
            manager_name(Some("kubectl-create"), "kubectl/v1.32"),
            "kubectl-create"
        );
        assert_eq!(
            manager_name(
                None,
                "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abc/system:serviceaccount:kube-system:deployment-controller"
            ),
            "kube-controller-manager"
        );
    }

    #[test]
    fn create_records_all_fields_with_keyed_containers() {
        let new = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "demo", "uid": "u", "labels": {"app": "demo"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "alpine", "image": "alpine:3.16"}]}}}});
        let mf = update_managed_fields(None, &new, &write("kubectl-create", ""));
        assert_eq!(mf.len(), 1);
        let f = &mf[0]["fieldsV1"];
        assert!(f["f:metadata"]["f:labels"]["f:app"].is_object());
        assert!(f["f:metadata"].get("f:uid").is_none());
        assert!(f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"alpine\"}"]["f:image"].is_object());
        assert!(
            f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"alpine\"}"]["."]
                .is_object()
        );
    }

    #[test]
    fn changed_fields_move_between_managers() {
        let old_obj =
            json!({"metadata": {"name": "demo"}, "spec": {"replicas": 2, "paused": false}});
        let mf = update_managed_fields(None, &old_obj, &write("kubectl-create", ""));
        let mut old = old_obj.clone();
        old["metadata"]["managedFields"] = json!(mf);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(4);
        let mf = update_managed_fields(Some(&old), &new, &write("kubectl", ""));
        assert_eq!(mf.len(), 2);
        assert!(mf[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert!(mf[0]["fieldsV1"]["f:spec"]["f:paused"].is_object());
        assert_eq!(mf[1]["manager"], "kubectl");
        assert!(mf[1]["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    }

    #[test]
    fn status_writes_get_their_own_entry() {
        let old = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        let new = json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let mf = update_managed_fields(Some(&old), &new, &write("kubelet", "status"));
        assert_eq!(mf[0]["subresource"], "status");
        assert!(
            mf[0]["fieldsV1"]["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"]["f:status"]
                .is_object()
        );
        assert!(update_managed_fields(Some(&old), &old, &write("kubelet", "status")).is_empty());
    }
}

//! The patch formats a PATCH request may carry: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and Kubernetes' strategic merge patch for the lists kubectl touches (merged by
//! their merge key instead of replaced). Pure functions over `serde_json::Value`.
//! Strategic merge knows merge keys by field name only, without OpenAPI schemas: enough for
//! built-in workloads, not for arbitrary custom resources (which the real apiserver refuses).

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Unescapes one JSON pointer token (`~1` → `/`, `~0` → `~`).
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}: must start with '/'"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("doc is missing path: {path:?}"))?,
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("invalid array index {t:?} in {path:?}"))?;
                a.get_mut(i).ok_or_else(|| {
                    format!("doc is missing path: {path:?}: index {i} out of range")
                })?
            }
            _ => return Err(format!("doc is missing path: {path:?}")),
        };
    }
    Ok(cur)
}

fn pointer_get(doc: &Value, path: &str) -> Result<Value, String> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| format!("doc is missing path: {path:?}"))
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let tokens = split_pointer(path)?;
    let (last, parents) = tokens
        .split_last()
        .ok_or("cannot remove the whole document")?;
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}: missing value")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("unable to remove index {i}: out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let tokens = split_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("unable to insert at index {i}: out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

/// RFC 6902 JSON patch. Errors read like the apiserver's (`doc is missing path: ...`).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("json patch must be an array of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("json patch operation is missing \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("json patch operation is missing \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("json patch {name} operation is missing \"value\""))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("json patch {name} operation is missing \"from\""))
        };
        match name {
            "add" => pointer_add(&mut doc, path, value()?)?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, path)?;
                pointer_add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = pointer_remove(&mut doc, from()?)?;
                pointer_add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = pointer_get(&doc, from()?)?;
                pointer_add(&mut doc, path, v)?;
            }
            "test" => {
                if pointer_get(&doc, path)? != value()? {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    *target = doc;
    Ok(())
}

/// The merge key of a list field under strategic merge, by field name (and, for `ports`, by
/// what the elements carry: container ports merge on `containerPort`, service ports on `port`).
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => {
            if sample.and_then(|s| s.get("containerPort")).is_some() {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Lists of scalars merged as sets instead of replaced.
fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch: like merge patch, except known lists merge element-wise by key,
/// and the directives `$patch` (replace/delete/merge), `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    strategic_merge_object(target, patch)
}

fn strategic_merge_object(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replacement = p.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("Unknown patch type: {other} in map")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(retain) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (t.get_mut(field), v.as_array()) {
                list.retain(|e| !remove.contains(e));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Array(items) => {
                let current = t
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged = strategic_merge_list(k, current, items)?;
                t.insert(k.clone(), Value::Array(merged));
            }
            Value::Object(_) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic_merge_object(slot, v)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(())
}

fn strategic_merge_list(
    field: &str,
    mut current: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, String> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .collect());
    }
    if is_primitive_merge_list(field) {
        for e in patch {
            if !current.contains(e) {
                current.push(e.clone());
            }
        }
        return Ok(current);
    }
    let sample = patch.first().or(current.first());
    let Some(key) = merge_key(field, sample) else {
        return Ok(patch.to_vec());
    };
    for element in patch {
        let Some(id) = element.get(key) else {
            return Err(format!(
                "map: {element} does not contain declared merge key: {key}"
            ));
        };
        let position = current.iter().position(|c| c.get(key) == Some(id));
        let is_delete = element.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, is_delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge_object(&mut current[i], element)?,
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge_object(&mut fresh, element)?;
                current.push(fresh);
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let mut t = json!({"spec": {"replicas": 1, "list": [1, 2]}});
        json_patch(
            &mut t,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3},
                    {"op": "add", "path": "/spec/list/-", "value": 9},
                    {"op": "remove", "path": "/spec/list/0"},
                    {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
                    {"op": "test", "path": "/spec/copy", "value": 3}]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"replicas": 3, "list": [2, 9], "copy": 3}})
        );
        let before = t.clone();
        let err = json_patch(&mut t, &json!([{"op": "replace", "path": "/spec/replicas", "value": 5}, {"op": "remove", "path": "/nope"}])).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        assert_eq!(t, before, "a failed patch leaves the object untouched");
    }

    #[test]
    fn strategic_merge_sets_image_by_container_name() {
        let mut t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "alpine", "image": "alpine:3.16", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}]}}}});
        strategic_merge_patch(&mut t, &json!({"spec": {"template": {"spec": {"containers": [{"name": "alpine", "image": "alpine:3.17"}]}}}})).unwrap();
        let cs = &t["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "alpine:3.17");
        assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
        assert_eq!(cs[1]["image"], "busybox");
    }

    #[test]
    fn strategic_merge_directives() {
        let mut t = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                           "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                           "finalizers": ["a"], "args": ["x"]});
        strategic_merge_patch(
            &mut t,
            &json!({"env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
                    "$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
                    "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                    "finalizers": ["b"], "args": ["y"]}),
        )
        .unwrap();
        assert_eq!(
            t["env"],
            json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(t["strategy"], json!({"type": "Recreate"}));
        assert_eq!(t["finalizers"], json!(["a", "b"]));
        assert_eq!(
            t["args"],
            json!(["y"]),
            "lists without a merge key are replaced"
        );
        let err = strategic_merge_patch(&mut t, &json!({"env": [{"value": "x"}]})).unwrap_err();
        assert!(err.contains("merge key: name"), "{err}");
    }

    #[test]
    fn service_ports_merge_on_port() {
        let mut t = json!({"ports": [{"port": 80, "name": "http"}, {"port": 443}]});
        strategic_merge_patch(
            &mut t,
            &json!({"ports": [{"port": 80, "targetPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(
            t["ports"][0],
            json!({"port": 80, "name": "http", "targetPort": 8080})
        );
        assert_eq!(t["ports"].as_array().unwrap().len(), 2);
    }
}

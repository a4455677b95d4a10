//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which is how
//! `kubectl get` asks for its columns. The columns follow kube-apiserver's printers for the
//! resources kausal's scenarios show; every other resource gets Name and Age like a custom
//! resource without printer columns. Pure functions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;

/// Whether the Accept header asks for a Table (kubectl lists it first, JSON as the fallback).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .any(|part| part.contains("as=Table") && part.contains("g=meta.k8s.io"))
}

/// `includeObject` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// kube's `duration.HumanDuration`: "45s", "3m12s", "17m", "5h3m", "2d4h", "12d", "2y".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rem}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let rem = minutes % 60;
        return if rem == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rem}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rem = hours % 24;
        return if rem == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{rem}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: Option<&Value>, now: DateTime<Utc>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".to_string(),
    }
}

fn column(name: &str, kind: &str, format: &str, priority: i64) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

fn columns_and_cells(
    rt: &ResourceType,
    obj: &Value,
    now: DateTime<Utc>,
) -> (Vec<Value>, Vec<Value>) {
    let name = text(obj.pointer("/metadata/name"));
    let created = age(obj.pointer("/metadata/creationTimestamp"), now);
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses.iter().map(|s| int(s.get("restartCount"))).sum();
            let waiting = statuses.iter().find_map(|s| {
                s.pointer("/state/waiting/reason")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let terminating = obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let status = if terminating {
                "Terminating".to_string()
            } else {
                waiting.unwrap_or_else(|| text(obj.pointer("/status/phase")))
            };
            let ip = obj
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_string();
            let node = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_string();
            (
                vec![
                    column("Name", "string", "name", 0),
                    column("Ready", "string", "", 0),
                    column("Status", "string", "", 0),
                    column("Restarts", "string", "", 0),
                    column("Age", "string", "", 0),
                    column("IP", "string", "", 1),
                    column("Node", "string", "", 1),
                ],
                vec![
                    json!(name),
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                    json!(created),
                    json!(ip),
                    json!(node),
                ],
            )
        }
        ("apps", "deployments") => {
            let desired = int(obj.pointer("/spec/replicas"));
            (
                vec![
                    column("Name", "string", "name", 0),
                    column("Ready", "string", "", 0),
                    column("Up-to-date", "integer", "", 0),
                    column("Available", "integer", "", 0),
                    column("Age", "string", "", 0),
                    column("Containers", "string", "", 1),
                    column("Images", "string", "", 1),
                ],
                vec![
                    json!(name),
                    json!(format!(
                        "{}/{desired}",
                        int(obj.pointer("/status/readyReplicas"))
                    )),
                    json!(int(obj.pointer("/status/updatedReplicas"))),
                    json!(int(obj.pointer("/status/availableReplicas"))),
                    json!(created),
                    json!(containers(obj, "name")),
                    json!(containers(obj, "image")),
                ],
            )
        }
        ("apps", "replicasets") => (
            vec![
                column("Name", "string", "name", 0),
                column("Desired", "integer", "", 0),
                column("Current", "integer", "", 0),
                column("Ready", "integer", "", 0),
                column("Age", "string", "", 0),
            ],
            vec![
                json!(name),
                json!(int(obj.pointer("/spec/replicas"))),
                json!(int(obj.pointer("/status/replicas"))),
                json!(int(obj.pointer("/status/readyReplicas"))),
                json!(created),
            ],
        ),
        ("", "events") | ("events.k8s.io", "events") => {
            let core = obj.get("involvedObject").or(obj.get("regarding"));
            let kind = text(core.and_then(|o| o.get("kind"))).to_lowercase();
            let object = format!("{kind}/{}", text(core.and_then(|o| o.get("name"))));
            let last = obj
                .get("lastTimestamp")
                .filter(|v| !v.is_null())
                .or(obj.pointer("/series/lastObservedTime"))
                .or(obj.get("eventTime").filter(|v| !v.is_null()))
                .or(obj.get("deprecatedLastTimestamp"));
            let message = text(obj.get("message").or(obj.get("note")));
            (
                vec![
                    column("Last Seen", "string", "", 0),
                    column("Type", "string", "", 0),
                    column("Reason", "string", "", 0),
                    column("Object", "string", "", 0),
                    column("Message", "string", "", 0),
                ],
                vec![
                    json!(age(last, now)),
                    json!(text(obj.get("type"))),
                    json!(text(obj.get("reason"))),
                    json!(object),
                    json!(message),
                ],
            )
        }
        ("", "namespaces") => (
            vec![
                column("Name", "string", "name", 0),
                column("Status", "string", "", 0),
                column("Age", "string", "", 0),
            ],
            vec![
                json!(name),
                json!(text(obj.pointer("/status/phase"))),
                json!(created),
            ],
        ),
        ("", "nodes") => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                })
                .map(|c| {
                    if c.get("status").and_then(Value::as_str) == Some("True") {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            (
                vec![
                    column("Name", "string", "name", 0),
                    column("Status", "string", "", 0),
                    column("Roles", "string", "", 0),
                    column("Age", "string", "", 0),
                    column("Version", "string", "", 0),
                ],
                vec![
                    json!(name),
                    json!(ready),
                    json!("<none>"),
                    json!(created),
                    json!(text(obj.pointer("/status/nodeInfo/kubeletVersion"))),
                ],
            )
        }
        _ => (
            vec![
                column("Name", "string", "name", 0),
                column("Age", "string", "", 0),
            ],
            vec![json!(name), json!(created)],
        ),
    }
}

fn containers(obj: &Value, field: &str) -> String {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A `meta.k8s.io/v1` Table of `items` (one row each).
pub fn table(
    rt: &ResourceType,
    items: &[Value],
    list_metadata: Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let mut columns = None;
    let mut rows = Vec::with_capacity(items.len());
    for obj in items {
        let (cols, cells) = columns_and_cells(rt, obj, now);
        columns.get_or_insert(cols);
        let mut row = json!({"cells": cells});
        match include {
            IncludeObject::None => {}
            IncludeObject::Metadata => row["object"] = partial_metadata(obj),
            IncludeObject::Object => row["object"] = obj.clone(),
        }
        rows.push(row);
    }
    let columns = columns.unwrap_or_else(|| columns_and_cells(rt, &json!({}), now).0);
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(17 * 60), "17m");
        assert_eq!(human_duration(5 * 3600 + 180), "5h3m");
        assert_eq!(human_duration(52 * 3600), "2d4h");
    }

    #[test]
    fn deployment_rows_show_readiness() {
        let r = Registry::builtin();
        let rt = r.lookup("apps", "v1", "deployments").unwrap();
        let now = Utc::now();
        let d = json!({"metadata": {"name": "demo", "creationTimestamp": (now - chrono::Duration::seconds(30)).to_rfc3339()},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "alpine", "image": "alpine:3.16"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
        let t = table(
            rt,
            &[d],
            json!({"resourceVersion": "5"}),
            IncludeObject::Metadata,
            now,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Ready");
        assert_eq!(t["rows"][0]["cells"][1], "1/2");
        assert_eq!(t["rows"][0]["cells"][4], "30s");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}

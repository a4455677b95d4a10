//! The two faces of an Event: core/v1 (stored form) and events.k8s.io/v1 (a view of the same
//! object). Field mapping follows kube-apiserver's conversion: `regarding`↔`involvedObject`,
//! `note`↔`message`, `reportingController`↔`reportingComponent`, `deprecatedSource`↔`source`,
//! `deprecated{First,Last}Timestamp`/`deprecatedCount`↔`{first,last}Timestamp`/`count`.
//! (The real conversion does not copy `reportingController` into `source.component`; an Event
//! written through events.k8s.io shows `source: {}` in the core view, as recordings confirm.)

use serde_json::{Map, Value, json};

const CORE_TO_V1: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "action",
    "reason",
    "type",
    "related",
    "reportingInstance",
];

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// Core/v1 Event → events.k8s.io/v1 Event.
pub fn core_to_events_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for k in SHARED {
        if let Some(v) = core.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    out.entry("eventTime").or_insert(Value::Null);
    for (from, to) in CORE_TO_V1 {
        if let Some(v) = core.get(*from).filter(|v| !is_empty_value(v)) {
            out.insert((*to).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// events.k8s.io/v1 Event → core/v1 Event (the stored form).
pub fn events_v1_to_core(v1: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    for k in SHARED {
        if let Some(v) = v1.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    for (core, view) in CORE_TO_V1 {
        if let Some(v) = v1.get(*view) {
            out.insert((*core).to_string(), v.clone());
        }
    }
    out.entry("involvedObject").or_insert(json!({}));
    out.entry("source").or_insert(json!({}));
    out.entry("firstTimestamp").or_insert(Value::Null);
    out.entry("lastTimestamp").or_insert(Value::Null);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_event_round_trips_through_the_core_view() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "default"},
            "eventTime": "2021-05-19T09:42:58.638469Z", "action": "Binding", "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default", "apiVersion": "v1"},
            "note": "Successfully assigned default/p to node-1", "type": "Normal",
            "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-node-0"});
        let core = events_v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "Successfully assigned default/p to node-1");
        assert_eq!(core["reportingComponent"], "default-scheduler");
        assert_eq!(core["source"], json!({}));
        assert_eq!(core["firstTimestamp"], Value::Null);
        assert_eq!(core_to_events_v1(&core), v1);
    }

    #[test]
    fn kubelet_event_shows_deprecated_fields_in_the_v1_view() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Pulling", "message": "Pulling image",
            "source": {"component": "kubelet", "host": "node-1"}, "count": 1,
            "firstTimestamp": "2021-05-19T09:42:59Z", "lastTimestamp": "2021-05-19T09:42:59Z", "type": "Normal"});
        let v1 = core_to_events_v1(&core);
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 1);
        assert_eq!(v1["note"], "Pulling image");
        assert_eq!(v1["eventTime"], Value::Null);
        assert!(v1.get("reportingController").is_none());
    }
}

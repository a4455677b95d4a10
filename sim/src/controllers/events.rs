//! Event recording as the components do it: controllers and kubelets write core/v1 Events
//! (second-precision first/lastTimestamp, `source.component`/`source.host`, repeats counted by
//! patching `count`), the scheduler writes events.k8s.io/v1 Events (microsecond `eventTime`,
//! `reportingController`, repeats recorded in `series`). Recording never fails the caller: a
//! lost Event is logged, as client-go's broadcaster does.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::client::{ApiClient, PatchType, resources};
use crate::clock::Clock;

use super::meta;

/// Event type `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Event names are `<involved object>.<unix nanos in hex>`, as client-go makes them.
pub fn event_name(involved_name: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("{involved_name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default())
}

/// Builds a core/v1 Event as a controller or kubelet first posts it.
#[allow(clippy::too_many_arguments)] // one argument per wire field
pub fn core_event(
    involved: &Value,
    field_path: Option<&str>,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut involved_object = meta::object_reference(involved);
    if let Some(fp) = field_path {
        involved_object["fieldPath"] = json!(fp);
    }
    let mut source = json!({"component": component});
    if let Some(h) = host {
        source["host"] = json!(h);
    }
    let namespace = match meta::namespace(involved) {
        "" => "default",
        ns => ns,
    };
    let stamp = meta::time_seconds(now);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(meta::name(involved), now), "namespace": namespace},
        "involvedObject": involved_object,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": event_type.as_str(),
        "eventTime": null,
        "reportingComponent": "",
        "reportingInstance": "",
    })
}

/// Builds an events.k8s.io/v1 Event as the scheduler first posts it.
#[allow(clippy::too_many_arguments)] // one argument per wire field
pub fn events_v1_event(
    regarding: &Value,
    event_type: EventType,
    reason: &str,
    action: &str,
    note: &str,
    reporting_controller: &str,
    reporting_instance: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": event_name(meta::name(regarding), now), "namespace": meta::namespace(regarding)},
        "eventTime": meta::time_micros(now),
        "reportingController": reporting_controller,
        "reportingInstance": reporting_instance,
        "action": action,
        "reason": reason,
        "regarding": meta::object_reference(regarding),
        "note": note,
        "type": event_type.as_str(),
    })
}

#[derive(Clone, Debug)]
struct Recorded {
    namespace: String,
    name: String,
    count: i64,
}

/// Posts core/v1 Events for one component (and one host, for kubelets), counting repeats.
pub struct EventRecorder {
    client: ApiClient,
    component: String,
    host: Option<String>,
    clock: Clock,
    recorded: Mutex<HashMap<String, Recorded>>,
}

impl EventRecorder {
    pub fn new(client: ApiClient, component: &str, host: Option<&str>, clock: Clock) -> EventRecorder {
        EventRecorder {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            clock,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    pub async fn normal(&self, involved: &Value, reason: &str, message: &str) {
        self.record(involved, None, EventType::Normal, reason, message).await;
    }

    /// Records one occurrence; a repeat of the same reason and message about the same object
    /// (and field) bumps `count` and `lastTimestamp` on the existing Event.
    pub async fn record(&self, involved: &Value, field_path: Option<&str>, event_type: EventType, reason: &str, message: &str) {
        let now = self.clock.now();
        let key = format!("{}|{}|{}|{}|{}", meta::uid(involved), field_path.unwrap_or_default(), event_type.as_str(), reason, message);
        let previous = self.recorded.lock().ok().and_then(|r| r.get(&key).cloned());
        if let Some(previous) = previous {
            let count = previous.count + 1;
            let patch = json!({"count": count, "lastTimestamp": meta::time_seconds(now), "message": message});
            match self.client.patch(&resources::EVENTS, Some(&previous.namespace), &previous.name, PatchType::Merge, &patch).await {
                Ok(_) => {
                    if let Ok(mut r) = self.recorded.lock() {
                        r.insert(key, Recorded { count, ..previous });
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e, reason, "patching a repeated Event failed; posting a new one"),
            }
        }
        let event = core_event(involved, field_path, event_type, reason, message, &self.component, self.host.as_deref(), now);
        let namespace = event["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        match self.client.create(&resources::EVENTS, Some(&namespace), &event).await {
            Ok(created) => {
                if let Ok(mut r) = self.recorded.lock() {
                    if r.len() > 10_000 {
                        r.clear();
                    }
                    r.insert(key, Recorded { namespace, name: meta::name(&created).to_string(), count: 1 });
                }
            }
            Err(e) => tracing::warn!(error = %e, component = %self.component, reason, "recording an Event failed"),
        }
    }
}

/// Posts events.k8s.io/v1 Events for the scheduler, recording repeats in `series`.
pub struct EventsV1Recorder {
    client: ApiClient,
    reporting_controller: String,
    reporting_instance: String,
    clock: Clock,
    recorded: Mutex<HashMap<String, Recorded>>,
}

impl EventsV1Recorder {
    pub fn new(client: ApiClient, reporting_controller: &str, reporting_instance: &str, clock: Clock) -> EventsV1Recorder {
        EventsV1Recorder {
            client,
            reporting_controller: reporting_controller.to_string(),
            reporting_instance: reporting_instance.to_string(),
            clock,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    pub async fn record(&self, regarding: &Value, event_type: EventType, reason: &str, action: &str, note: &str) {
        let now = self.clock.now();
        let key = format!("{}|{}|{}|{}", meta::uid(regarding), reason, action, note);
        let previous = self.recorded.lock().ok().and_then(|r| r.get(&key).cloned());
        if let Some(previous) = previous {
            // The first repeat starts a series at count 1, as the events/v1 recorder does.
            let count = previous.count;
            let patch = json!({"series": {"count": count, "lastObservedTime": meta::time_micros(now)}});
            match self.client.patch(&resources::EVENTS_V1, Some(&previous.namespace), &previous.name, PatchType::Merge, &patch).await {
                Ok(_) => {
                    if let Ok(mut r) = self.recorded.lock() {
                        r.insert(key, Recorded { count: count + 1, ..previous });
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e, reason, "patching an Event series failed; posting a new one"),
            }
        }
        let event = events_v1_event(regarding, event_type, reason, action, note, &self.reporting_controller, &self.reporting_instance, now);
        let namespace = meta::namespace(regarding).to_string();
        match self.client.create(&resources::EVENTS_V1, Some(&namespace), &event).await {
            Ok(created) => {
                if let Ok(mut r) = self.recorded.lock() {
                    if r.len() > 10_000 {
                        r.clear();
                    }
                    r.insert(key, Recorded { namespace, name: meta::name(&created).to_string(), count: 1 });
                }
            }
            Err(e) => tracing::warn!(error = %e, reason, "recording an events.k8s.io Event failed"),
        }
    }

    /// Forgets the series about `regarding` (after a pod is finally scheduled).
    pub fn forget(&self, regarding_uid: &str) {
        if let Ok(mut r) = self.recorded.lock() {
            r.retain(|k, _| !k.starts_with(&format!("{regarding_uid}|")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "5"}})
    }

    #[test]
    fn core_events_look_like_kubelet_events() {
        let now = meta::parse_time("2021-05-19T09:42:59.202718Z").unwrap_or_default();
        let e = core_event(&pod(), Some("spec.containers{alpine}"), EventType::Normal, "Pulling", "Pulling image \"alpine:3.16\"", "kubelet", Some("node-1"), now);
        assert_eq!(e["firstTimestamp"], "2021-05-19T09:42:59Z");
        assert_eq!(e["source"]["host"], "node-1");
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{alpine}");
        assert_eq!(e["eventTime"], Value::Null);
        assert!(e["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("p.")));
    }

    #[test]
    fn events_v1_carry_microsecond_event_time() {
        let now = meta::parse_time("2021-05-19T09:42:58.638469Z").unwrap_or_default();
        let e = events_v1_event(&pod(), EventType::Normal, "Scheduled", "Binding", "Successfully assigned default/p to n", "default-scheduler", "default-scheduler-x", now);
        assert_eq!(e["eventTime"], "2021-05-19T09:42:58.638469Z");
        assert_eq!(e["regarding"]["kind"], "Pod");
        assert_eq!(e["reportingController"], "default-scheduler");
    }

    #[test]
    fn event_names_encode_nanoseconds_in_hex() {
        let now = meta::parse_time("2021-05-19T09:42:58.640117041Z").unwrap_or_default();
        let name = event_name("px", now);
        assert_eq!(name, format!("px.{:x}", 1621417378640117041_i64));
    }
}

//! From an Event object (core/v1 or events.k8s.io/v1, as JSON) to an Event activity, and the
//! rules that make each occurrence count once: its identity (uid and count), its time (eventTime,
//! else lastTimestamp, else firstTimestamp, keeping sub-second digits) and whether a watermark
//! or the start-up age limit says it was already handled. Pure: time is passed in.

use chrono::{DateTime, Utc};
use kausal_core::activity::{Activity, ActivityDetail, EventActivity, Nanos, nanos_of};
use kausal_core::object::{ObjectKey, ObjectRef, resource_of};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which Event API is watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum EventApi {
    /// `v1` `Event` (core group).
    #[default]
    #[serde(rename = "v1")]
    CoreV1,
    /// `events.k8s.io/v1` `Event`.
    #[serde(rename = "events.k8s.io/v1")]
    EventsV1,
}

/// Newest handled Event time and the last resourceVersion seen, kept in the cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    pub time: Nanos,
    #[serde(default)]
    pub resource_version: String,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn time_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    str_at(v, pointer).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// How many times the Event occurred so far.
pub fn count_of(event: &Value, api: EventApi) -> i32 {
    let n = match api {
        EventApi::CoreV1 => event.get("count").and_then(Value::as_i64).or_else(|| event.pointer("/series/count").and_then(Value::as_i64)),
        EventApi::EventsV1 => event
            .pointer("/series/count")
            .and_then(Value::as_i64)
            .or_else(|| event.get("deprecatedCount").and_then(Value::as_i64)),
    };
    n.and_then(|n| i32::try_from(n).ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// When this occurrence happened: for a repeated Event the series' last observation, else
/// eventTime, else lastTimestamp, else firstTimestamp.
pub fn event_time(event: &Value, api: EventApi) -> Option<Nanos> {
    let (last, first) = match api {
        EventApi::CoreV1 => ("/lastTimestamp", "/firstTimestamp"),
        EventApi::EventsV1 => ("/deprecatedLastTimestamp", "/deprecatedFirstTimestamp"),
    };
    let series = if count_of(event, api) > 1 { time_at(event, "/series/lastObservedTime") } else { None };
    series
        .or_else(|| time_at(event, "/eventTime"))
        .or_else(|| time_at(event, last))
        .or_else(|| time_at(event, first))
        .or_else(|| time_at(event, "/metadata/creationTimestamp"))
        .map(nanos_of)
}

/// Identity of one occurrence: the Event's uid (else namespace/name) and its count.
pub fn occurrence_id(event: &Value, api: EventApi) -> String {
    let id = str_at(event, "/metadata/uid").map(str::to_string).unwrap_or_else(|| {
        format!("{}/{}", str_at(event, "/metadata/namespace").unwrap_or(""), str_at(event, "/metadata/name").unwrap_or(""))
    });
    format!("{id}/{}", count_of(event, api))
}

/// Whether an occurrence at `time` is new: newer than the watermark when there is one (equal
/// times are left to the per-occurrence record), else not older than `max_age` before `now`.
pub fn is_new(time: Nanos, watermark: Option<&Watermark>, now: Nanos, max_age_nanos: i64) -> bool {
    match watermark {
        Some(w) if w.time > 0 => time >= w.time,
        _ => time >= now.saturating_sub(max_age_nanos),
    }
}

fn object_of(cluster: &str, r: &Value) -> Option<ObjectRef> {
    let kind = str_at(r, "/kind")?;
    let name = str_at(r, "/name")?;
    let api_version = str_at(r, "/apiVersion").unwrap_or("v1");
    let (group, resource) = resource_of(api_version, kind);
    Some(ObjectRef {
        key: ObjectKey::new(cluster, group, resource, str_at(r, "/namespace").unwrap_or(""), name),
        uid: str_at(r, "/uid").map(str::to_string),
        kind: Some(kind.to_string()),
        api_version: Some(api_version.to_string()),
    })
}

/// The activity of one Event occurrence, or `None` when it names no object or has no time.
pub fn to_activity(cluster: &str, event: &Value, api: EventApi) -> Option<Activity> {
    let (regarding, related, reason, message, source, host) = match api {
        EventApi::CoreV1 => (
            event.get("involvedObject")?,
            event.get("related"),
            str_at(event, "/reason"),
            str_at(event, "/message"),
            str_at(event, "/source/component").or_else(|| str_at(event, "/reportingComponent")),
            str_at(event, "/source/host").or_else(|| str_at(event, "/reportingInstance")),
        ),
        EventApi::EventsV1 => (
            event.get("regarding")?,
            event.get("related"),
            str_at(event, "/reason"),
            str_at(event, "/note"),
            str_at(event, "/reportingController").or_else(|| str_at(event, "/deprecatedSource/component")),
            str_at(event, "/reportingInstance").or_else(|| str_at(event, "/deprecatedSource/host")),
        ),
    };
    let object = object_of(cluster, regarding)?;
    let time = event_time(event, api)?;
    Some(Activity {
        object,
        start: time,
        end: time,
        detail: ActivityDetail::Event(EventActivity {
            reason: reason.unwrap_or("").to_string(),
            message: message.unwrap_or("").to_string(),
            event_type: str_at(event, "/type").unwrap_or("Normal").to_string(),
            source: source.unwrap_or("").to_string(),
            source_host: host.unwrap_or("").to_string(),
            count: count_of(event, api),
            event_name: format!("{}/{}", str_at(event, "/metadata/namespace").unwrap_or(""), str_at(event, "/metadata/name").unwrap_or("")),
            event_uid: str_at(event, "/metadata/uid").unwrap_or("").to_string(),
            action: str_at(event, "/action").unwrap_or("").to_string(),
            related: related.and_then(|r| object_of(cluster, r)),
        }),
        links: Vec::new(),
        change: None,
        cause: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core(count: i64, last: &str) -> Value {
        json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"demo.1","namespace":"default","uid":"e1","resourceVersion":"9"},
            "involvedObject":{"apiVersion":"apps/v1","kind":"Deployment","namespace":"default","name":"demo","uid":"d1"},
            "reason":"ScalingReplicaSet","message":"Scaled up","type":"Normal","source":{"component":"deployment-controller"},
            "count":count,"firstTimestamp":"2024-05-01T10:00:00Z","lastTimestamp":last})
    }

    #[test]
    fn core_event_maps_and_count_bumps_are_new_occurrences() {
        let a = to_activity("c", &core(1, "2024-05-01T10:00:00Z"), EventApi::CoreV1).unwrap();
        assert_eq!(a.object.key, ObjectKey::new("c", "apps", "deployments", "default", "demo"));
        let ActivityDetail::Event(e) = &a.detail else { panic!() };
        assert_eq!((e.reason.as_str(), e.source.as_str(), e.count, e.event_name.as_str()), ("ScalingReplicaSet", "deployment-controller", 1, "default/demo.1"));
        assert_ne!(occurrence_id(&core(1, "x"), EventApi::CoreV1), occurrence_id(&core(2, "x"), EventApi::CoreV1));
        let later = to_activity("c", &core(2, "2024-05-01T10:05:00Z"), EventApi::CoreV1).unwrap();
        assert!(later.start > a.start);
    }

    #[test]
    fn time_prefers_event_time_with_micro_precision() {
        let mut e = core(1, "2024-05-01T10:00:07Z");
        assert_eq!(event_time(&e, EventApi::CoreV1), Some(nanos_of(DateTime::parse_from_rfc3339("2024-05-01T10:00:07Z").unwrap().with_timezone(&Utc))));
        e["eventTime"] = json!("2024-05-01T10:00:05.123456Z");
        let t = event_time(&e, EventApi::CoreV1).unwrap();
        assert_eq!(t % 1_000_000_000, 123_456_000);
        e["lastTimestamp"] = Value::Null;
        e["eventTime"] = Value::Null;
        assert_eq!(event_time(&e, EventApi::CoreV1), Some(nanos_of(DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z").unwrap().with_timezone(&Utc))));
    }

    #[test]
    fn events_v1_maps_regarding_and_series() {
        let e = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"p.1","namespace":"ns","uid":"u"},
            "regarding":{"apiVersion":"v1","kind":"Pod","namespace":"ns","name":"p"},"reason":"BackOff","note":"Back-off",
            "type":"Warning","reportingController":"kubelet","reportingInstance":"node-1",
            "eventTime":"2024-05-01T10:00:00.5Z","series":{"count":3,"lastObservedTime":"2024-05-01T10:01:00.25Z"}});
        let a = to_activity("c", &e, EventApi::EventsV1).unwrap();
        let ActivityDetail::Event(ev) = &a.detail else { panic!() };
        assert_eq!((ev.count, ev.source.as_str(), ev.message.as_str()), (3, "kubelet", "Back-off"));
        assert_eq!(a.start % 1_000_000_000, 250_000_000);
        assert_eq!(a.object.key.resource, "pods");
    }

    #[test]
    fn watermark_and_age_decide_at_start() {
        let w = Watermark { time: 100, resource_version: "5".into() };
        assert!(!is_new(99, Some(&w), 1000, 10));
        assert!(is_new(100, Some(&w), 1000, 10));
        assert!(!is_new(989, None, 1000, 10));
        assert!(is_new(990, None, 1000, 10));
    }
}

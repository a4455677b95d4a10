//! `audit.k8s.io` wire types: `Event` and `EventList` exactly as kube-apiserver's webhook and
//! log backends write them (v1, and v1beta1 which adds `metadata`/`timestamp`).
//! Decoding is tolerant of unknown fields, as any consumer of a versioned wire format must be;
//! request and response bodies stay raw JSON so that only the parts a component needs are parsed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `meta/v1` `MicroTime` on the wire: RFC 3339 with exactly six fractional digits, as the
/// apiserver writes it (chrono's default would drop trailing zeros).
pub mod micro_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

/// `apiVersion` values kausal accepts for audit events.
pub const API_VERSIONS: [&str; 2] = ["audit.k8s.io/v1", "audit.k8s.io/v1beta1"];

/// Audit level of a policy rule or an event (`audit.k8s.io/v1` `Level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    #[default]
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// Stage of request handling at which an audit event was generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The object an audited request is about (`audit.k8s.io/v1` `ObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// `meta/v1` `StatusCause`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// `meta/v1` `StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_after_seconds: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// `meta/v1` `Status`, as carried in `responseStatus` and returned by the API server on errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// "Success" or "Failure"; often empty inside audit events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default)]
    pub code: i32,
}

/// One `audit.k8s.io` `Event`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// v1beta1 only: object metadata of the event itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// v1beta1 only: time the event was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI", default)]
    pub request_uri: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Box<RawValue>>,
    /// Missing in some recordings; then `stageTimestamp` stands in for it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "micro_time")]
    pub request_received_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "micro_time")]
    pub stage_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Event {
    /// When the request was received, falling back to the stage time and the v1beta1 timestamp.
    pub fn received_at(&self) -> Option<DateTime<Utc>> {
        self.request_received_timestamp
            .or(self.stage_timestamp)
            .or(self.timestamp)
    }

    /// When this stage was reached, falling back to the time the request was received.
    pub fn stage_at(&self) -> Option<DateTime<Utc>> {
        self.stage_timestamp.or(self.received_at())
    }

    /// HTTP status code of the response, when the stage has one.
    pub fn status_code(&self) -> Option<i32> {
        self.response_status.as_ref().map(|s| s.code).filter(|c| *c != 0)
    }
}

/// `audit.k8s.io` `EventList`, the body of a webhook batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub items: Vec<Event>,
}

/// Why a body could not be read as an audit `EventList` or `Event`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("expected kind {expected:?}, got {got:?}")]
    WrongKind { expected: &'static str, got: String },
    #[error("unsupported apiVersion {0:?}; expected audit.k8s.io/v1 or audit.k8s.io/v1beta1")]
    WrongApiVersion(String),
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; keep the bare message.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        DecodeError::Json {
            line: e.line(),
            column: e.column(),
            message,
        }
    }
}

fn check_api_version(api_version: &Option<String>) -> Result<(), DecodeError> {
    match api_version {
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => Err(DecodeError::WrongApiVersion(v.clone())),
        _ => Ok(()),
    }
}

/// Decodes a webhook body: an `EventList` (kind may be omitted; any other kind is refused).
pub fn decode_event_list(body: &[u8]) -> Result<EventList, DecodeError> {
    let list: EventList = serde_json::from_slice(body)?;
    match list.kind.as_deref() {
        None | Some("EventList") => {}
        Some(other) => {
            return Err(DecodeError::WrongKind {
                expected: "EventList",
                got: other.to_string(),
            });
        }
    }
    check_api_version(&list.api_version)?;
    for item in &list.items {
        check_api_version(&item.api_version)?;
    }
    Ok(list)
}

/// Decodes one line of an audit log file: a single `Event`.
pub fn decode_event(line: &[u8]) -> Result<Event, DecodeError> {
    let event: Event = serde_json::from_slice(line)?;
    match event.kind.as_deref() {
        None | Some("Event") => {}
        Some(other) => {
            return Err(DecodeError::WrongKind {
                expected: "Event",
                got: other.to_string(),
            });
        }
    }
    check_api_version(&event.api_version)?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_LEASE_UPDATE: &str = "../../shared/fixtures/real/khi/oss__test-log.yaml";

    #[test]
    fn decodes_every_field_of_a_request_response_event() {
        let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{
          "level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",
          "requestURI":"/apis/apps/v1/namespaces/default/deployments/demo","verb":"update",
          "user":{"username":"alice","uid":"u1","groups":["system:authenticated"],"extra":{"k":["v"]}},
          "impersonatedUser":{"username":"bob"},
          "sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31.0",
          "objectRef":{"resource":"deployments","namespace":"default","name":"demo","uid":"x",
             "apiGroup":"apps","apiVersion":"v1","resourceVersion":"41","subresource":"status"},
          "responseStatus":{"metadata":{},"status":"Failure","reason":"Conflict","message":"m",
             "details":{"name":"demo","group":"apps","kind":"deployments","causes":[{"reason":"r","message":"c","field":"f"}]},"code":409},
          "requestObject":{"a":1},"responseObject":{"b":[2]},
          "requestReceivedTimestamp":"2024-01-02T03:04:05.123456Z",
          "stageTimestamp":"2024-01-02T03:04:05.223456Z",
          "annotations":{"authorization.k8s.io/decision":"allow"}}]}"#;
        let list = decode_event_list(body.as_bytes()).unwrap();
        let e = &list.items[0];
        assert_eq!(e.level, Level::RequestResponse);
        assert_eq!(e.stage, Stage::ResponseComplete);
        assert_eq!(e.user.extra["k"], vec!["v".to_string()]);
        assert_eq!(e.impersonated_user.as_ref().unwrap().username, "bob");
        let r = e.object_ref.as_ref().unwrap();
        assert_eq!((r.api_group.as_str(), r.subresource.as_str(), r.resource_version.as_str()), ("apps", "status", "41"));
        let s = e.response_status.as_ref().unwrap();
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
        assert_eq!(s.details.as_ref().unwrap().causes[0].field, "f");
        assert_eq!(e.request_object.as_ref().unwrap().get(), r#"{"a":1}"#);
        assert_eq!(e.received_at().unwrap().timestamp_subsec_micros(), 123456);
        assert_eq!(e.annotations["authorization.k8s.io/decision"], "allow");
    }

    #[test]
    fn timestamps_serialize_with_six_fractional_digits() {
        let e = decode_event(br#"{"level":"Metadata","auditID":"a","stage":"ResponseComplete","requestReceivedTimestamp":"2024-01-02T03:04:05.120000Z","stageTimestamp":"2024-01-02T03:04:06Z"}"#).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""requestReceivedTimestamp":"2024-01-02T03:04:05.120000Z""#), "{text}");
        assert!(text.contains(r#""stageTimestamp":"2024-01-02T03:04:06.000000Z""#), "{text}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = decode_event_list(b"{\"items\": [\n  {\"level\": }]}").unwrap_err();
        match err {
            DecodeError::Json { line, column, .. } => assert_eq!((line, column), (2, 13)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_kind_and_version_are_refused() {
        let err = decode_event_list(br#"{"kind":"PodList","items":[]}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"expected kind "EventList", got "PodList""#);
        let err = decode_event_list(br#"{"kind":"EventList","apiVersion":"v1","items":[]}"#).unwrap_err();
        assert!(matches!(err, DecodeError::WrongApiVersion(_)));
    }

    #[test]
    fn accepts_v1beta1_with_metadata_and_timestamp() {
        let line = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2018-10-25T13:58:49Z"},
          "timestamp":"2018-10-25T13:58:49Z","level":"Request","auditID":"b","stage":"ResponseComplete",
          "requestURI":"/api/v1/namespaces","verb":"list","user":{"username":"u"}}"#;
        let e = decode_event(line).unwrap();
        assert_eq!(e.received_at().unwrap().to_rfc3339(), "2018-10-25T13:58:49+00:00");
    }

    #[test]
    fn decodes_real_recordings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
        assert!(dir.exists(), "real fixtures missing at {}; run from a checkout with ../shared", dir.display());
        let ingress = std::fs::read_to_string(dir.join("hkerma-perfspec/hkerma-audit-metadata.ingress-nginx.jsonl")).unwrap();
        let mut n = 0;
        for (i, line) in ingress.lines().enumerate() {
            decode_event(line.as_bytes()).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            n += 1;
        }
        assert_eq!(n, 202);
        for f in std::fs::read_dir(dir.join("falco")).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read(&path).unwrap();
            decode_event(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let _ = REAL_LEASE_UPDATE;
    }
}

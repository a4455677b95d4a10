//! From a webhook body to activities: `EventList` decoding (core's `decode_event_list`), then one
//! `Activity` per event that passes the filter. Request/response bodies stay raw; only a small
//! head (`kind`, `apiVersion`, `metadata.{name,uid,resourceVersion}`) is read from them, and a
//! full `Status` when the response is one. Bodies of `secrets` are dropped here and go no further.
//! Nothing in this module logs: it is a pure function over the body bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use kausal_core::activity::{Activity, ActivityDetail, AuditActivity, AuditBodies, nanos_of};
use kausal_core::audit::{DecodeError, Event, Level, ObjectReference, Status, decode_event_list};
use kausal_core::object::{ObjectKey, ObjectRef, kind_of};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::filter::{DropReason, Filter};

/// What one webhook body turned into.
#[derive(Debug, Default)]
pub struct Decoded {
    pub activities: Vec<Activity>,
    /// Events in the list.
    pub received: usize,
    /// Events that did not become activities, by reason.
    pub dropped: BTreeMap<DropReason, usize>,
}

impl Decoded {
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }
}

/// Decodes a webhook body and maps every admitted event of it, attributing them to `cluster`.
pub fn decode_body(body: &[u8], cluster: &str, filter: &Filter) -> Result<Decoded, DecodeError> {
    let list = decode_event_list(body)?;
    let mut out = Decoded {
        activities: Vec::with_capacity(list.items.len()),
        received: list.items.len(),
        dropped: BTreeMap::new(),
    };
    for event in list.items {
        match filter.check(&event).and_then(|()| to_activity(event, cluster)) {
            Ok(a) => out.activities.push(a),
            Err(reason) => *out.dropped.entry(reason).or_default() += 1,
        }
    }
    Ok(out)
}

/// The parts of a request or response object kausal reads.
#[derive(Deserialize, Default)]
struct ObjectHead<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<MetadataHead<'a>>,
}

#[derive(Deserialize, Default)]
struct MetadataHead<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
}

impl<'a> ObjectHead<'a> {
    /// Reads the head of a raw body; a body that is not an object (a JSON patch is an array)
    /// has no head.
    fn read(raw: &'a RawValue) -> ObjectHead<'a> {
        serde_json::from_str(raw.get()).unwrap_or_default()
    }

    fn kind(&self) -> Option<&str> {
        self.kind.as_deref().filter(|k| !k.is_empty())
    }

    fn is_status(&self) -> bool {
        self.kind() == Some("Status")
    }

    /// Whether this body describes the audited object itself (rather than a Status, options,
    /// a list or a subresource type such as Scale or Binding).
    fn describes_object(&self, subresource: &str) -> bool {
        match self.kind() {
            Some(k) => {
                !(k == "Status" || k.ends_with("Options") || k.ends_with("List"))
                    && (subresource.is_empty() || subresource == "status")
            }
            None => false,
        }
    }

    fn name(&self) -> Option<&str> {
        self.metadata.as_ref()?.name.as_deref().filter(|n| !n.is_empty())
    }

    fn uid(&self) -> Option<&str> {
        self.metadata.as_ref()?.uid.as_deref().filter(|n| !n.is_empty())
    }

    fn resource_version(&self) -> Option<&str> {
        self.metadata.as_ref()?.resource_version.as_deref().filter(|n| !n.is_empty())
    }
}

/// Maps one admitted event. `Err` only for events that have no object to attach to.
pub fn to_activity(event: Event, cluster: &str) -> Result<Activity, DropReason> {
    let Some(object_ref) = event.object_ref.as_ref().filter(|r| !r.resource.is_empty()) else {
        return Err(DropReason::NoObject);
    };
    let start = event.received_at().map(nanos_of).ok_or(DropReason::NoTimestamp)?;
    let end = event.stage_at().map(nanos_of).unwrap_or(start).max(start);

    let response_head = event.response_object.as_deref().map(ObjectHead::read).unwrap_or_default();
    let response_is_object = response_head.describes_object(&object_ref.subresource);
    // The request body is only read when the response does not say what the object is.
    let needs_request = !response_is_object || (object_ref.name.is_empty() && event.verb == "create");
    let request_head = match (&event.request_object, needs_request) {
        (Some(raw), true) => ObjectHead::read(raw),
        _ => ObjectHead::default(),
    };
    let response_object_head = response_is_object.then_some(&response_head);
    let request_object_head = request_head.describes_object(&object_ref.subresource).then_some(&request_head);
    let object = object_of(cluster, object_ref, &event, response_object_head, request_object_head, &request_head);

    // kube-apiserver puts the failure Status in responseObject at RequestResponse level, while
    // responseStatus may carry only the code.
    let response_status: Option<Status> = match &event.response_object {
        Some(raw) if response_head.is_status() => serde_json::from_str(raw.get()).ok(),
        _ => None,
    };
    let response_resource_version = if response_is_object {
        response_head.resource_version().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    let request_resource_version = object_ref.resource_version.clone();
    let subresource = object_ref.subresource.clone();
    let is_secret = object_ref.resource == "secrets";
    drop(response_head);
    drop(request_head);

    let (code, reason, message, causes) = status_fields(event.response_status, response_status);
    let bodies = if event.level >= Level::Request && !is_secret {
        match (event.request_object, event.response_object) {
            (None, None) => None,
            (request, response) => Some(Arc::new(AuditBodies { request, response })),
        }
    } else {
        None
    };

    Ok(Activity {
        object,
        start,
        end,
        detail: ActivityDetail::Audit(AuditActivity {
            audit_id: event.audit_id,
            verb: event.verb,
            stage: event.stage,
            level: event.level,
            request_uri: event.request_uri,
            subresource,
            user: event.user,
            impersonated_user: event.impersonated_user,
            user_agent: event.user_agent,
            source_ips: event.source_ips,
            code,
            reason,
            message,
            causes,
            request_resource_version,
            response_resource_version,
            annotations: event.annotations,
            bodies,
        }),
        links: Vec::new(),
        change: None,
        cause: None,
    })
}

/// `response` and `request` are the heads of bodies that describe the object itself;
/// `request_any` is the request head whatever it describes (a create's body may lack `kind`).
fn object_of(
    cluster: &str,
    r: &ObjectReference,
    event: &Event,
    response: Option<&ObjectHead<'_>>,
    request: Option<&ObjectHead<'_>>,
    request_any: &ObjectHead<'_>,
) -> ObjectRef {
    let body = response.or(request);
    let name = if !r.name.is_empty() {
        r.name.clone()
    } else {
        // A create names its object only in the body (or, with generateName, only in the
        // response); at Metadata level the URI is all there is, and for a create it usually
        // has no name: such activities keep an empty name.
        let from_body = if event.verb == "create" {
            response.and_then(|b| b.name()).or_else(|| request_any.name())
        } else {
            None
        };
        from_body
            .map(str::to_string)
            .or_else(|| name_from_request_uri(&event.request_uri, r))
            .unwrap_or_default()
    };
    // Only the response knows the uid of a created object.
    let uid = if !r.uid.is_empty() {
        Some(r.uid.clone())
    } else {
        response.and_then(|b| b.uid()).map(str::to_string)
    };
    let kind = body
        .and_then(|b| b.kind())
        .map(str::to_string)
        .or_else(|| kind_of(&r.api_group, &r.resource).map(str::to_string));
    let api_version = body
        .and_then(|b| b.api_version.as_deref())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| match (r.api_group.as_str(), r.api_version.as_str()) {
            (_, "") => None,
            ("", v) => Some(v.to_string()),
            (g, v) => Some(format!("{g}/{v}")),
        });
    ObjectRef {
        key: ObjectKey {
            cluster: cluster.to_string(),
            group: r.api_group.clone(),
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
            name,
        },
        uid,
        kind,
        api_version,
    }
}

/// The object name in a resource URI: `/api/v1/[namespaces/{ns}/]{resource}/{name}[/...]` or
/// `/apis/{group}/{version}/[namespaces/{ns}/]{resource}/{name}[/...]`.
pub fn name_from_request_uri(uri: &str, r: &ObjectReference) -> Option<String> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if r.resource != "namespaces" || !tail.is_empty() => tail,
        other => other,
    };
    match rest {
        [resource, name, ..] if *resource == r.resource && !name.is_empty() => Some((*name).to_string()),
        _ => None,
    }
}

/// Code, reason, message and causes, from `responseStatus` first and the Status in
/// `responseObject` where `responseStatus` is silent.
fn status_fields(
    from_status: Option<Status>,
    from_object: Option<Status>,
) -> (Option<i32>, String, String, Vec<kausal_core::audit::StatusCause>) {
    let (s, o) = (from_status.unwrap_or_default(), from_object.unwrap_or_default());
    let code = [s.code, o.code].into_iter().find(|c| *c != 0);
    let pick = |a: String, b: String| if a.is_empty() { b } else { a };
    let causes_of = |st: Option<kausal_core::audit::StatusDetails>| st.map(|d| d.causes).unwrap_or_default();
    let (s_causes, o_causes) = (causes_of(s.details), causes_of(o.details));
    let causes = if s_causes.is_empty() { o_causes } else { s_causes };
    (code, pick(s.reason, o.reason), pick(s.message, o.message), causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn one(event: serde_json::Value) -> Activity {
        let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [event]});
        let filter = Filter::new(&Config::default()).unwrap();
        let mut d = decode_body(body.to_string().as_bytes(), "c1", &filter).unwrap();
        assert_eq!(d.activities.len(), 1, "dropped: {:?}", d.dropped);
        d.activities.remove(0)
    }

    fn audit(a: &Activity) -> &AuditActivity {
        match &a.detail {
            ActivityDetail::Audit(x) => x,
            other => panic!("not audit: {other:?}"),
        }
    }

    #[test]
    fn uri_names() {
        let r = |resource: &str| ObjectReference { resource: resource.into(), ..Default::default() };
        assert_eq!(name_from_request_uri("/api/v1/namespaces/ns/pods/p1/status?x=1", &r("pods")).as_deref(), Some("p1"));
        assert_eq!(name_from_request_uri("/apis/apps/v1/namespaces/ns/deployments/d", &r("deployments")).as_deref(), Some("d"));
        assert_eq!(name_from_request_uri("/api/v1/namespaces/ns", &r("namespaces")).as_deref(), Some("ns"));
        assert_eq!(name_from_request_uri("/api/v1/nodes/n1", &r("nodes")).as_deref(), Some("n1"));
        assert_eq!(name_from_request_uri("/api/v1/namespaces/ns/pods", &r("pods")), None);
        assert_eq!(name_from_request_uri("/healthz", &r("pods")), None);
    }

    #[test]
    fn create_takes_generated_name_uid_and_version_from_response() {
        let a = one(serde_json::json!({
            "level": "RequestResponse", "auditID": "a", "stage": "ResponseComplete", "verb": "create",
            "requestURI": "/api/v1/namespaces/ns/pods",
            "objectRef": {"resource": "pods", "namespace": "ns", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "Pod", "apiVersion": "v1", "metadata": {"generateName": "web-"}},
            "responseObject": {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web-x1", "uid": "u9", "resourceVersion": "77"}, "status": {"phase": "Pending"}},
            "requestReceivedTimestamp": "2024-01-01T00:00:00.000001Z",
            "stageTimestamp": "2024-01-01T00:00:00.000003Z"
        }));
        assert_eq!(a.object.key, ObjectKey::new("c1", "", "pods", "ns", "web-x1"));
        assert_eq!(a.object.uid.as_deref(), Some("u9"));
        assert_eq!((a.object.kind.as_deref(), a.object.api_version.as_deref()), (Some("Pod"), Some("v1")));
        assert_eq!((a.start, a.end), (1_704_067_200_000_001_000, 1_704_067_200_000_003_000));
        let x = audit(&a);
        assert_eq!((x.code, x.response_resource_version.as_str()), (Some(201), "77"));
        let bodies = x.bodies.as_ref().unwrap();
        assert!(bodies.request.is_some() && bodies.response.is_some());
    }

    #[test]
    fn failure_status_in_response_object_fills_reason_and_causes() {
        let a = one(serde_json::json!({
            "level": "RequestResponse", "auditID": "a", "stage": "ResponseComplete", "verb": "update",
            "requestURI": "/apis/apps/v1/namespaces/ns/deployments/d/status",
            "objectRef": {"resource": "deployments", "namespace": "ns", "name": "d", "apiGroup": "apps", "apiVersion": "v1", "subresource": "status", "resourceVersion": "5"},
            "responseStatus": {"metadata": {}, "code": 409},
            "requestObject": {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d"}},
            "responseObject": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the object has been modified", "reason": "Conflict",
                "details": {"name": "d", "causes": [{"reason": "FieldValueInvalid", "field": "spec"}]}, "code": 409},
            "requestReceivedTimestamp": "2024-01-01T00:00:01Z",
            "stageTimestamp": "2024-01-01T00:00:00Z"
        }));
        let x = audit(&a);
        assert_eq!((x.code, x.reason.as_str()), (Some(409), "Conflict"));
        assert_eq!(x.message, "the object has been modified");
        assert_eq!(x.causes[0].field, "spec");
        assert_eq!((x.subresource.as_str(), x.request_resource_version.as_str()), ("status", "5"));
        assert_eq!(x.response_resource_version, "", "a Status carries no object version");
        assert_eq!(a.object.kind.as_deref(), Some("Deployment"));
        assert_eq!(a.object.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(a.end, a.start, "end is never before start");
    }

    #[test]
    fn secret_bodies_never_survive() {
        let a = one(serde_json::json!({
            "level": "RequestResponse", "auditID": "a", "stage": "ResponseComplete", "verb": "create",
            "requestURI": "/api/v1/namespaces/ns/secrets",
            "objectRef": {"resource": "secrets", "namespace": "ns", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}},
            "responseObject": {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "resourceVersion": "3"}, "data": {"k": "c2VjcmV0"}},
            "requestReceivedTimestamp": "2024-01-01T00:00:00Z", "stageTimestamp": "2024-01-01T00:00:00Z"
        }));
        assert_eq!(a.object.key.name, "s");
        assert!(audit(&a).bodies.is_none());
        assert!(!format!("{a:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn metadata_level_uses_object_ref_and_builtin_kinds() {
        let a = one(serde_json::json!({
            "level": "Metadata", "auditID": "a", "stage": "ResponseComplete", "verb": "patch",
            "requestURI": "/apis/apps/v1/namespaces/ns/replicasets/rs1/scale",
            "objectRef": {"resource": "replicasets", "namespace": "ns", "name": "rs1", "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2024-01-01T00:00:00Z", "stageTimestamp": "2024-01-01T00:00:00.5Z"
        }));
        assert_eq!(a.object.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(a.object.api_version.as_deref(), Some("apps/v1"));
        assert!(audit(&a).bodies.is_none());
        assert_eq!(a.end - a.start, 500_000_000);
    }

    #[test]
    fn events_without_objects_or_times_are_dropped_with_reasons() {
        let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
            {"level": "Metadata", "auditID": "1", "stage": "ResponseComplete", "verb": "get", "requestURI": "/healthz",
             "requestReceivedTimestamp": "2024-01-01T00:00:00Z"},
            {"level": "Metadata", "auditID": "2", "stage": "ResponseComplete", "verb": "get", "requestURI": "/api/v1/nodes/n",
             "objectRef": {"resource": "nodes", "name": "n"}},
            {"level": "Metadata", "auditID": "3", "stage": "RequestReceived", "verb": "get", "requestURI": "/api/v1/nodes/n",
             "objectRef": {"resource": "nodes", "name": "n"}, "requestReceivedTimestamp": "2024-01-01T00:00:00Z"},
        ]});
        let filter = Filter::new(&Config::default()).unwrap();
        let d = decode_body(body.to_string().as_bytes(), "c", &filter).unwrap();
        assert_eq!(d.received, 3);
        assert!(d.activities.is_empty());
        assert_eq!(
            d.dropped,
            BTreeMap::from([(DropReason::Stage, 1), (DropReason::NoObject, 1), (DropReason::NoTimestamp, 1)])
        );
    }
}

//! The linking decision, pure over activities: find the controller owner in the bodies (the
//! response describes the object after the write, so it wins over the request), otherwise
//! reuse what an earlier activity of the same object showed.

use kausal_core::activity::{Activity, ActivityDetail, LINK_CLASS_CHILDREN, Link, LinkRole};
use kausal_core::object::{ObjectKey, ObjectRef, resource_of};
use serde::Deserialize;
use serde_json::value::RawValue;

use kausal_core::bounded::BoundedIndex;

/// Kinds that are cluster-scoped, so an owner of that kind has no namespace.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Node",
    "Namespace",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

#[derive(Deserialize)]
struct BodyMeta {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default, rename = "ownerReferences")]
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct OwnerReference {
    api_version: String,
    kind: String,
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    controller: Option<bool>,
}

/// Owners of one body: `None` when the body is not an object of this kind (e.g. a Status or a
/// Scale), `Some(None)` when it is and has no owner.
fn owner_in(body: &RawValue, object_kind: Option<&str>) -> Option<Option<OwnerReference>> {
    let parsed: BodyMeta = serde_json::from_str(body.get()).ok()?;
    if let (Some(body_kind), Some(kind)) = (parsed.kind.as_deref(), object_kind)
        && body_kind != kind
    {
        return None;
    }
    let refs = parsed.metadata?.owner_references.unwrap_or_default();
    let chosen = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .cloned();
    Some(chosen)
}

fn owner_link(object: &ObjectKey, owner: &OwnerReference) -> Link {
    let (group, resource) = resource_of(&owner.api_version, &owner.kind);
    let namespace = if CLUSTER_SCOPED_KINDS.contains(&owner.kind.as_str()) {
        String::new()
    } else {
        object.namespace.clone()
    };
    Link {
        peer: ObjectRef {
            key: ObjectKey {
                cluster: object.cluster.clone(),
                group,
                resource,
                namespace,
                name: owner.name.clone(),
            },
            uid: (!owner.uid.is_empty()).then(|| owner.uid.clone()),
            kind: Some(owner.kind.clone()),
            api_version: Some(owner.api_version.clone()),
        },
        role: LinkRole::Parent,
        class: LINK_CLASS_CHILDREN.to_string(),
        inferred: false,
    }
}

pub struct OwnerLinker {
    owners: BoundedIndex<ObjectKey, Option<Link>>,
}

impl OwnerLinker {
    pub fn new(max_objects: usize) -> Self {
        OwnerLinker {
            owners: BoundedIndex::new(max_objects),
        }
    }

    /// Adds the owner link to `activity` (unless a link to that owner is already there).
    pub fn link(&mut self, activity: &mut Activity) {
        let key = &activity.object.key;
        let mut seen: Option<Option<Link>> = None;
        if let ActivityDetail::Audit(audit) = &activity.detail
            && let Some(bodies) = &audit.bodies
        {
            let kind = activity.object.kind();
            let found = bodies
                .response
                .as_deref()
                .and_then(|b| owner_in(b, kind))
                .or_else(|| bodies.request.as_deref().and_then(|b| owner_in(b, kind)));
            if let Some(owner) = found {
                seen = Some(owner.map(|o| owner_link(key, &o)));
            }
        }
        let link = match seen {
            Some(link) => {
                // A delete's response may be a Status; only objects update the index.
                self.owners.insert(key.clone(), link.clone());
                link
            }
            None => self.owners.get(key).cloned().flatten(),
        };
        if let Some(link) = link
            && !activity.links.iter().any(|l| l.role == LinkRole::Parent && l.peer.key == link.peer.key)
        {
            activity.links.push(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kausal_core::activity::{AuditActivity, AuditBodies};
    use kausal_core::audit::{Level, Stage, UserInfo};

    use super::*;

    fn audit(name: &str, response: Option<&str>) -> Activity {
        Activity {
            object: ObjectRef::new(ObjectKey::new("c", "apps", "replicasets", "default", name)),
            start: 0,
            end: 0,
            detail: ActivityDetail::Audit(AuditActivity {
                audit_id: "a".into(),
                verb: "update".into(),
                stage: Stage::ResponseComplete,
                level: Level::RequestResponse,
                request_uri: String::new(),
                subresource: String::new(),
                user: UserInfo::default(),
                impersonated_user: None,
                user_agent: String::new(),
                source_ips: vec![],
                code: Some(200),
                reason: String::new(),
                message: String::new(),
                causes: vec![],
                request_resource_version: String::new(),
                response_resource_version: String::new(),
                annotations: Default::default(),
                bodies: response.map(|r| {
                    Arc::new(AuditBodies {
                        request: None,
                        response: Some(RawValue::from_string(r.to_string()).unwrap()),
                    })
                }),
            }),
            links: vec![],
            change: None,
            cause: None,
        }
    }

    const RS: &str = r#"{"kind":"ReplicaSet","apiVersion":"apps/v1","metadata":{"name":"demo-1","ownerReferences":[
        {"apiVersion":"v1","kind":"ConfigMap","name":"not-controller","uid":"x"},
        {"apiVersion":"apps/v1","kind":"Deployment","name":"demo","uid":"d1","controller":true}]}}"#;

    #[test]
    fn links_controller_owner_and_remembers_it() {
        let mut l = OwnerLinker::new(10);
        let mut a = audit("demo-1", Some(RS));
        l.link(&mut a);
        assert_eq!(a.links.len(), 1);
        let link = &a.links[0];
        assert_eq!(link.peer.key, ObjectKey::new("c", "apps", "deployments", "default", "demo"));
        assert_eq!((link.role, link.class.as_str(), link.peer.uid.as_deref()), (LinkRole::Parent, "children", Some("d1")));

        // A later Metadata-level activity without bodies is linked from the index.
        let mut later = audit("demo-1", None);
        l.link(&mut later);
        assert_eq!(later.links, a.links);
    }

    #[test]
    fn status_responses_do_not_erase_the_owner() {
        let mut l = OwnerLinker::new(10);
        l.link(&mut audit("demo-1", Some(RS)));
        let mut deleted = audit("demo-1", Some(r#"{"kind":"Status","apiVersion":"v1","status":"Success","metadata":{}}"#));
        l.link(&mut deleted);
        assert_eq!(deleted.links.len(), 1);
    }

    #[test]
    fn orphaned_object_loses_its_owner() {
        let mut l = OwnerLinker::new(10);
        l.link(&mut audit("demo-1", Some(RS)));
        let mut orphaned = audit("demo-1", Some(r#"{"kind":"ReplicaSet","metadata":{"name":"demo-1"}}"#));
        l.link(&mut orphaned);
        assert!(orphaned.links.is_empty());
        let mut later = audit("demo-1", None);
        l.link(&mut later);
        assert!(later.links.is_empty());
    }

    #[test]
    fn cluster_scoped_owner_has_no_namespace() {
        let mut l = OwnerLinker::new(10);
        let body = r#"{"kind":"ReplicaSet","metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Node","name":"n1","uid":"u"}]}}"#;
        let mut a = audit("x", Some(body));
        l.link(&mut a);
        assert_eq!(a.links[0].peer.key, ObjectKey::new("c", "", "nodes", "", "n1"));
    }
}

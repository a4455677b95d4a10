//! Owners from the watcher's state: `kubeobjects` stores each object's controller owner in the
//! cache (`changes::key_of_meta`), so an activity without bodies (Metadata-level audit, an
//! Event, an observed change) is linked from there — one cache read, never an API call.

use kausal_core::activity::{Activity, LINK_CLASS_CHILDREN, Link, LinkRole};
use kausal_core::changes::ObjectMeta;
use kausal_core::object::{ObjectKey, ObjectRef, resource_of};

/// Kinds whose objects have no namespace, so an owner of that kind has none either.
const CLUSTER_SCOPED: &[&str] = &["Node", "Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass", "PriorityClass"];

/// The owner link the watcher's record of `object` implies, if it has an owner.
pub fn owner_link(object: &ObjectKey, meta: &ObjectMeta) -> Option<Link> {
    let owner = meta.owner.as_ref().filter(|o| !o.name.is_empty() && !o.kind.is_empty())?;
    let (group, resource) = resource_of(&owner.api_version, &owner.kind);
    let namespace = if CLUSTER_SCOPED.contains(&owner.kind.as_str()) { String::new() } else { object.namespace.clone() };
    Some(Link {
        peer: ObjectRef {
            key: ObjectKey { cluster: object.cluster.clone(), group, resource, namespace, name: owner.name.clone() },
            uid: (!owner.uid.is_empty()).then(|| owner.uid.clone()),
            kind: Some(owner.kind.clone()),
            api_version: Some(owner.api_version.clone()),
        },
        role: LinkRole::Parent,
        class: LINK_CLASS_CHILDREN.to_string(),
        inferred: false,
    })
}

/// Whether the activity still lacks a parent link of class `children`.
pub fn lacks_owner(activity: &Activity) -> bool {
    !activity.links.iter().any(|l| l.role == LinkRole::Parent && l.class == LINK_CLASS_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::changes::OwnerRef;

    #[test]
    fn watcher_owner_becomes_a_parent_link() {
        let pod = ObjectKey::new("c", "", "pods", "default", "demo-abc-x1");
        let meta = ObjectMeta {
            owner: Some(OwnerRef { api_version: "apps/v1".into(), kind: "ReplicaSet".into(), name: "demo-abc".into(), uid: "rs1".into() }),
            ..Default::default()
        };
        let link = owner_link(&pod, &meta).unwrap();
        assert_eq!(link.peer.key, ObjectKey::new("c", "apps", "replicasets", "default", "demo-abc"));
        assert_eq!((link.role, link.class.as_str(), link.inferred), (LinkRole::Parent, "children", false));
        assert!(owner_link(&pod, &ObjectMeta::default()).is_none());
        let node_owned = ObjectMeta { owner: Some(OwnerRef { api_version: "v1".into(), kind: "Node".into(), name: "n1".into(), uid: String::new() }), ..Default::default() };
        assert_eq!(owner_link(&pod, &node_owned).unwrap().peer.key.namespace, "");
    }
}

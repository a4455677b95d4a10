//! Name-based link inference for audit records without bodies (Metadata level): the
//! controllers name what they create after its owner — ReplicaSet `<deployment>-<hash>`, Pod
//! `<replicaset>-<suffix>` or `<job>-<suffix>`, StatefulSet Pod `<statefulset>-<ordinal>` — so
//! a name, plus the knowledge that such an owner exists, implies the owner. Links made here
//! are marked `inferred`. Pure: the set of known objects is passed in and updated by the caller.

use std::collections::HashSet;

use kausal_core::activity::{LINK_CLASS_CHILDREN, Link, LinkRole};
use kausal_core::object::{ObjectKey, ObjectRef};

/// Characters of a pod-template-hash and of generated name suffixes (Kubernetes'
/// `rand.SafeEncodeString` alphabet: no vowels, no confusable digits).
const SAFE: &str = "bcdfghjklmnpqrstvwxz2456789";

fn safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| SAFE.contains(c))
}

/// Objects seen so far, by (cluster, group, resource, namespace, name).
#[derive(Default)]
pub struct Known {
    objects: HashSet<ObjectKey>,
    capacity: usize,
}

impl Known {
    pub fn new(capacity: usize) -> Self {
        Known { objects: HashSet::new(), capacity: capacity.max(1) }
    }

    pub fn insert(&mut self, key: &ObjectKey) {
        if self.objects.len() >= self.capacity {
            // Crude but bounded: forget everything and relearn from the stream.
            self.objects.clear();
        }
        self.objects.insert(key.clone());
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.objects.contains(key)
    }
}

fn sibling(of: &ObjectKey, group: &str, resource: &str, name: &str) -> ObjectKey {
    ObjectKey::new(&of.cluster, group, resource, &of.namespace, name)
}

/// The owner `key`'s name implies among `known` objects, if any.
pub fn infer_owner(key: &ObjectKey, known: &Known) -> Option<ObjectKey> {
    let (prefix, suffix) = key.name.rsplit_once('-')?;
    match (key.group.as_str(), key.resource.as_str()) {
        ("apps", "replicasets") if suffix.len() >= 6 && safe(suffix) => {
            let d = sibling(key, "apps", "deployments", prefix);
            known.contains(&d).then_some(d)
        }
        ("", "pods") => {
            if suffix.chars().all(|c| c.is_ascii_digit()) {
                let sts = sibling(key, "apps", "statefulsets", prefix);
                if known.contains(&sts) {
                    return Some(sts);
                }
            }
            if suffix.len() == 5 && safe(suffix) {
                for (group, resource) in [("apps", "replicasets"), ("batch", "jobs"), ("apps", "daemonsets")] {
                    let owner = sibling(key, group, resource, prefix);
                    if known.contains(&owner) {
                        return Some(owner);
                    }
                }
            }
            None
        }
        ("batch", "jobs") if suffix.chars().all(|c| c.is_ascii_digit()) => {
            let cron = sibling(key, "batch", "cronjobs", prefix);
            known.contains(&cron).then_some(cron)
        }
        _ => None,
    }
}

/// The inferred parent link to `owner`.
pub fn inferred_link(owner: ObjectKey) -> Link {
    Link { peer: ObjectRef::new(owner), role: LinkRole::Parent, class: LINK_CLASS_CHILDREN.to_string(), inferred: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(group: &str, resource: &str, name: &str) -> ObjectKey {
        ObjectKey::new("c", group, resource, "ingress-nginx", name)
    }

    #[test]
    fn infers_the_controller_chain_only_for_known_owners() {
        let mut known = Known::new(100);
        let rs = k("apps", "replicasets", "my-ingress-nginx-controller-6585b4f8f7");
        let pod = k("", "pods", "my-ingress-nginx-controller-6585b4f8f7-wltlx");
        assert_eq!(infer_owner(&rs, &known), None, "no deployment known yet");
        known.insert(&k("apps", "deployments", "my-ingress-nginx-controller"));
        assert_eq!(infer_owner(&rs, &known), Some(k("apps", "deployments", "my-ingress-nginx-controller")));
        known.insert(&rs);
        assert_eq!(infer_owner(&pod, &known), Some(rs.clone()));
        // A Job's pod goes to the Job, never to a Deployment with a similar name.
        known.insert(&k("batch", "jobs", "my-ingress-nginx-admission-create"));
        assert_eq!(infer_owner(&k("", "pods", "my-ingress-nginx-admission-create-wdd2k"), &known), Some(k("batch", "jobs", "my-ingress-nginx-admission-create")));
        known.insert(&k("apps", "statefulsets", "web"));
        assert_eq!(infer_owner(&k("", "pods", "web-0"), &known), Some(k("apps", "statefulsets", "web")));
        // Not a generated suffix (vowels), not a hash.
        assert_eq!(infer_owner(&k("", "pods", "my-ingress-nginx-controller-6585b4f8f7-aeiou"), &known), None);
        assert_eq!(infer_owner(&k("apps", "replicasets", "my-ingress-nginx-controller-x"), &known), None);
    }
}

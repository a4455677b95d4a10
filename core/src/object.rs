//! Naming Kubernetes objects: `ObjectKey` identifies one object in one cluster across its whole
//! life; `ObjectRef` adds what is known about it at one moment (uid, kind, apiVersion).
//! Nothing here talks to a cluster; kinds are derived from resources only for the built-ins.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One object in one cluster. `group` is empty for the core API group; `namespace` is empty for
/// cluster-scoped objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub cluster: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(
        cluster: impl Into<String>,
        group: impl Into<String>,
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectKey {
            cluster: cluster.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Stable byte encoding used for hashing and as a store key: fields joined by NUL, which
    /// cannot occur in any of them.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(
            self.cluster.len() + self.group.len() + self.resource.len() + self.namespace.len() + self.name.len() + 4,
        );
        for (i, part) in [&self.cluster, &self.group, &self.resource, &self.namespace, &self.name]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                s.push('\0');
            }
            s.push_str(part);
        }
        s
    }

    /// Inverse of [`ObjectKey::encode`].
    pub fn decode(s: &str) -> Option<ObjectKey> {
        let mut it = s.split('\0');
        let key = ObjectKey::new(it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        it.next().is_none().then_some(key)
    }

    /// `resource.group` as kubectl prints it (`deployments.apps`, `pods`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `cluster/resource.group/namespace/name`, with empty parts left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.group_resource())?;
        if !self.namespace.is_empty() {
            write!(f, "/{}", self.namespace)?;
        }
        write!(f, "/{}", self.name)
    }
}

/// An object as seen at one moment: its key plus what is known about it there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub key: ObjectKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl ObjectRef {
    pub fn new(key: ObjectKey) -> Self {
        ObjectRef { key, ..Default::default() }
    }

    /// The kind, either recorded or derived from a built-in resource name.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref().or_else(|| kind_of(&self.key.group, &self.key.resource))
    }
}

/// Built-in resources and their kinds, group by group. Used where audit records carry only the
/// resource (Metadata level) and for mapping ownerReferences (which carry kinds) to resources.
const BUILTINS: &[(&str, &str, &str)] = &[
    ("", "pods", "Pod"),
    ("", "nodes", "Node"),
    ("", "namespaces", "Namespace"),
    ("", "services", "Service"),
    ("", "endpoints", "Endpoints"),
    ("", "configmaps", "ConfigMap"),
    ("", "secrets", "Secret"),
    ("", "serviceaccounts", "ServiceAccount"),
    ("", "events", "Event"),
    ("", "persistentvolumes", "PersistentVolume"),
    ("", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("", "replicationcontrollers", "ReplicationController"),
    ("", "resourcequotas", "ResourceQuota"),
    ("", "limitranges", "LimitRange"),
    ("apps", "deployments", "Deployment"),
    ("apps", "replicasets", "ReplicaSet"),
    ("apps", "statefulsets", "StatefulSet"),
    ("apps", "daemonsets", "DaemonSet"),
    ("apps", "controllerrevisions", "ControllerRevision"),
    ("batch", "jobs", "Job"),
    ("batch", "cronjobs", "CronJob"),
    ("coordination.k8s.io", "leases", "Lease"),
    ("events.k8s.io", "events", "Event"),
    ("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    ("networking.k8s.io", "ingresses", "Ingress"),
    ("networking.k8s.io", "networkpolicies", "NetworkPolicy"),
    ("policy", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "roles", "Role"),
    ("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
    ("autoscaling", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("storage.k8s.io", "storageclasses", "StorageClass"),
];

/// Kind of a built-in resource (`("apps", "deployments")` → `Deployment`).
pub fn kind_of(group: &str, resource: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(g, r, _)| *g == group && *r == resource)
        .map(|(_, _, k)| *k)
}

/// Resource of a built-in kind given its apiVersion (`("apps/v1", "ReplicaSet")` →
/// `("apps", "replicasets")`). Unknown kinds fall back to the lower-cased plural, which is what
/// the API server does for most custom resources.
pub fn resource_of(api_version: &str, kind: &str) -> (String, String) {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    if let Some((g, r, _)) = BUILTINS.iter().find(|(g, _, k)| *g == group && *k == kind) {
        return (g.to_string(), r.to_string());
    }
    let lower = kind.to_ascii_lowercase();
    let plural = if lower.ends_with('s') || lower.ends_with("ch") || lower.ends_with("sh") || lower.ends_with('x') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u'])) {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    };
    (group.to_string(), plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_displays() {
        let k = ObjectKey::new("prod", "apps", "deployments", "default", "demo");
        assert_eq!(ObjectKey::decode(&k.encode()), Some(k.clone()));
        assert_eq!(k.to_string(), "prod/deployments.apps/default/demo");
        let node = ObjectKey::new("prod", "", "nodes", "", "n1");
        assert_eq!(node.to_string(), "prod/nodes/n1");
        assert_eq!(ObjectKey::decode("a\0b"), None);
    }

    #[test]
    fn kinds_and_resources_map_both_ways() {
        assert_eq!(kind_of("apps", "replicasets"), Some("ReplicaSet"));
        assert_eq!(resource_of("apps/v1", "ReplicaSet"), ("apps".into(), "replicasets".into()));
        assert_eq!(resource_of("v1", "Pod"), ("".into(), "pods".into()));
        assert_eq!(resource_of("example.com/v1", "Policy"), ("example.com".into(), "policies".into()));
        assert_eq!(resource_of("example.com/v1", "Ingress"), ("example.com".into(), "ingresses".into()));
        assert_eq!(resource_of("example.com/v1", "Gateway"), ("example.com".into(), "gateways".into()));
    }
}

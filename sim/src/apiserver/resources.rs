//! The resource types the emulator serves: the built-in ones a workload cluster needs and those
//! added by CustomResourceDefinitions, with what discovery says about each (kind, scope, short
//! names, verbs, subresources). It knows nothing about storage or HTTP; the discovery documents
//! it renders are plain `serde_json::Value`s.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Where the objects of a resource live: one store per (group, plural). The events.k8s.io view
/// of Events points at the core `events` store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    pub group: String,
    pub resource: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
}

impl Subresource {
    pub fn as_str(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
        }
    }

    pub fn parse(s: &str) -> Option<Subresource> {
        match s {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale),
            "binding" => Some(Subresource::Binding),
            _ => None,
        }
    }
}

/// How an object's JSON is converted between the stored form and this view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Stored and served as is.
    Native,
    /// `events.k8s.io/v1` Event over the core/v1 Event store.
    EventsV1,
}

/// One resource of one group/version.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Whether spec changes bump `metadata.generation` (workloads, CRDs, custom resources).
    pub has_generation: bool,
    pub store: StoreKey,
    pub view: View,
    /// For custom resources: the JSON path of the replicas field behind `/scale`.
    pub scale_spec_path: Option<String>,
    pub scale_status_path: Option<String>,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    fn verbs() -> Value {
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    subresources: &[Subresource],
    has_generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        kind: kind.to_string(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        subresources: subresources.to_vec(),
        has_generation,
        store: StoreKey {
            group: group.to_string(),
            resource: plural.to_string(),
        },
        view: View::Native,
        scale_spec_path: None,
        scale_status_path: None,
    }
}

/// All resource types currently served, built-in and custom.
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in resources of a v1.31 cluster that kausal's scenarios use.
    pub fn builtin() -> Registry {
        use Subresource::*;
        let mut types = vec![
            builtin(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
                &["ns"],
                &[Status],
                false,
            ),
            builtin("", "v1", "nodes", "Node", false, &["no"], &[Status], false),
            builtin(
                "",
                "v1",
                "pods",
                "Pod",
                true,
                &["po"],
                &[Status, Binding],
                false,
            ),
            builtin(
                "",
                "v1",
                "services",
                "Service",
                true,
                &["svc"],
                &[Status],
                false,
            ),
            builtin(
                "",
                "v1",
                "endpoints",
                "Endpoints",
                true,
                &["ep"],
                &[],
                false,
            ),
            builtin(
                "",
                "v1",
                "configmaps",
                "ConfigMap",
                true,
                &["cm"],
                &[],
                false,
            ),
            builtin("", "v1", "secrets", "Secret", true, &[], &[], false),
            builtin(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                &["sa"],
                &[],
                false,
            ),
            builtin("", "v1", "events", "Event", true, &["ev"], &[], false),
            builtin(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                &["deploy"],
                &[Status, Scale],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "replicasets",
                "ReplicaSet",
                true,
                &["rs"],
                &[Status, Scale],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "statefulsets",
                "StatefulSet",
                true,
                &["sts"],
                &[Status, Scale],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "daemonsets",
                "DaemonSet",
                true,
                &["ds"],
                &[Status],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "controllerrevisions",
                "ControllerRevision",
                true,
                &[],
                &[],
                false,
            ),
            builtin("batch", "v1", "jobs", "Job", true, &[], &[Status], true),
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                &[],
                false,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                &[Status],
                true,
            ),
        ];
        let mut events_v1 = builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            &[],
            false,
        );
        events_v1.store = StoreKey {
            group: String::new(),
            resource: "events".to_string(),
        };
        events_v1.view = View::EventsV1;
        types.push(events_v1);
        for t in &mut types {
            if matches!(
                t.plural.as_str(),
                "pods"
                    | "deployments"
                    | "replicasets"
                    | "statefulsets"
                    | "daemonsets"
                    | "services"
                    | "jobs"
            ) {
                t.categories = vec!["all".to_string()];
            }
        }
        Registry { types }
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The preferred (first registered) type of a (group, plural), whatever the version.
    pub fn lookup_any_version(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Group → versions in registration order.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &self.types {
            let versions = groups.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        groups
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.group == group && t.version == version)
    }

    /// Replaces the types served for a CRD (`group`, `plural`) by `types` (empty removes them).
    pub fn set_custom(&mut self, group: &str, plural: &str, types: Vec<ResourceType>) {
        self.types.retain(|t| {
            !(t.group == group
                && t.plural == plural
                && t.view == View::Native
                && t.store.group == group)
        });
        self.types.extend(types);
    }

    /// `/api` (APIVersions).
    pub fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
        })
    }

    /// `/apis` (APIGroupList) without the core group.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, versions)| group_json(&g, &versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    pub fn group(&self, group: &str) -> Option<Value> {
        let versions = self.groups().remove(group)?;
        let mut g = group_json(group, &versions);
        if let Some(obj) = g.as_object_mut() {
            obj.insert("kind".into(), json!("APIGroup"));
            obj.insert("apiVersion".into(), json!("v1"));
        }
        Some(g)
    }

    /// `/api/v1` or `/apis/{group}/{version}` (APIResourceList).
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let mut resources = Vec::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            let mut entry = json!({
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ResourceType::verbs(),
            });
            if !t.short_names.is_empty() {
                entry["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                entry["categories"] = json!(t.categories);
            }
            resources.push(entry);
            for sub in &t.subresources {
                let (kind, verbs, sub_group, sub_version) = match sub {
                    Subresource::Status => (
                        t.kind.clone(),
                        json!(["get", "patch", "update"]),
                        None,
                        None,
                    ),
                    Subresource::Scale => (
                        "Scale".to_string(),
                        json!(["get", "patch", "update"]),
                        Some("autoscaling"),
                        Some("v1"),
                    ),
                    Subresource::Binding => ("Binding".to_string(), json!(["create"]), None, None),
                };
                let mut e = json!({
                    "name": format!("{}/{}", t.plural, sub.as_str()),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                });
                if let (Some(g), Some(v)) = (sub_group, sub_version) {
                    e["group"] = json!(g);
                    e["version"] = json!(v);
                }
                resources.push(e);
            }
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// The resource types a CustomResourceDefinition (`apiextensions.k8s.io/v1`) declares: one per
/// served version. Errors name the missing field.
pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural: Required value")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind: Required value")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let short_names: Vec<String> = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let categories: Vec<String> = names
        .get("categories")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            return Err(
                "spec.scope: Unsupported value; supported values: \"Cluster\", \"Namespaced\""
                    .into(),
            );
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions: Required value")?;
    let mut types = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        let mut subresources = Vec::new();
        let mut scale_spec_path = None;
        let mut scale_status_path = None;
        if let Some(sub) = v.get("subresources") {
            if sub.get("status").is_some() {
                subresources.push(Subresource::Status);
            }
            if let Some(scale) = sub.get("scale") {
                subresources.push(Subresource::Scale);
                scale_spec_path = scale
                    .get("specReplicasPath")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                scale_status_path = scale
                    .get("statusReplicasPath")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        types.push(ResourceType {
            group: group.to_string(),
            version: name.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            kind: kind.to_string(),
            namespaced,
            short_names: short_names.clone(),
            categories: categories.clone(),
            subresources,
            has_generation: true,
            store: StoreKey {
                group: group.to_string(),
                resource: plural.to_string(),
            },
            view: View::Native,
            scale_spec_path,
            scale_status_path,
        });
    }
    if types.is_empty() {
        return Err(
            "spec.versions: Invalid value: must have exactly one version marked as served".into(),
        );
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_k8s_io_shares_the_core_event_store() {
        let r = Registry::builtin();
        let v1 = r.lookup("events.k8s.io", "v1", "events").unwrap();
        let core = r.lookup("", "v1", "events").unwrap();
        assert_eq!(v1.store, core.store);
        assert_eq!(v1.view, View::EventsV1);
    }

    #[test]
    fn discovery_lists_subresources_with_scale_group() {
        let r = Registry::builtin();
        let list = r.resource_list("apps", "v1").unwrap();
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(r.resource_list("apps", "v2").is_none());
    }

    #[test]
    fn crd_declares_served_versions_with_scope() {
        let crd = json!({"spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wg"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                         {"name": "v0", "served": false}]}});
        let types = types_from_crd(&crd).unwrap();
        assert_eq!(types.len(), 1);
        assert!(!types[0].namespaced);
        assert_eq!(types[0].singular, "widget");
        assert!(types[0].has_subresource(Subresource::Status));
        let bad = json!({"spec": {"group": "example.com", "names": {"plural": "w", "kind": "W"}, "versions": []}});
        assert!(types_from_crd(&bad).unwrap_err().starts_with("spec.scope"));
    }
}

//! `mesh-detect`: which service meshes run in the cluster (a control-plane Service exists),
//! whether this workload's own pod is meshed, and what share of pods is. Everything is read
//! from metadata (Service names, pod labels and annotations that the meshes' injectors write),
//! so the decision is a pure function over fixtures; the job only lists.

use serde_json::{Value, json};

use crate::cluster::{ClusterClient, ClusterError, ResourceRef, Selectors};
use crate::report::Values;

/// The meshes detected, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mesh {
    Istio,
    Linkerd,
    Kuma,
    KongMesh,
    Consul,
    TraefikMesh,
    AwsAppMesh,
}

pub const ALL_MESHES: [Mesh; 7] = [
    Mesh::Istio,
    Mesh::Linkerd,
    Mesh::Kuma,
    Mesh::KongMesh,
    Mesh::Consul,
    Mesh::TraefikMesh,
    Mesh::AwsAppMesh,
];

impl Mesh {
    pub fn as_str(self) -> &'static str {
        match self {
            Mesh::Istio => "istio",
            Mesh::Linkerd => "linkerd",
            Mesh::Kuma => "kuma",
            Mesh::KongMesh => "kong-mesh",
            Mesh::Consul => "consul",
            Mesh::TraefikMesh => "traefik-mesh",
            Mesh::AwsAppMesh => "aws-app-mesh",
        }
    }

    /// Names of the Services its control plane installs (any namespace).
    fn control_plane_services(self) -> &'static [&'static str] {
        match self {
            Mesh::Istio => &["istiod"],
            Mesh::Linkerd => &["linkerd-destination", "linkerd-identity"],
            Mesh::Kuma => &["kuma-control-plane"],
            Mesh::KongMesh => &["kong-mesh-control-plane"],
            Mesh::Consul => &["consul-server", "consul-connect-injector"],
            Mesh::TraefikMesh => &["traefik-mesh-controller", "maesh-controller"],
            Mesh::AwsAppMesh => &["appmesh-controller-webhook-service"],
        }
    }

    /// Whether the pod carries this mesh's injection marks. Traefik Mesh has no sidecar, so it
    /// never marks pods; Kuma and Kong Mesh share `kuma.io/` marks (see [`detect`]).
    fn marks(self, pod: &PodMeta) -> bool {
        let ann = |k: &str| pod.annotations.get(k).map(String::as_str);
        let label = |k: &str| pod.labels.get(k).map(String::as_str);
        match self {
            Mesh::Istio => {
                ann("sidecar.istio.io/status").is_some()
                    || label("security.istio.io/tlsMode") == Some("istio")
                    || ann("ambient.istio.io/redirection") == Some("enabled")
            }
            Mesh::Linkerd => {
                ann("linkerd.io/proxy-version").is_some()
                    || label("linkerd.io/control-plane-ns").is_some()
            }
            Mesh::Kuma | Mesh::KongMesh => ann("kuma.io/sidecar-injected") == Some("true"),
            Mesh::Consul => ann("consul.hashicorp.com/connect-inject-status") == Some("injected"),
            Mesh::TraefikMesh => false,
            Mesh::AwsAppMesh => {
                ann("appmesh.k8s.aws/mesh").is_some()
                    || ann("appmesh.k8s.aws/virtualNode").is_some()
            }
        }
    }
}

/// Pod metadata as detection needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// What detection looks at.
#[derive(Clone, Debug, Default)]
pub struct MeshInputs {
    /// (namespace, name) of every Service.
    pub services: Vec<(String, String)>,
    pub pods: Vec<PodMeta>,
    /// This workload's own pod, when known (downward API `POD_NAMESPACE`/`POD_NAME`).
    pub this_pod: Option<(String, String)>,
}

/// One mesh's findings.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshFinding {
    pub mesh: Mesh,
    pub control_plane: bool,
    /// `None` for meshes without per-pod marks (Traefik Mesh).
    pub pods_meshed: Option<usize>,
    /// `None` when this pod is unknown or the mesh has no per-pod marks.
    pub this_pod_meshed: Option<bool>,
}

/// Findings for every mesh. Pods with `kuma.io/` marks count for Kong Mesh when its control
/// plane is present and Kuma's is not (Kong Mesh is built on Kuma and marks pods the same way).
pub fn detect(inputs: &MeshInputs) -> Vec<MeshFinding> {
    let present = |m: Mesh| {
        inputs
            .services
            .iter()
            .any(|(_, name)| m.control_plane_services().contains(&name.as_str()))
    };
    let kuma_marks_are_kong = present(Mesh::KongMesh) && !present(Mesh::Kuma);
    let this_pod = inputs.this_pod.as_ref().and_then(|(ns, name)| {
        inputs
            .pods
            .iter()
            .find(|p| &p.namespace == ns && &p.name == name)
    });
    ALL_MESHES
        .iter()
        .map(|&mesh| {
            let control_plane = present(mesh);
            let owns_marks = match mesh {
                Mesh::TraefikMesh => false,
                Mesh::Kuma => !kuma_marks_are_kong,
                Mesh::KongMesh => kuma_marks_are_kong,
                _ => true,
            };
            let pods_meshed = match mesh {
                Mesh::TraefikMesh => None,
                _ if owns_marks => Some(inputs.pods.iter().filter(|p| mesh.marks(p)).count()),
                _ => Some(0),
            };
            let this_pod_meshed = match (mesh, inputs.this_pod.as_ref()) {
                (Mesh::TraefikMesh, _) | (_, None) => None,
                (_, Some(_)) => Some(owns_marks && this_pod.is_some_and(|p| mesh.marks(p))),
            };
            MeshFinding {
                mesh,
                control_plane,
                pods_meshed,
                this_pod_meshed,
            }
        })
        .collect()
}

/// Report values: one object per mesh, plus the pod total the shares are relative to.
pub fn mesh_values(inputs: &MeshInputs) -> Values {
    let total = inputs.pods.len();
    let mut v = Values::new();
    v.insert("pods_total".into(), json!(total));
    for f in detect(inputs) {
        let mut m = serde_json::Map::new();
        m.insert("control_plane".into(), json!(f.control_plane));
        if let Some(n) = f.pods_meshed {
            m.insert("pods_meshed".into(), json!(n));
            let percent = if total == 0 {
                0.0
            } else {
                (n as f64) * 100.0 / (total as f64)
            };
            m.insert(
                "pods_meshed_percent".into(),
                json!((percent * 10.0).round() / 10.0),
            );
        }
        if let Some(b) = f.this_pod_meshed {
            m.insert("this_pod_meshed".into(), json!(b));
        }
        v.insert(f.mesh.as_str().into(), Value::Object(m));
    }
    v
}

pub async fn run(
    cluster: &ClusterClient,
    this_pod: Option<(String, String)>,
) -> Result<Values, ClusterError> {
    let services = cluster
        .list_metadata(
            &ResourceRef::new("", "v1", "services"),
            &Selectors::default(),
        )
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.namespace.unwrap_or_default(), m.name.unwrap_or_default()))
        .collect();
    let pods = cluster
        .list_metadata(&ResourceRef::new("", "v1", "pods"), &Selectors::default())
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|m| PodMeta {
            namespace: m.namespace.unwrap_or_default(),
            name: m.name.unwrap_or_default(),
            labels: m.labels.unwrap_or_default(),
            annotations: m.annotations.unwrap_or_default(),
        })
        .collect();
    Ok(mesh_values(&MeshInputs {
        services,
        pods,
        this_pod,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn svc(ns: &str, name: &str) -> (String, String) {
        (ns.to_string(), name.to_string())
    }

    fn finding(inputs: &MeshInputs, mesh: Mesh) -> MeshFinding {
        detect(inputs)
            .into_iter()
            .find(|f| f.mesh == mesh)
            .unwrap_or_else(|| panic!("no finding for {mesh:?}"))
    }

    #[test]
    fn every_mesh_from_its_fixture() {
        struct Case {
            mesh: Mesh,
            service: (&'static str, &'static str),
            meshed_pod: PodMeta,
        }
        let cases = [
            Case {
                mesh: Mesh::Istio,
                service: ("istio-system", "istiod"),
                meshed_pod: pod(
                    "app",
                    "web",
                    &[],
                    &[(
                        "sidecar.istio.io/status",
                        "{\"containers\":[\"istio-proxy\"]}",
                    )],
                ),
            },
            Case {
                mesh: Mesh::Linkerd,
                service: ("linkerd", "linkerd-destination"),
                meshed_pod: pod(
                    "app",
                    "web",
                    &[("linkerd.io/control-plane-ns", "linkerd")],
                    &[("linkerd.io/proxy-version", "stable-2.14.1")],
                ),
            },
            Case {
                mesh: Mesh::Kuma,
                service: ("kuma-system", "kuma-control-plane"),
                meshed_pod: pod("app", "web", &[], &[("kuma.io/sidecar-injected", "true")]),
            },
            Case {
                mesh: Mesh::KongMesh,
                service: ("kong-mesh-system", "kong-mesh-control-plane"),
                meshed_pod: pod("app", "web", &[], &[("kuma.io/sidecar-injected", "true")]),
            },
            Case {
                mesh: Mesh::Consul,
                service: ("consul", "consul-server"),
                meshed_pod: pod(
                    "app",
                    "web",
                    &[],
                    &[("consul.hashicorp.com/connect-inject-status", "injected")],
                ),
            },
            Case {
                mesh: Mesh::AwsAppMesh,
                service: ("appmesh-system", "appmesh-controller-webhook-service"),
                meshed_pod: pod("app", "web", &[], &[("appmesh.k8s.aws/mesh", "my-mesh")]),
            },
        ];
        for c in cases {
            let inputs = MeshInputs {
                services: vec![svc(c.service.0, c.service.1), svc("default", "kubernetes")],
                pods: vec![
                    c.meshed_pod.clone(),
                    pod("app", "db", &[], &[]),
                    pod("kube-system", "dns", &[], &[]),
                    pod("app", "cache", &[], &[]),
                ],
                this_pod: Some(("app".into(), "web".into())),
            };
            let f = finding(&inputs, c.mesh);
            assert!(f.control_plane, "{:?}: control plane", c.mesh);
            assert_eq!(f.pods_meshed, Some(1), "{:?}: meshed pods", c.mesh);
            assert_eq!(f.this_pod_meshed, Some(true), "{:?}: this pod", c.mesh);
            for other in ALL_MESHES.iter().filter(|m| **m != c.mesh) {
                let o = finding(&inputs, *other);
                assert!(
                    !o.control_plane,
                    "{:?} fixture shows {other:?} control plane",
                    c.mesh
                );
                assert_ne!(
                    o.this_pod_meshed,
                    Some(true),
                    "{:?} fixture puts this pod in {other:?}",
                    c.mesh
                );
            }
            let values = mesh_values(&inputs);
            assert_eq!(
                values[c.mesh.as_str()]["pods_meshed_percent"],
                json!(25.0),
                "{:?}",
                c.mesh
            );
        }
    }

    #[test]
    fn traefik_mesh_has_a_control_plane_but_no_pod_marks() {
        let inputs = MeshInputs {
            services: vec![svc("traefik-mesh", "traefik-mesh-controller")],
            pods: vec![pod("app", "web", &[], &[])],
            this_pod: Some(("app".into(), "web".into())),
        };
        let f = finding(&inputs, Mesh::TraefikMesh);
        assert!(f.control_plane);
        assert_eq!((f.pods_meshed, f.this_pod_meshed), (None, None));
    }

    #[test]
    fn no_mesh_and_unknown_pod() {
        let inputs = MeshInputs {
            services: vec![svc("default", "kubernetes")],
            pods: vec![pod("app", "web", &[], &[])],
            this_pod: None,
        };
        for f in detect(&inputs) {
            assert!(!f.control_plane, "{:?}", f.mesh);
            assert_eq!(f.this_pod_meshed, None);
            assert!(f.pods_meshed.unwrap_or(0) == 0);
        }
        assert_eq!(
            mesh_values(&MeshInputs::default())["istio"]["pods_meshed_percent"],
            json!(0.0)
        );
    }

    #[test]
    fn this_pod_outside_the_mesh() {
        let inputs = MeshInputs {
            services: vec![svc("istio-system", "istiod")],
            pods: vec![
                pod("app", "web", &[], &[("sidecar.istio.io/status", "{}")]),
                pod("kausal", "agent", &[], &[]),
            ],
            this_pod: Some(("kausal".into(), "agent".into())),
        };
        let f = finding(&inputs, Mesh::Istio);
        assert_eq!((f.pods_meshed, f.this_pod_meshed), (Some(1), Some(false)));
    }
}

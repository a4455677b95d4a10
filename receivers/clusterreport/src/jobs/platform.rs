//! `identify-platform`: which Kubernetes this is — version, semver, architecture and the
//! provider (GKE, EKS, AKS, kind, k3s, rke2, OpenShift). Detection is a pure function over the
//! version string and node facts, so every provider is table-tested on fixtures; the job only
//! fetches those inputs.

use std::collections::BTreeSet;

use serde_json::json;

use crate::cluster::{ClusterClient, ClusterError, NodeFacts};
use crate::report::Values;

/// Where a cluster runs, as far as its version string and nodes tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Gke,
    Eks,
    Aks,
    Kind,
    K3s,
    Rke2,
    OpenShift,
    Unknown,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Gke => "GKE",
            Provider::Eks => "EKS",
            Provider::Aks => "AKS",
            Provider::Kind => "kind",
            Provider::K3s => "k3s",
            Provider::Rke2 => "rke2",
            Provider::OpenShift => "OpenShift",
            Provider::Unknown => "unknown",
        }
    }
}

/// Which evidence decided the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    Version,
    Label,
    Annotation,
    ProviderId,
    None,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Version => "version",
            Evidence::Label => "label",
            Evidence::Annotation => "annotation",
            Evidence::ProviderId => "provider_id",
            Evidence::None => "none",
        }
    }
}

/// Distributions first (an OpenShift or rke2 cluster on AWS still has `aws://` provider IDs),
/// then managed services' node labels, then the cloud of the provider IDs.
const DISTRIBUTION_LABELS: &[(&str, Provider)] = &[
    ("node.openshift.io/os_id", Provider::OpenShift),
    ("node.kubernetes.io/instance-type=k3s", Provider::K3s),
    ("node.kubernetes.io/instance-type=rke2", Provider::Rke2),
];
const DISTRIBUTION_ANNOTATIONS: &[(&str, Provider)] = &[
    (
        "machineconfiguration.openshift.io/currentConfig",
        Provider::OpenShift,
    ),
    ("rke2.io/node-args", Provider::Rke2),
    ("rke2.io/hostname", Provider::Rke2),
    ("k3s.io/node-args", Provider::K3s),
    ("k3s.io/hostname", Provider::K3s),
];
const MANAGED_LABELS: &[(&str, Provider)] = &[
    ("cloud.google.com/gke-nodepool", Provider::Gke),
    ("cloud.google.com/gke-os-distribution", Provider::Gke),
    ("eks.amazonaws.com/nodegroup", Provider::Eks),
    ("eks.amazonaws.com/compute-type", Provider::Eks),
    ("kubernetes.azure.com/cluster", Provider::Aks),
    ("kubernetes.azure.com/agentpool", Provider::Aks),
];
const PROVIDER_ID_SCHEMES: &[(&str, Provider)] = &[
    ("gce", Provider::Gke),
    ("aws", Provider::Eks),
    ("azure", Provider::Aks),
    ("kind", Provider::Kind),
    ("k3s", Provider::K3s),
    ("rke2", Provider::Rke2),
];

/// The provider named by the version string's suffix (`v1.29.1-gke.1589000`,
/// `v1.28.5-eks-5e0fdde`, `v1.28.5+k3s1`, `v1.28.5+rke2r1`), if any.
pub fn provider_from_version(git_version: &str) -> Option<Provider> {
    let v = git_version.to_ascii_lowercase();
    if v.contains("-gke.") {
        Some(Provider::Gke)
    } else if v.contains("-eks-") {
        Some(Provider::Eks)
    } else if v.contains("+k3s") {
        Some(Provider::K3s)
    } else if v.contains("+rke2") {
        Some(Provider::Rke2)
    } else {
        None
    }
}

fn label_matches(labels: &std::collections::BTreeMap<String, String>, rule: &str) -> bool {
    match rule.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(rule),
    }
}

/// `gce` from `gce://project/zone/name`.
pub fn provider_id_scheme(provider_id: &str) -> Option<&str> {
    provider_id
        .split_once("://")
        .map(|(scheme, _)| scheme)
        .filter(|s| !s.is_empty())
}

/// The provider and the evidence that decided it.
pub fn detect_provider(git_version: &str, nodes: &[NodeFacts]) -> (Provider, Evidence) {
    if let Some(p) = provider_from_version(git_version) {
        return (p, Evidence::Version);
    }
    for (rule, p) in DISTRIBUTION_LABELS {
        if nodes.iter().any(|n| label_matches(&n.labels, rule)) {
            return (*p, Evidence::Label);
        }
    }
    for (key, p) in DISTRIBUTION_ANNOTATIONS {
        if nodes.iter().any(|n| n.annotations.contains_key(*key)) {
            return (*p, Evidence::Annotation);
        }
    }
    for (rule, p) in MANAGED_LABELS {
        if nodes.iter().any(|n| label_matches(&n.labels, rule)) {
            return (*p, Evidence::Label);
        }
    }
    for (scheme, p) in PROVIDER_ID_SCHEMES {
        if nodes
            .iter()
            .filter_map(|n| n.provider_id.as_deref().and_then(provider_id_scheme))
            .any(|s| s == *scheme)
        {
            return (*p, Evidence::ProviderId);
        }
    }
    (Provider::Unknown, Evidence::None)
}

/// `1.29.1` from `v1.29.1-gke.1589000`; `None` when there is no `major.minor[.patch]`.
pub fn semver(git_version: &str) -> Option<String> {
    let core = git_version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() < 2
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let patch = parts.get(2).copied().unwrap_or("0");
    Some(format!("{}.{}.{}", parts[0], parts[1], patch))
}

/// The report values from already-fetched inputs.
pub fn platform_values(git_version: &str, platform: &str, nodes: &[NodeFacts]) -> Values {
    let (provider, evidence) = detect_provider(git_version, nodes);
    let mut v = Values::new();
    v.insert("k8s_version".into(), json!(git_version));
    if let Some(s) = semver(git_version) {
        v.insert("k8s_semver".into(), json!(s));
    }
    if let Some((os, arch)) = platform.split_once('/') {
        v.insert("k8s_os".into(), json!(os));
        v.insert("k8s_arch".into(), json!(arch));
    }
    v.insert("k8s_provider".into(), json!(provider.as_str()));
    v.insert("k8s_provider_evidence".into(), json!(evidence.as_str()));
    let arches: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| {
            n.architecture
                .as_deref()
                .or_else(|| n.labels.get("kubernetes.io/arch").map(String::as_str))
        })
        .collect();
    v.insert(
        "k8s_node_architectures".into(),
        json!(arches.into_iter().collect::<Vec<_>>().join(",")),
    );
    let schemes: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.provider_id.as_deref().and_then(provider_id_scheme))
        .collect();
    v.insert(
        "k8s_node_provider_ids".into(),
        json!(schemes.into_iter().collect::<Vec<_>>().join(",")),
    );
    v
}

pub async fn run(cluster: &ClusterClient) -> Result<Values, ClusterError> {
    let version = cluster.version().await?;
    let nodes = cluster.nodes().await?;
    Ok(platform_values(
        &version.git_version,
        &version.platform,
        &nodes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        provider_id: Option<&str>,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> NodeFacts {
        NodeFacts {
            name: "n".into(),
            provider_id: provider_id.map(str::to_string),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            architecture: None,
        }
    }

    #[test]
    fn every_provider_from_its_fixture() {
        struct Case {
            name: &'static str,
            version: &'static str,
            nodes: Vec<NodeFacts>,
            want: Provider,
            evidence: Evidence,
        }
        let cases = vec![
            Case {
                name: "gke version",
                version: "v1.29.1-gke.1589000",
                nodes: vec![],
                want: Provider::Gke,
                evidence: Evidence::Version,
            },
            Case {
                name: "gke label",
                version: "v1.29.1",
                nodes: vec![node(
                    None,
                    &[("cloud.google.com/gke-nodepool", "pool-1")],
                    &[],
                )],
                want: Provider::Gke,
                evidence: Evidence::Label,
            },
            Case {
                name: "gke provider id",
                version: "v1.29.1",
                nodes: vec![node(Some("gce://proj/europe-west1-b/gke-node-1"), &[], &[])],
                want: Provider::Gke,
                evidence: Evidence::ProviderId,
            },
            Case {
                name: "eks version",
                version: "v1.28.5-eks-5e0fdde",
                nodes: vec![],
                want: Provider::Eks,
                evidence: Evidence::Version,
            },
            Case {
                name: "eks label",
                version: "v1.28.5",
                nodes: vec![node(
                    Some("aws:///eu-west-1a/i-0abc"),
                    &[("eks.amazonaws.com/nodegroup", "ng-1")],
                    &[],
                )],
                want: Provider::Eks,
                evidence: Evidence::Label,
            },
            Case {
                name: "eks provider id",
                version: "v1.28.5",
                nodes: vec![node(Some("aws:///eu-west-1a/i-0abc"), &[], &[])],
                want: Provider::Eks,
                evidence: Evidence::ProviderId,
            },
            Case {
                name: "aks label",
                version: "v1.28.3",
                nodes: vec![node(
                    None,
                    &[("kubernetes.azure.com/cluster", "MC_rg_aks_westeurope")],
                    &[],
                )],
                want: Provider::Aks,
                evidence: Evidence::Label,
            },
            Case {
                name: "aks provider id",
                version: "v1.28.3",
                nodes: vec![node(
                    Some(
                        "azure:///subscriptions/x/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool/virtualMachines/0",
                    ),
                    &[],
                    &[],
                )],
                want: Provider::Aks,
                evidence: Evidence::ProviderId,
            },
            Case {
                name: "kind provider id",
                version: "v1.31.0",
                nodes: vec![node(
                    Some("kind://docker/kind/kind-control-plane"),
                    &[],
                    &[],
                )],
                want: Provider::Kind,
                evidence: Evidence::ProviderId,
            },
            Case {
                name: "k3s version",
                version: "v1.28.5+k3s1",
                nodes: vec![],
                want: Provider::K3s,
                evidence: Evidence::Version,
            },
            Case {
                name: "k3s label",
                version: "v1.28.5",
                nodes: vec![node(
                    Some("k3s://server-1"),
                    &[("node.kubernetes.io/instance-type", "k3s")],
                    &[],
                )],
                want: Provider::K3s,
                evidence: Evidence::Label,
            },
            Case {
                name: "k3s annotation",
                version: "v1.28.5",
                nodes: vec![node(None, &[], &[("k3s.io/node-args", "[\"server\"]")])],
                want: Provider::K3s,
                evidence: Evidence::Annotation,
            },
            Case {
                name: "rke2 version",
                version: "v1.28.5+rke2r1",
                nodes: vec![],
                want: Provider::Rke2,
                evidence: Evidence::Version,
            },
            Case {
                name: "rke2 on aws by annotation",
                version: "v1.28.5",
                nodes: vec![node(
                    Some("aws:///us-east-1a/i-1"),
                    &[],
                    &[("rke2.io/node-args", "[\"server\"]")],
                )],
                want: Provider::Rke2,
                evidence: Evidence::Annotation,
            },
            Case {
                name: "rke2 label",
                version: "v1.28.5",
                nodes: vec![node(
                    None,
                    &[("node.kubernetes.io/instance-type", "rke2")],
                    &[],
                )],
                want: Provider::Rke2,
                evidence: Evidence::Label,
            },
            Case {
                name: "openshift on aws by label",
                version: "v1.27.6+f67aeb3",
                nodes: vec![node(
                    Some("aws:///us-east-1a/i-2"),
                    &[("node.openshift.io/os_id", "rhcos")],
                    &[],
                )],
                want: Provider::OpenShift,
                evidence: Evidence::Label,
            },
            Case {
                name: "openshift annotation",
                version: "v1.27.6+f67aeb3",
                nodes: vec![node(
                    None,
                    &[],
                    &[(
                        "machineconfiguration.openshift.io/currentConfig",
                        "rendered-worker-1",
                    )],
                )],
                want: Provider::OpenShift,
                evidence: Evidence::Annotation,
            },
            Case {
                name: "plain",
                version: "v1.31.0",
                nodes: vec![node(None, &[("kubernetes.io/arch", "amd64")], &[])],
                want: Provider::Unknown,
                evidence: Evidence::None,
            },
            Case {
                name: "no nodes",
                version: "",
                nodes: vec![],
                want: Provider::Unknown,
                evidence: Evidence::None,
            },
        ];
        for c in cases {
            assert_eq!(
                detect_provider(c.version, &c.nodes),
                (c.want, c.evidence),
                "case {}",
                c.name
            );
        }
    }

    #[test]
    fn semver_of_version_strings() {
        for (v, want) in [
            ("v1.29.1-gke.1589000", Some("1.29.1")),
            ("v1.28.5+k3s1", Some("1.28.5")),
            ("1.30", Some("1.30.0")),
            ("v1.31.0", Some("1.31.0")),
            ("garbage", None),
            ("v1.x.0", None),
            ("", None),
        ] {
            assert_eq!(semver(v).as_deref(), want, "{v}");
        }
    }

    #[test]
    fn values_name_architecture_and_provider_ids() {
        let mut n = node(Some("kind://docker/kind/kind-worker"), &[], &[]);
        n.architecture = Some("arm64".into());
        let v = platform_values("v1.31.0", "linux/amd64", &[n]);
        assert_eq!(v["k8s_arch"], json!("amd64"));
        assert_eq!(v["k8s_node_architectures"], json!("arm64"));
        assert_eq!(v["k8s_node_provider_ids"], json!("kind"));
        assert_eq!(v["k8s_provider"], json!("kind"));
        assert_eq!(v["k8s_semver"], json!("1.31.0"));
    }
}

//! The audit policy in kube-apiserver's own format (`audit.k8s.io/v1` `Policy`): rules matched
//! in order, the first match deciding the level and the stages left out. Parsing and matching
//! are pure; the policy does not know about HTTP or backends.

use kausal_core::audit::{Level, Stage};
use serde::Deserialize;

/// `audit.k8s.io/v1` `GroupResources`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// `audit.k8s.io/v1` `PolicyRule`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// `audit.k8s.io/v1` `Policy`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("audit policy is not valid YAML for audit.k8s.io/v1 Policy: {0}")]
    Parse(String),
    #[error("audit policy has kind {0:?}; expected Policy")]
    WrongKind(String),
    #[error("audit policy has apiVersion {0:?}; expected audit.k8s.io/v1")]
    WrongApiVersion(String),
    #[error("cannot read audit policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// What a request looks like to the policy (kube's `authorizer.Attributes`).
#[derive(Clone, Debug, Default)]
pub struct RequestAttributes<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    /// Whether this is a request for an API resource (vs. `/healthz`, `/version`, …).
    pub resource_request: bool,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub path: &'a str,
}

/// What the policy decided for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditDecision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// The policy used when none is configured.
///
/// - nothing for health checks and discovery, and nothing for Events (which are high-volume
///   and reach kausal through its own watch; GKE's and GCE's policies do the same);
/// - Metadata for Secrets, ConfigMaps and token reviews, so their data never lands in a record;
/// - Metadata for reads (get/list/watch), which would otherwise copy whole lists into records;
/// - RequestResponse for every other write, which is what kausal turns into diffs;
/// - Metadata for anything left.
pub const DEFAULT_POLICY_YAML: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]
  - level: None
    resources:
      - group: ""
        resources: ["events"]
      - group: "events.k8s.io"
        resources: ["events"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
"#;

impl Policy {
    pub fn parse(yaml: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            serde_saphyr::from_str(yaml).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if let Some(kind) = policy.kind.as_deref()
            && kind != "Policy"
        {
            return Err(PolicyError::WrongKind(kind.to_string()));
        }
        if let Some(v) = policy.api_version.as_deref()
            && v != "audit.k8s.io/v1"
        {
            return Err(PolicyError::WrongApiVersion(v.to_string()));
        }
        Ok(policy)
    }

    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text)
    }

    pub fn default_policy() -> Policy {
        match Policy::parse(DEFAULT_POLICY_YAML) {
            Ok(p) => p,
            Err(e) => {
                // The constant is tested below; this only guards against a broken edit.
                tracing::error!(error = %e, "built-in audit policy does not parse; auditing everything at Metadata");
                Policy {
                    api_version: None,
                    kind: None,
                    metadata: None,
                    rules: Vec::new(),
                    omit_stages: Vec::new(),
                    omit_managed_fields: false,
                }
            }
        }
    }

    /// The first matching rule decides; no match means level None.
    pub fn evaluate(&self, attrs: &RequestAttributes<'_>) -> AuditDecision {
        for rule in &self.rules {
            if rule.matches(attrs) {
                let mut omit = self.omit_stages.clone();
                for s in &rule.omit_stages {
                    if !omit.contains(s) {
                        omit.push(*s);
                    }
                }
                return AuditDecision {
                    level: rule.level,
                    omit_stages: omit,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        AuditDecision {
            level: Level::None,
            omit_stages: self.omit_stages.clone(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

impl PolicyRule {
    fn matches(&self, a: &RequestAttributes<'_>) -> bool {
        if !self.users.is_empty() && !self.users.iter().any(|u| u == a.username) {
            return false;
        }
        if !self.user_groups.is_empty() && !self.user_groups.iter().any(|g| a.groups.contains(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == a.verb) {
            return false;
        }
        if self.resources.is_empty()
            && self.non_resource_urls.is_empty()
            && self.namespaces.is_empty()
        {
            return true;
        }
        if a.resource_request {
            self.matches_resource(a)
        } else {
            self.matches_non_resource(a)
        }
    }

    fn matches_resource(&self, a: &RequestAttributes<'_>) -> bool {
        // A rule naming only non-resource URLs does not match resource requests.
        if self.resources.is_empty() && self.namespaces.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        self.resources.iter().any(|gr| {
            if gr.group != a.api_group {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !gr.resource_names.iter().any(|n| n == a.name) {
                return false;
            }
            gr.resources.iter().any(|r| {
                r == "*"
                    || *r == combined
                    || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource))
                    || r.strip_suffix("/*") == Some(a.resource)
            })
        })
    }

    fn matches_non_resource(&self, a: &RequestAttributes<'_>) -> bool {
        self.non_resource_urls
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => a.path.starts_with(prefix),
                None => pattern == a.path,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
    ) -> RequestAttributes<'a> {
        RequestAttributes {
            username: "alice",
            verb,
            resource_request: true,
            api_group: group,
            resource,
            subresource: sub,
            namespace: "default",
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_levels() {
        let p = Policy::default_policy();
        assert_eq!(
            p.evaluate(&attrs("update", "apps", "deployments", ""))
                .level,
            Level::RequestResponse
        );
        assert_eq!(
            p.evaluate(&attrs("patch", "apps", "replicasets", "status"))
                .level,
            Level::RequestResponse
        );
        assert_eq!(
            p.evaluate(&attrs("create", "", "pods", "")).level,
            Level::RequestResponse
        );
        assert_eq!(
            p.evaluate(&attrs("create", "", "secrets", "")).level,
            Level::Metadata
        );
        assert_eq!(
            p.evaluate(&attrs("get", "", "secrets", "")).level,
            Level::Metadata
        );
        assert_eq!(
            p.evaluate(&attrs("list", "", "pods", "")).level,
            Level::Metadata
        );
        assert_eq!(
            p.evaluate(&attrs("create", "events.k8s.io", "events", ""))
                .level,
            Level::None
        );
        let health = RequestAttributes {
            verb: "get",
            path: "/healthz",
            ..Default::default()
        };
        assert_eq!(p.evaluate(&health).level, Level::None);
    }

    #[test]
    fn rules_match_users_groups_namespaces_and_resource_forms() {
        let p = Policy::parse(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-proxy"]
  - level: Request
    userGroups: ["system:nodes"]
    resources: [{group: "", resources: ["pods/*"]}]
  - level: RequestResponse
    namespaces: ["prod"]
    resources: [{group: "apps", resources: ["*/scale"]}]
    omitStages: [ResponseStarted]
  - level: Metadata
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["cfg"]}]
"#,
        )
        .unwrap();
        let mut a = attrs("update", "", "pods", "status");
        a.username = "system:kube-proxy";
        assert_eq!(p.evaluate(&a).level, Level::None);
        let groups = vec!["system:nodes".to_string()];
        let mut a = attrs("update", "", "pods", "status");
        a.groups = &groups;
        assert_eq!(p.evaluate(&a).level, Level::Request);
        let mut a = attrs("update", "apps", "deployments", "scale");
        assert_eq!(p.evaluate(&a).level, Level::None, "wrong namespace");
        a.namespace = "prod";
        let d = p.evaluate(&a);
        assert_eq!(d.level, Level::RequestResponse);
        assert_eq!(
            d.omit_stages,
            vec![Stage::RequestReceived, Stage::ResponseStarted]
        );
        let mut a = attrs("get", "", "configmaps", "");
        a.name = "cfg";
        assert_eq!(p.evaluate(&a).level, Level::Metadata);
        a.name = "other";
        assert_eq!(p.evaluate(&a).level, Level::None);
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        assert!(matches!(
            Policy::parse("kind: Pod\nrules: []"),
            Err(PolicyError::WrongKind(_))
        ));
        let err = Policy::parse("kind: Policy\nrules:\n  - level: Loud\n").unwrap_err();
        assert!(err.to_string().contains("Loud"), "{err}");
        assert!(Policy::parse("kind: Policy\nrulez: []").is_err());
    }
}

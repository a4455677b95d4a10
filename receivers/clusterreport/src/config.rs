//! The `clusterreport` receivers' configuration (shared by the logs and the gauges flavour):
//! the serde struct with documented defaults, `validate`, and the workflows it describes.
//! Nothing here touches the cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

use crate::jobs::{BUILTIN_JOBS, CountSpec, FIXED, Job, Workflow};
use crate::report::Values;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_SIGNAL: &str = "kausal-report";
pub const DEFAULT_PAGE_SIZE: u32 = 500;
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Built-in jobs that run when `workflows` is not set, each in a workflow of its own name.
pub const DEFAULT_JOBS: [&str; 4] = ["identify-platform", "cluster-state", "state", "mesh-detect"];

/// `receivers.clusterreport` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often to report after the first report at start.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Kubeconfig file; unset: in-cluster service account, `$KUBECONFIG`, `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Workflow name → job names (built-in jobs or keys of `counts`). Unset: one workflow per
    /// default job, plus `fixed` when `fixed` has values and `counts` when `counts` has jobs.
    #[serde(default)]
    pub workflows: Option<BTreeMap<String, Vec<String>>>,
    /// Values the `fixed` job reports as they are.
    #[serde(default)]
    pub fixed: BTreeMap<String, serde_json::Value>,
    /// Custom count jobs by name.
    #[serde(default)]
    pub counts: BTreeMap<String, CountSpec>,
    /// The report's signal name (a log record attribute; `tcplines` starts its line with it).
    #[serde(default = "default_signal")]
    pub signal: String,
    /// Extra resource attributes of the report.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// This workload's pod for `mesh-detect`; default `$POD_NAMESPACE`/`$POD_NAME`.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// Objects per list page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Longest a single job may take.
    #[serde(default = "default_job_timeout", with = "duration")]
    pub job_timeout: Duration,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
}

/// `leader_election:` — one replica reports, chosen by a coordination.k8s.io Lease.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    /// Lease name; default `kausal-<component id>` (`/` replaced by `-`).
    pub lease_name: Option<String>,
    /// Lease namespace; default `$POD_NAMESPACE`, else `default`.
    pub lease_namespace: Option<String>,
    /// How long a lease holds without renewal.
    #[serde(with = "duration")]
    pub lease_duration: Duration,
    /// How often the holder renews and the others try to acquire.
    #[serde(with = "duration")]
    pub retry_period: Duration,
    /// This replica's identity; default hostname plus process id.
    pub identity: Option<String>,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: None,
            lease_namespace: None,
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            identity: None,
        }
    }
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn default_signal() -> String {
    DEFAULT_SIGNAL.to_string()
}
fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn default_job_timeout() -> Duration {
    DEFAULT_JOB_TIMEOUT
}

impl Config {
    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(section.error("interval", "must be at least 1s"));
        }
        if self.page_size == 0 {
            return Err(section.error("page_size", "must be at least 1"));
        }
        if self.job_timeout.is_zero() {
            return Err(section.error("job_timeout", "must be more than 0s"));
        }
        if self.signal.is_empty() || self.signal.contains([';', '=', '\n', '\r']) {
            return Err(section.error(
                "signal",
                "must be non-empty, without ';', '=' or line breaks",
            ));
        }
        for (name, spec) in &self.counts {
            if BUILTIN_JOBS.contains(&name.as_str()) {
                return Err(section.error(
                    &format!("counts.{name}"),
                    "a count job may not take a built-in job's name",
                ));
            }
            if spec.version.is_empty() || spec.resource.is_empty() {
                return Err(section.error(
                    &format!("counts.{name}"),
                    "version and resource are required",
                ));
            }
        }
        let le = &self.leader_election;
        if le.enabled && (le.retry_period.is_zero() || le.lease_duration <= le.retry_period) {
            return Err(section.error(
                "leader_election",
                "lease_duration must be longer than retry_period, and retry_period more than 0s",
            ));
        }
        self.workflows()
            .map_err(|(key, m)| section.error(&key, m))?;
        Ok(())
    }

    fn fixed_values(&self) -> Values {
        self.fixed.clone().into_iter().collect()
    }

    /// The workflows to run; errors are (key under the section, message).
    pub fn workflows(&self) -> Result<Vec<Workflow>, (String, String)> {
        let fixed = self.fixed_values();
        let job = |name: &str| -> Option<Job> {
            Job::builtin(name, &fixed)
                .or_else(|| self.counts.get(name).map(|s| Job::Count(s.clone())))
        };
        match &self.workflows {
            Some(map) => {
                if map.is_empty() {
                    return Err(("workflows".into(), "at least one workflow is needed".into()));
                }
                map.iter()
                    .map(|(wf, names)| {
                        if names.is_empty() {
                            return Err((format!("workflows.{wf}"), "a workflow needs at least one job".into()));
                        }
                        let jobs = names
                            .iter()
                            .map(|n| {
                                job(n).map(|j| (n.clone(), j)).ok_or_else(|| {
                                    (
                                        format!("workflows.{wf}"),
                                        format!(
                                            "unknown job {n:?}; use a built-in job ({}) or a key of `counts`",
                                            BUILTIN_JOBS.join(", ")
                                        ),
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(Workflow { name: wf.clone(), jobs })
                    })
                    .collect()
            }
            None => {
                let mut out: Vec<Workflow> = DEFAULT_JOBS
                    .iter()
                    .filter_map(|n| {
                        job(n).map(|j| Workflow {
                            name: n.to_string(),
                            jobs: vec![(n.to_string(), j)],
                        })
                    })
                    .collect();
                if !fixed.is_empty() {
                    out.push(Workflow {
                        name: FIXED.into(),
                        jobs: vec![(FIXED.into(), Job::Fixed(fixed.clone()))],
                    });
                }
                if !self.counts.is_empty() {
                    out.push(Workflow {
                        name: "counts".into(),
                        jobs: self
                            .counts
                            .iter()
                            .map(|(n, s)| (n.clone(), Job::Count(s.clone())))
                            .collect(),
                    });
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let section =
            ComponentConfig::from_yaml("clusterreport", yaml).map_err(|e| e.0[0].clone())?;
        let c: Config = section.parse()?;
        c.validate(&section)?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert!(c.leader_election.enabled);
        let names: Vec<String> = c
            .workflows()
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, DEFAULT_JOBS);
    }

    #[test]
    fn workflows_with_counts_and_fixed() {
        let c = parse(
            "interval: 10m\nfixed: {product: kausal, replicas: 2}\ncounts:\n  deployments: {group: apps, version: v1, resource: deployments, label_selector: app=web}\nworkflows:\n  inventory: [deployments, fixed, state]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let w = c.workflows().unwrap_or_default();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].jobs
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["deployments", "fixed", "state"]
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key, msg) in [
            (
                "workflows: {w: [nope]}",
                "clusterreport.workflows.w",
                "unknown job \"nope\"",
            ),
            ("interval: 0s", "clusterreport.interval", "at least 1s"),
            (
                "counts: {state: {version: v1, resource: pods}}",
                "clusterreport.counts.state",
                "built-in",
            ),
            ("signal: 'a;b'", "clusterreport.signal", "';'"),
            (
                "leader_election: {lease_duration: 1s, retry_period: 2s}",
                "clusterreport.leader_election",
                "longer",
            ),
            ("bogus: 1", "clusterreport", "bogus"),
        ] {
            let e = parse(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert!(e.path.starts_with(key), "{yaml}: path {}", e.path);
            assert!(e.to_string().contains(msg), "{yaml}: {e}");
        }
    }
}

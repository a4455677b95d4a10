//! The job catalogue and the engine that runs workflows of jobs. A job gathers `{key: value}`;
//! a workflow is a named list of jobs whose values land under the workflow's name in the
//! report. All jobs of all workflows run concurrently, each with a timeout; a failed job is
//! recorded as `error.<job>` in its workflow and the other jobs' values are kept. The engine is
//! shared by the receiver and `kausal report run`.

pub mod mesh;
pub mod platform;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::{ClusterClient, ResourceRef, Selectors};
use crate::report::{Report, Values};

/// Names of the built-in jobs.
pub const IDENTIFY_PLATFORM: &str = "identify-platform";
pub const CLUSTER_STATE: &str = "cluster-state";
pub const STATE: &str = "state";
pub const MESH_DETECT: &str = "mesh-detect";
pub const FIXED: &str = "fixed";
pub const BUILTIN_JOBS: [&str; 5] = [IDENTIFY_PLATFORM, CLUSTER_STATE, STATE, MESH_DETECT, FIXED];

/// A count job from configuration: how many objects of one resource match the selectors.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    /// API group; empty (the default) for the core group.
    #[serde(default)]
    pub group: String,
    pub version: String,
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    /// Only this namespace (default: all namespaces).
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub label_selector: Option<String>,
    #[serde(default)]
    pub field_selector: Option<String>,
}

/// One job.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    IdentifyPlatform,
    ClusterState,
    State,
    MeshDetect,
    Fixed(Values),
    Count(CountSpec),
}

impl Job {
    /// A built-in job by name (`fixed` gets `fixed` values).
    pub fn builtin(name: &str, fixed: &Values) -> Option<Job> {
        Some(match name {
            IDENTIFY_PLATFORM => Job::IdentifyPlatform,
            CLUSTER_STATE => Job::ClusterState,
            STATE => Job::State,
            MESH_DETECT => Job::MeshDetect,
            FIXED => Job::Fixed(fixed.clone()),
            _ => return None,
        })
    }

    /// Whether the job talks to the cluster.
    pub fn needs_cluster(&self) -> bool {
        !matches!(self, Job::State | Job::Fixed(_))
    }
}

/// A named list of (job name, job).
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub jobs: Vec<(String, Job)>,
}

/// What jobs may use.
#[derive(Clone)]
pub struct JobContext {
    /// `None` when no job needs the cluster, or when connecting failed (`cluster_error`).
    pub cluster: Option<ClusterClient>,
    pub cluster_error: Option<String>,
    /// When this process started, for `uptime_seconds`.
    pub started: Instant,
    pub hostname: String,
    /// (namespace, name) of this workload's pod, when known.
    pub this_pod: Option<(String, String)>,
    pub job_timeout: Duration,
}

impl JobContext {
    /// A context for `workflows`: connects to the cluster only when a job needs it; a failed
    /// connection is kept as the reason those jobs fail.
    pub async fn for_workflows(
        workflows: &[Workflow],
        kubeconfig: Option<&std::path::Path>,
        page_size: u32,
        job_timeout: Duration,
        started: Instant,
        this_pod: Option<(String, String)>,
    ) -> JobContext {
        let needs_cluster = workflows
            .iter()
            .flat_map(|w| &w.jobs)
            .any(|(_, j)| j.needs_cluster());
        let (cluster, cluster_error) = if needs_cluster {
            match ClusterClient::connect(kubeconfig, page_size).await {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        JobContext {
            cluster,
            cluster_error,
            started,
            hostname: hostname(),
            this_pod,
            job_timeout,
        }
    }
}

/// Why one job produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("no cluster connection: {0}")]
    NoCluster(String),
    #[error("{0} is not served by this cluster")]
    NotServed(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// This host's name: `$HOSTNAME`, else the kernel's, else `unknown`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The objects `cluster-state` counts: (report key, group, versions to try, plural). Gateway API
/// kinds are counted where the group serves them, at the first served version.
const STATE_RESOURCES: &[(&str, &str, &[&str], &str)] = &[
    ("k8s_nodes_count", "", &["v1"], "nodes"),
    ("k8s_pods_count", "", &["v1"], "pods"),
    ("k8s_services_count", "", &["v1"], "services"),
    (
        "k8s_ingresses_count",
        "networking.k8s.io",
        &["v1"],
        "ingresses",
    ),
    (
        "k8s_gatewayclasses_count",
        GATEWAY_GROUP,
        &["v1", "v1beta1"],
        "gatewayclasses",
    ),
    (
        "k8s_gateways_count",
        GATEWAY_GROUP,
        &["v1", "v1beta1"],
        "gateways",
    ),
    (
        "k8s_httproutes_count",
        GATEWAY_GROUP,
        &["v1", "v1beta1"],
        "httproutes",
    ),
    (
        "k8s_grpcroutes_count",
        GATEWAY_GROUP,
        &["v1", "v1alpha2"],
        "grpcroutes",
    ),
    (
        "k8s_referencegrants_count",
        GATEWAY_GROUP,
        &["v1", "v1beta1"],
        "referencegrants",
    ),
    (
        "k8s_tlsroutes_count",
        GATEWAY_GROUP,
        &["v1alpha2"],
        "tlsroutes",
    ),
    (
        "k8s_tcproutes_count",
        GATEWAY_GROUP,
        &["v1alpha2"],
        "tcproutes",
    ),
    (
        "k8s_udproutes_count",
        GATEWAY_GROUP,
        &["v1alpha2"],
        "udproutes",
    ),
];
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

async fn cluster_state(cluster: &ClusterClient) -> Result<Values, JobError> {
    let lists = STATE_RESOURCES
        .iter()
        .map(|(key, group, versions, plural)| async move {
            for version in versions.iter() {
                if let Some(n) = cluster
                    .count(
                        &ResourceRef::new(group, version, plural),
                        &Selectors::default(),
                    )
                    .await?
                {
                    return Ok::<_, JobError>(Some((key.to_string(), n)));
                }
            }
            Ok(None)
        });
    let mut values = Values::new();
    for found in futures::future::join_all(lists).await {
        if let Some((key, n)) = found? {
            values.insert(key, json!(n));
        }
    }
    Ok(values)
}

async fn count(cluster: &ClusterClient, spec: &CountSpec) -> Result<Value, JobError> {
    let resource = ResourceRef::new(&spec.group, &spec.version, &spec.resource);
    let selectors = Selectors {
        namespace: spec.namespace.clone(),
        label_selector: spec.label_selector.clone(),
        field_selector: spec.field_selector.clone(),
    };
    match cluster.count(&resource, &selectors).await? {
        Some(n) => Ok(json!(n)),
        None => Err(JobError::NotServed(resource.to_string())),
    }
}

/// Runs one job to its values.
pub async fn run_job(name: &str, job: &Job, ctx: &JobContext) -> Result<Values, JobError> {
    let cluster = || {
        ctx.cluster.as_ref().ok_or_else(|| {
            JobError::NoCluster(
                ctx.cluster_error
                    .clone()
                    .unwrap_or_else(|| "not connected".to_string()),
            )
        })
    };
    let work = async {
        match job {
            Job::IdentifyPlatform => Ok(platform::run(cluster()?).await?),
            Job::ClusterState => cluster_state(cluster()?).await,
            Job::MeshDetect => Ok(mesh::run(cluster()?, ctx.this_pod.clone()).await?),
            Job::State => Ok(Values::from([
                (
                    "uptime_seconds".to_string(),
                    json!(ctx.started.elapsed().as_secs()),
                ),
                ("hostname".to_string(), json!(ctx.hostname)),
            ])),
            Job::Fixed(values) => Ok(values.clone()),
            Job::Count(spec) => Ok(Values::from([(
                name.to_string(),
                count(cluster()?, spec).await?,
            )])),
        }
    };
    match tokio::time::timeout(ctx.job_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(JobError::Timeout(ctx.job_timeout)),
    }
}

/// Runs every job of every workflow concurrently and assembles the report. Failures are
/// recorded as `error.<job>` in their workflow; the count of failed jobs is returned too.
pub async fn run_workflows(workflows: &[Workflow], ctx: &JobContext) -> (Report, usize) {
    let runs = workflows.iter().flat_map(|w| {
        w.jobs.iter().map(move |(name, job)| async move {
            (w.name.clone(), name.clone(), run_job(name, job, ctx).await)
        })
    });
    let results = futures::future::join_all(runs).await;
    let mut workflows_out: BTreeMap<String, Values> = workflows
        .iter()
        .map(|w| (w.name.clone(), Values::new()))
        .collect();
    let mut failed = 0;
    let mut count_keys = std::collections::BTreeSet::new();
    for (workflow, job, result) in results {
        let entry = workflows_out.entry(workflow.clone()).or_default();
        match result {
            Ok(values) => {
                let is_count = workflows
                    .iter()
                    .filter(|w| w.name == workflow)
                    .flat_map(|w| &w.jobs)
                    .any(|(n, j)| n == &job && matches!(j, Job::Count(_)));
                if is_count {
                    count_keys.insert((workflow.clone(), job.clone()));
                }
                entry.extend(values)
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(workflow = %workflow, job = %job, error = %e, "report job failed");
                entry.insert(format!("error.{job}"), json!(e.to_string()));
            }
        }
    }
    (
        Report {
            workflows: workflows_out,
            count_keys,
        },
        failed,
    )
}

/// One workflow per job, named after it: what `--jobs a,b` means on the command line.
pub fn workflows_from_job_names(names: &[String], fixed: &Values) -> Result<Vec<Workflow>, String> {
    names
        .iter()
        .map(|n| {
            let job = Job::builtin(n, fixed).ok_or_else(|| {
                format!("unknown job {n:?}; known jobs: {}", BUILTIN_JOBS.join(", "))
            })?;
            Ok(Workflow {
                name: n.clone(),
                jobs: vec![(n.clone(), job)],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> JobContext {
        JobContext {
            cluster: None,
            cluster_error: Some("kubeconfig missing".into()),
            started: Instant::now(),
            hostname: "host-1".into(),
            this_pod: None,
            job_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_failed_job_is_recorded_and_the_others_kept() {
        let fixed = Values::from([("product".to_string(), json!("kausal"))]);
        let workflows = vec![
            Workflow {
                name: "mixed".into(),
                jobs: vec![
                    ("state".into(), Job::State),
                    ("identify-platform".into(), Job::IdentifyPlatform),
                ],
            },
            Workflow {
                name: "fixed".into(),
                jobs: vec![("fixed".into(), Job::Fixed(fixed))],
            },
        ];
        let (report, failed) = run_workflows(&workflows, &ctx()).await;
        assert_eq!(failed, 1);
        let mixed = &report.workflows["mixed"];
        assert_eq!(mixed["hostname"], json!("host-1"));
        assert!(mixed["uptime_seconds"].is_u64());
        assert_eq!(
            mixed["error.identify-platform"],
            json!("no cluster connection: kubeconfig missing")
        );
        assert_eq!(report.workflows["fixed"]["product"], json!("kausal"));
    }

    #[test]
    fn job_names_become_workflows() {
        let w = workflows_from_job_names(&["state".into(), "cluster-state".into()], &Values::new())
            .unwrap_or_default();
        assert_eq!(
            w.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["state", "cluster-state"]
        );
        let err = workflows_from_job_names(&["nope".into()], &Values::new())
            .err()
            .unwrap_or_default();
        assert!(err.contains("unknown job \"nope\""), "{err}");
    }
}

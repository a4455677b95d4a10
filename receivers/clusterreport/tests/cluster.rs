//! Reports against the simulated cluster: counts equal the objects created (through paged
//! metadata lists), Gateway API kinds counted only where served, the platform identified, and
//! leader election letting exactly one of two receivers report until the leader goes away.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use kausal_core::component::{Component, CreateContext, Host};
use kausal_core::config::ComponentConfig;
use kausal_core::otlp_common::any_value;
use kausal_core::telemetry::{ComponentMetrics, Telemetry};
use kausal_core::{Batch, ComponentId, ConsumeError, Consumer};
use kausal_receiver_clusterreport::jobs::{
    CountSpec, Job, JobContext, Workflow, run_workflows, workflows_from_job_names,
};
use kausal_receiver_clusterreport::report::Values;
use kausal_receiver_clusterreport::{ClusterReportReceiver, Output};
use kausal_sim::client::{ApiResource, ListParams, resources};
use kausal_sim::cluster::{SimCluster, SimClusterHandle};
use serde_json::{Value, json};

const GATEWAYS: ApiResource = ApiResource {
    group: "gateway.networking.k8s.io",
    version: "v1",
    plural: "gateways",
    kind: "Gateway",
    namespaced: true,
};
const HTTPROUTES: ApiResource = ApiResource {
    group: "gateway.networking.k8s.io",
    version: "v1",
    plural: "httproutes",
    kind: "HTTPRoute",
    namespaced: true,
};
const CRDS: ApiResource = ApiResource {
    group: "apiextensions.k8s.io",
    version: "v1",
    plural: "customresourcedefinitions",
    kind: "CustomResourceDefinition",
    namespaced: false,
};

fn crd(group: &str, plural: &str, kind: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced", "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
}

async fn populate(cluster: &SimClusterHandle) -> Result<()> {
    let admin = cluster.admin_client();
    admin
        .create(
            &CRDS,
            None,
            &crd("gateway.networking.k8s.io", "gateways", "Gateway"),
        )
        .await?;
    admin
        .create(
            &CRDS,
            None,
            &crd("gateway.networking.k8s.io", "httproutes", "HTTPRoute"),
        )
        .await?;
    for i in 0..5 {
        admin
            .create(
                &resources::PODS,
                Some("default"),
                &pod(&format!("web-{i}"), "web"),
            )
            .await?;
    }
    for i in 0..2 {
        admin
            .create(
                &resources::PODS,
                Some("default"),
                &pod(&format!("db-{i}"), "db"),
            )
            .await?;
    }
    for i in 0..3 {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")}, "spec": {"ports": [{"port": 80}]}});
        admin
            .create(&resources::SERVICES, Some("default"), &svc)
            .await?;
    }
    for i in 0..2 {
        let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": format!("gw-{i}")}, "spec": {"gatewayClassName": "kong"}});
        admin.create(&GATEWAYS, Some("default"), &gw).await?;
    }
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "route"}, "spec": {}});
    admin.create(&HTTPROUTES, Some("default"), &route).await?;
    Ok(())
}

async fn total(cluster: &SimClusterHandle, r: &ApiResource) -> Result<usize> {
    Ok(cluster
        .admin_client()
        .list(r, None, &ListParams::default())
        .await?
        .items
        .len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_the_objects_created() -> Result<()> {
    let cluster = SimCluster::builder().nodes(2).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let outcome = async {
        populate(&cluster).await?;
        let mut workflows = workflows_from_job_names(
            &["cluster-state".into(), "identify-platform".into()],
            &Values::new(),
        )
        .map_err(anyhow::Error::msg)?;
        workflows.push(Workflow {
            name: "counts".into(),
            jobs: vec![(
                "web_pods".into(),
                Job::Count(CountSpec {
                    group: String::new(),
                    version: "v1".into(),
                    resource: "pods".into(),
                    namespace: Some("default".into()),
                    label_selector: Some("app=web".into()),
                    field_selector: None,
                }),
            )],
        });
        // A page size of 2 makes every list take several pages.
        let ctx = JobContext::for_workflows(
            &workflows,
            Some(&kubeconfig),
            2,
            Duration::from_secs(60),
            Instant::now(),
            None,
        )
        .await;
        let (report, failed) = run_workflows(&workflows, &ctx).await;
        let json = report.to_json();
        anyhow::ensure!(failed == 0, "jobs failed: {json:#}");
        Ok::<_, anyhow::Error>(json)
    }
    .await;
    let pods = total(&cluster, &resources::PODS).await;
    let services = total(&cluster, &resources::SERVICES).await;
    cluster.shutdown().await;
    let report = outcome?;
    let state = &report["cluster-state"];
    assert_eq!(state["k8s_pods_count"], json!(pods?), "{report:#}");
    assert_eq!(state["k8s_services_count"], json!(services?), "{report:#}");
    assert!(state["k8s_pods_count"].as_u64().unwrap_or(0) >= 7);
    assert_eq!(state["k8s_nodes_count"], json!(2));
    assert_eq!(state["k8s_gateways_count"], json!(2));
    assert_eq!(state["k8s_httproutes_count"], json!(1));
    // Kinds the cluster does not serve are left out, not reported as zero.
    assert!(
        state.get("k8s_gatewayclasses_count").is_none(),
        "{report:#}"
    );
    assert!(state.get("k8s_ingresses_count").is_none(), "{report:#}");
    assert_eq!(report["counts"]["web_pods"], json!(5));
    let platform = &report["identify-platform"];
    assert_eq!(platform["k8s_version"], json!("v1.31.0"));
    assert_eq!(platform["k8s_semver"], json!("1.31.0"));
    assert_eq!(platform["k8s_arch"], json!("amd64"));
    assert_eq!(platform["k8s_node_architectures"], json!("amd64"));
    assert_eq!(platform["k8s_provider"], json!("unknown"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_of_an_unserved_resource_fails_alone() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let workflows = vec![Workflow {
        name: "inventory".into(),
        jobs: vec![
            (
                "widgets".into(),
                Job::Count(CountSpec {
                    group: "example.com".into(),
                    version: "v1".into(),
                    resource: "widgets".into(),
                    namespace: None,
                    label_selector: None,
                    field_selector: None,
                }),
            ),
            ("cluster-state".into(), Job::ClusterState),
        ],
    }];
    let ctx = JobContext::for_workflows(
        &workflows,
        Some(&kubeconfig),
        500,
        Duration::from_secs(60),
        Instant::now(),
        None,
    )
    .await;
    let (report, failed) = run_workflows(&workflows, &ctx).await;
    cluster.shutdown().await;
    let inv = &report.workflows["inventory"];
    assert_eq!(failed, 1);
    assert_eq!(
        inv["error.widgets"],
        json!("example.com/v1/widgets is not served by this cluster")
    );
    assert_eq!(inv["k8s_nodes_count"], json!(1));
    Ok(())
}

/// Collects what a receiver sends.
#[derive(Default)]
struct Sink {
    batches: Mutex<Vec<Batch>>,
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.batches
            .lock()
            .map_err(|_| ConsumeError::permanent("poisoned"))?
            .push(batch);
        Ok(())
    }
}

impl Sink {
    fn count(&self) -> usize {
        self.batches.lock().map(|b| b.len()).unwrap_or(0)
    }
}

fn receiver(
    id: &str,
    yaml: &str,
    sink: Arc<Sink>,
    output: Output,
) -> Result<ClusterReportReceiver> {
    let section = ComponentConfig::from_yaml(id, yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = CreateContext {
        id: ComponentId::parse(id).map_err(anyhow::Error::msg)?,
        metrics: ComponentMetrics::default(),
        telemetry: Telemetry::default(),
    };
    ClusterReportReceiver::new(ctx, &section, sink, output).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn wait_until(what: &str, timeout: Duration, f: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_reports_until_it_leaves() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let yaml = |identity: &str| {
        format!(
            "kubeconfig: {}\ninterval: 1h\nworkflows: {{inventory: [cluster-state, state]}}\nsignal: test-ping\nleader_election: {{lease_name: reports, lease_namespace: default, lease_duration: 3s, retry_period: 200ms, identity: {identity}}}\n",
            kubeconfig.display()
        )
    };
    let (sink_a, sink_b) = (Arc::new(Sink::default()), Arc::new(Sink::default()));
    let a = receiver(
        "clusterreport/a",
        &yaml("replica-a"),
        sink_a.clone(),
        Output::Logs,
    )?;
    let b = receiver(
        "clusterreport/b",
        &yaml("replica-b"),
        sink_b.clone(),
        Output::Logs,
    )?;
    let outcome = async {
        a.start(&Host::default()).await?;
        b.start(&Host::default()).await?;
        wait_until("a first report", Duration::from_secs(30), || {
            sink_a.count() + sink_b.count() >= 1
        })
        .await?;
        // Several election rounds later, still only the leader has reported.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (first_a, first_b) = (sink_a.count(), sink_b.count());
        anyhow::ensure!(
            first_a + first_b == 1,
            "both replicas reported: a={first_a} b={first_b}"
        );
        let (leader, follower_sink) = if first_a == 1 {
            (&a, &sink_b)
        } else {
            (&b, &sink_a)
        };
        // The leader leaves (releasing the lease); the other takes over and reports.
        leader.shutdown().await?;
        wait_until("the follower's report", Duration::from_secs(30), || {
            follower_sink.count() == 1
        })
        .await?;
        let batch = follower_sink
            .batches
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?[0]
            .clone();
        Ok::<_, anyhow::Error>(batch)
    }
    .await;
    a.shutdown().await?;
    b.shutdown().await?;
    cluster.shutdown().await;
    let Batch::Logs(logs) = outcome? else {
        bail!("not logs")
    };
    let record = &logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        kausal_core::otlp::attr_str(&record.attributes, "kausal.report.signal"),
        Some("test-ping")
    );
    let Some(any_value::Value::KvlistValue(body)) =
        record.body.as_ref().and_then(|b| b.value.clone())
    else {
        bail!("body is not a key-value list")
    };
    let inventory = body
        .values
        .iter()
        .find(|kv| kv.key == "inventory")
        .context("inventory workflow")?;
    let Some(any_value::Value::KvlistValue(values)) =
        inventory.value.as_ref().and_then(|v| v.value.clone())
    else {
        bail!("workflow is not a key-value list")
    };
    let keys: Vec<&str> = values.values.iter().map(|kv| kv.key.as_str()).collect();
    assert!(
        keys.contains(&"k8s_nodes_count") && keys.contains(&"hostname"),
        "{keys:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_carry_the_counts() -> Result<()> {
    let cluster = SimCluster::builder().nodes(3).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let sink = Arc::new(Sink::default());
    let yaml = format!(
        "kubeconfig: {}\ncounts: {{all_nodes: {{version: v1, resource: nodes}}}}\nworkflows: {{inventory: [cluster-state, all_nodes]}}\nleader_election: {{enabled: false}}\n",
        kubeconfig.display()
    );
    let r = receiver("clusterreport_gauges", &yaml, sink.clone(), Output::Gauges)?;
    r.start(&Host::default()).await?;
    let waited = wait_until("gauges", Duration::from_secs(30), || sink.count() >= 1).await;
    r.shutdown().await?;
    cluster.shutdown().await;
    waited?;
    let batch = sink
        .batches
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?[0]
        .clone();
    let Batch::Metrics(metrics) = batch else {
        bail!("not metrics")
    };
    let nodes = metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "kausal.report.inventory.k8s_nodes_count")
        .context("node gauge")?;
    let Some(kausal_core::otlp_metrics::metric::Data::Gauge(g)) = &nodes.data else {
        bail!("not a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(kausal_core::otlp_metrics::number_data_point::Value::AsInt(
            3
        ))
    );
    // A count job's value is a gauge whatever its name.
    let all_nodes = metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "kausal.report.inventory.all_nodes")
        .context("count job gauge")?;
    let Some(kausal_core::otlp_metrics::metric::Data::Gauge(g)) = &all_nodes.data else {
        bail!("not a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(kausal_core::otlp_metrics::number_data_point::Value::AsInt(
            3
        ))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshes_detected_from_listed_metadata() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let outcome = async {
        let admin = cluster.admin_client();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "linkerd-destination"}, "spec": {"ports": [{"port": 8086}]}});
        admin.create(&resources::SERVICES, Some("default"), &svc).await?;
        for (name, meshed) in [("web-0", true), ("web-1", true), ("db-0", false), ("agent", true)] {
            let mut p = pod(name, "x");
            if meshed {
                p["metadata"]["annotations"] = json!({"linkerd.io/proxy-version": "stable-2.14.10"});
            }
            admin.create(&resources::PODS, Some("default"), &p).await?;
        }
        let workflows = workflows_from_job_names(&["mesh-detect".into()], &Values::new()).map_err(anyhow::Error::msg)?;
        let this_pod = Some(("default".to_string(), "agent".to_string()));
        let ctx = JobContext::for_workflows(&workflows, Some(&kubeconfig), 500, Duration::from_secs(60), Instant::now(), this_pod).await;
        let (report, failed) = run_workflows(&workflows, &ctx).await;
        anyhow::ensure!(failed == 0, "jobs failed: {:#}", report.to_json());
        Ok::<_, anyhow::Error>(report.to_json())
    }
    .await;
    let pods = total(&cluster, &resources::PODS).await;
    cluster.shutdown().await;
    let report = outcome?;
    let mesh = &report["mesh-detect"];
    let pods = pods?;
    assert_eq!(mesh["pods_total"], json!(pods), "{report:#}");
    assert_eq!(mesh["linkerd"]["control_plane"], json!(true));
    assert_eq!(mesh["linkerd"]["pods_meshed"], json!(3));
    assert_eq!(mesh["linkerd"]["this_pod_meshed"], json!(true));
    assert_eq!(mesh["istio"]["control_plane"], json!(false));
    assert_eq!(mesh["istio"]["this_pod_meshed"], json!(false));
    Ok(())
}

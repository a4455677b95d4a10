//! The real kubectl against the simulated API server: the commands a user types in the
//! rollout walkthrough must succeed unchanged, over HTTPS with the written kubeconfig.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use kausal_sim::apiserver::{ApiServer, ApiServerConfig, RunningApiServer};
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Kubectl {
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &RunningApiServer) -> Result<Kubectl> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig)?;
        Ok(Kubectl {
            kubeconfig,
            _dir: dir,
        })
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Runs kubectl on a blocking thread (the server runs on this test's runtime).
    async fn run(&self, args: &[&str]) -> Result<String> {
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let shown = args.join(" ");
        let out = tokio::task::spawn_blocking(move || {
            Command::new(KUBECTL)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", kubeconfig.parent().unwrap_or(Path::new("/tmp")))
                .args(&args)
                .output()
        })
        .await??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "kubectl {shown} failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }
}

async fn server() -> Result<RunningApiServer> {
    Ok(ApiServer::start(ApiServerConfig::default()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_commands_succeed() -> Result<()> {
    let server = server().await?;
    let k = Kubectl::new(&server)?;
    let out = k
        .run(&[
            "create",
            "deployment",
            "demo",
            "--image=alpine:3.16",
            "--replicas=2",
        ])
        .await?;
    assert!(out.contains("deployment.apps/demo created"), "{out}");
    let out = k
        .run(&["scale", "deployment", "demo", "--replicas=4"])
        .await?;
    assert!(out.contains("deployment.apps/demo scaled"), "{out}");
    let out = k
        .run(&["set", "image", "deployments", "demo", "alpine=alpine:3.17"])
        .await?;
    assert!(out.contains("deployment.apps/demo image updated"), "{out}");
    let d: Value = serde_json::from_str(
        &k.run(&[
            "get",
            "deployment",
            "demo",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await?,
    )?;
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "alpine:3.17"
    );
    assert_eq!(d["metadata"]["generation"], 3);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl-create"), "{managers:?}");
    assert!(managers.contains(&"kubectl-set"), "{managers:?}");
    let pods: Value = serde_json::from_str(&k.run(&["get", "pods", "-o", "json"]).await?)?;
    assert_eq!(pods["kind"], "List");
    let table = k.run(&["get", "deployments"]).await?;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("demo"), "{table}");
    let out = k.run(&["delete", "deployment", "demo"]).await?;
    assert!(out.contains("deployment.apps \"demo\" deleted"), "{out}");
    let gone = k.run(&["get", "deployments", "-o", "json"]).await?;
    assert_eq!(
        serde_json::from_str::<Value>(&gone)?["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_namespace_and_events() -> Result<()> {
    let server = server().await?;
    let k = Kubectl::new(&server)?;
    let out = k.run(&["create", "namespace", "team"]).await?;
    assert!(out.contains("namespace/team created"), "{out}");
    let manifest = k.dir().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\ndata:\n  mode: fast\n",
    )?;
    let out = k
        .run(&["apply", "-f", manifest.to_str().context("path")?])
        .await?;
    assert!(out.contains("configmap/settings created"), "{out}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\ndata:\n  mode: slow\n",
    )?;
    let out = k
        .run(&["apply", "-f", manifest.to_str().context("path")?])
        .await?;
    assert!(out.contains("configmap/settings configured"), "{out}");
    let cm: Value = serde_json::from_str(
        &k.run(&["get", "configmap", "settings", "-n", "team", "-o", "json"])
            .await?,
    )?;
    assert_eq!(cm["data"]["mode"], "slow");
    assert!(
        cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let deploy = k.dir().join("deploy.yaml");
    std::fs::write(
        &deploy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: team\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n        env: [{name: A, value: \"1\"}]\n",
    )?;
    k.run(&["apply", "-f", deploy.to_str().context("path")?])
        .await?;
    std::fs::write(
        &deploy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: team\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.26\n        env: [{name: B, value: \"2\"}]\n",
    )?;
    let out = k
        .run(&["apply", "-f", deploy.to_str().context("path")?])
        .await?;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d: Value = serde_json::from_str(
        &k.run(&["get", "deployment", "web", "-n", "team", "-o", "json"])
            .await?,
    )?;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "B", "value": "2"}])
    );
    let event = k.dir().join("event.yaml");
    std::fs::write(
        &event,
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\n  namespace: team\ninvolvedObject:\n  apiVersion: apps/v1\n  kind: Deployment\n  name: web\n  namespace: team\nreason: ScalingReplicaSet\nmessage: Scaled up replica set web-5d4f to 3\ntype: Normal\nsource:\n  component: deployment-controller\ncount: 1\n",
    )?;
    k.run(&["create", "-f", event.to_str().context("path")?])
        .await?;
    let events = k.run(&["get", "events", "-n", "team"]).await?;
    assert!(events.starts_with("LAST SEEN"), "{events}");
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("deployment/web"),
        "{events}"
    );
    let v1: Value = serde_json::from_str(
        &k.run(&["get", "events.v1.events.k8s.io", "-n", "team", "-o", "json"])
            .await?,
    )?;
    assert_eq!(
        v1["items"][0]["note"],
        "Scaled up replica set web-5d4f to 3"
    );
    assert_eq!(
        v1["items"][0]["deprecatedSource"]["component"],
        "deployment-controller"
    );
    server.shutdown().await;
    Ok(())
}

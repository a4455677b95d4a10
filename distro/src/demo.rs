//! `kausal demo`: the simulated cluster playing a rollout in a loop, its audit webhook wired to
//! kausal running the embedded demo configuration (config/demo.yaml), and the query API on a
//! local port. Everything a new user needs to see traces without a cluster of their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kausal_core::config::Config;
use kausal_core::service::{self, Service};
use kausal_core::telemetry::Telemetry;
use kausal_sim::audit::webhook::{BatchConfig, WebhookConfig, WebhookTarget};
use kausal_sim::cluster::SimCluster;

use crate::components::registry;
use crate::run::{init_logging, wait_for_signal};

const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the query API (and UI) listens.
    #[arg(long, default_value = "127.0.0.1:16686")]
    ui: SocketAddr,
    /// Where kausal's audit webhook listens.
    #[arg(long, default_value = "127.0.0.1:18443")]
    webhook: SocketAddr,
    /// Where the simulated API server listens (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    api: SocketAddr,
    /// Store directory.
    #[arg(long, default_value = "./kausal-demo-data")]
    data: PathBuf,
    /// Kubeconfig for kubectl against the simulated cluster.
    #[arg(long, default_value = "kausal-demo.kubeconfig")]
    kubeconfig_out: PathBuf,
    /// Built-in scenario (rollout, statefulset-update, unschedulable, crashloop) or a file,
    /// played in a loop.
    #[arg(long, default_value = "rollout")]
    scenario: String,
    /// Simulated nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// kausal's log level.
    #[arg(long, default_value = "warn")]
    log_level: String,
}

pub fn demo(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kausal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match run_demo(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kausal demo: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let values = [
        ("KAUSAL_DEMO_WEBHOOK", args.webhook.to_string()),
        ("KAUSAL_DEMO_UI", args.ui.to_string()),
        ("KAUSAL_DEMO_DATA", args.data.display().to_string()),
        ("KAUSAL_DEMO_LOG", args.log_level.clone()),
    ];
    let env = |name: &str| values.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let config = Config::from_yaml(DEMO_CONFIG, &env).map_err(|e| anyhow::anyhow!("embedded demo configuration: {e}"))?;
    init_logging(&config.service.telemetry).map_err(anyhow::Error::msg)?;
    let registry = registry();
    service::validate(&config, &registry).map_err(|e| anyhow::anyhow!("embedded demo configuration: {e}"))?;
    let mut kausal = Service::build(&config, &registry, Telemetry::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    kausal.start().await?;

    let scenario = kausal_sim::scenario::load_scenario(&args.scenario)?;
    let mut looping = scenario.clone();
    looping.looping = true;
    // The apiserver's default batch wait is 30 s; the demo wants traces within a second.
    let mut webhook = WebhookConfig::new(WebhookTarget {
        url: format!("http://{}/audit", args.webhook),
        ..Default::default()
    });
    webhook.batch = BatchConfig {
        max_batch_wait: Duration::from_secs(1),
        ..Default::default()
    };
    let cluster = match SimCluster::builder()
        .nodes(args.nodes)
        .listen(args.api)
        .audit_webhook_settings(webhook)
        .kubeconfig_out(&args.kubeconfig_out)
        .start()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            kausal.shutdown().await;
            return Err(e.into());
        }
    };
    println!("kausal demo is running: a simulated cluster with {} nodes plays the `{}` scenario in a loop.", args.nodes, looping.name);
    println!();
    println!("  open           http://{}/", args.ui);
    println!(
        "  Jaeger API     http://{}/api/traces?service=tracing&tags={{\"resource\":\"deployments\",\"name\":\"demo\"}}",
        args.ui
    );
    println!("  kubectl        KUBECONFIG={} kubectl get pods -A", args.kubeconfig_out.display());
    println!();
    println!("Press Ctrl-C to stop.");

    let play = async {
        if let Err(e) = cluster.run_scenario(&looping).await {
            eprintln!("kausal demo: scenario stopped: {e}");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = play => {}
        _ = wait_for_signal() => {}
    }
    println!("kausal demo: stopping");
    cluster.shutdown().await;
    kausal.shutdown().await;
    Ok(())
}

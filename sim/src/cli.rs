//! `kausal sim`: run a simulated cluster from the command line until SIGINT/SIGTERM, write a
//! kubeconfig kubectl and kube-rs use as is, optionally audit to a webhook or a log and play a
//! scenario. The `kausal` binary embeds [`Args`] as its `sim` subcommand and calls [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::clock::Clock;
use crate::cluster::SimCluster;
use crate::scenario;

/// Which clock the cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockKind {
    /// Real time.
    Wall,
    /// Waits (sleep steps, kubelet delays) fast-forward.
    Virtual,
}

/// Command-line flags of `kausal sim`.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "sim", about = "Run a simulated Kubernetes cluster (API server, control plane, kubelets, audit backends)")]
pub struct Args {
    /// HTTPS address of the API server.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Also serve plain HTTP here.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "kausal-sim.kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// An audit.k8s.io/v1 Policy file (the apiserver's --audit-policy-file).
    #[arg(long)]
    pub audit_policy: Option<PathBuf>,
    /// Send audit events in batches to this URL.
    #[arg(long, conflicts_with = "audit_webhook_config")]
    pub audit_webhook: Option<String>,
    /// A kubeconfig naming the audit webhook (the apiserver's --audit-webhook-config-file).
    #[arg(long)]
    pub audit_webhook_config: Option<PathBuf>,
    /// Write audit events as JSON lines to this file.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Number of nodes, each with a kubelet.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// A built-in scenario (rollout, statefulset-update, unschedulable, crashloop) or a
    /// scenario file to play once the cluster is up.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Play the scenario again and again until stopped.
    #[arg(long = "loop")]
    pub loop_scenario: bool,
    #[arg(long, value_enum, default_value = "wall")]
    pub clock: ClockKind,
}

/// Runs the cluster until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let clock = match args.clock {
        ClockKind::Wall => Clock::wall(),
        ClockKind::Virtual => Clock::virtual_clock(),
    };
    // Load the scenario first so a typo fails before anything starts.
    let mut play = args.scenario.as_deref().map(scenario::load_scenario).transpose()?;
    if args.loop_scenario
        && let Some(s) = play.as_mut()
    {
        s.looping = true;
    }
    let mut builder = SimCluster::builder().nodes(args.nodes).listen(args.listen).clock(clock).kubeconfig_out(&args.kubeconfig_out);
    if let Some(addr) = args.http_listen {
        builder = builder.http_listen(addr);
    }
    if let Some(p) = &args.audit_policy {
        builder = builder.audit_policy_file(p);
    }
    if let Some(url) = &args.audit_webhook {
        builder = builder.audit_webhook(url.clone());
    }
    if let Some(p) = &args.audit_webhook_config {
        builder = builder.audit_webhook_config(p);
    }
    if let Some(p) = &args.audit_log {
        builder = builder.audit_log(p);
    }
    let cluster = builder.start().await.context("starting the simulated cluster")?;
    println!("kausal sim: API server at {} with {} nodes", cluster.https_url(), args.nodes);
    if let Some(url) = cluster.http_url() {
        println!("kausal sim: plain HTTP at {url}");
    }
    println!("kausal sim: kubeconfig written to {} (try: KUBECONFIG={} kubectl get nodes)", args.kubeconfig_out.display(), args.kubeconfig_out.display());

    let scenario_run = async {
        match &play {
            Some(s) => {
                let result = cluster.run_scenario(s).await;
                match &result {
                    Ok(()) => println!("kausal sim: scenario {} finished", s.name),
                    Err(e) => eprintln!("kausal sim: {e}"),
                }
                result.map_err(anyhow::Error::from)
            }
            None => Ok(()),
        }
    };
    let outcome = tokio::select! {
        result = async { let r = scenario_run.await; if r.is_ok() { std::future::pending::<()>().await; } r } => result,
        signal = shutdown_signal() => signal,
    };
    println!("kausal sim: shutting down");
    cluster.shutdown().await;
    outcome
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_parse_like_the_issue_describes() {
        let args = Args::try_parse_from([
            "sim", "--listen", "127.0.0.1:7443", "--kubeconfig-out", "/tmp/kc", "--audit-webhook", "http://127.0.0.1:9/audit", "--nodes", "5",
            "--scenario", "rollout", "--clock", "virtual",
        ]);
        let args = args.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.nodes, 5);
        assert_eq!(args.clock, ClockKind::Virtual);
        assert_eq!(args.scenario.as_deref(), Some("rollout"));
        assert_eq!(args.kubeconfig_out, PathBuf::from("/tmp/kc"));
    }

    #[test]
    fn webhook_url_and_kubeconfig_are_exclusive() {
        let args = Args::try_parse_from(["sim", "--audit-webhook", "http://x", "--audit-webhook-config", "/tmp/k"]);
        assert!(args.is_err());
    }
}

//! The running receiver: a task that, while this replica leads (or always, with leader election
//! off), runs the workflows at start (or on becoming leader) and every `interval`, and hands the
//! report downstream as one OTLP log record — or, in the gauges flavour, as one gauge per count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kausal_core::component::{Component, ComponentError, CreateContext, Host, Receiver};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use kausal_core::{Batch, ComponentId, Consumer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::ClusterClient;
use crate::config::Config;
use crate::jobs::{JobContext, Workflow, hostname, run_workflows};
use crate::leader::LeaderElector;
use crate::report::{ReportMeta, to_logs, to_metrics};

/// What the receiver emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Logs,
    Gauges,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct ClusterReportReceiver {
    id: ComponentId,
    config: Config,
    workflows: Vec<Workflow>,
    output: Output,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    running: Mutex<Option<Running>>,
    reports: Arc<std::sync::atomic::AtomicU64>,
}

impl ClusterReportReceiver {
    pub fn new(
        ctx: CreateContext,
        section: &ComponentConfig,
        next: Arc<dyn Consumer>,
        output: Output,
    ) -> Result<Self, ConfigError> {
        let config: Config = section.parse()?;
        config.validate(section)?;
        let workflows = config.workflows().map_err(|(k, m)| section.error(&k, m))?;
        Ok(ClusterReportReceiver {
            id: ctx.id,
            config,
            workflows,
            output,
            next,
            metrics: ctx.metrics,
            running: Mutex::new(None),
            reports: Arc::default(),
        })
    }

    /// Reports handed downstream so far.
    pub fn reports_sent(&self) -> u64 {
        self.reports.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Everything the background task owns.
struct Loop {
    id: ComponentId,
    config: Config,
    workflows: Vec<Workflow>,
    output: Output,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    reports: Arc<std::sync::atomic::AtomicU64>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Loop {
    fn this_pod(&self) -> Option<(String, String)> {
        let ns = self
            .config
            .pod_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok());
        let name = self
            .config
            .pod_name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok());
        ns.zip(name).filter(|(n, p)| !n.is_empty() && !p.is_empty())
    }

    async fn elector(&self) -> Result<Option<LeaderElector>, String> {
        let le = &self.config.leader_election;
        if !le.enabled {
            return Ok(None);
        }
        let cluster =
            ClusterClient::connect(self.config.kubeconfig.as_deref(), self.config.page_size)
                .await
                .map_err(|e| e.to_string())?;
        let namespace = le
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "default".to_string());
        let name = le
            .lease_name
            .clone()
            .unwrap_or_else(|| format!("kausal-{}", self.id.to_string().replace(['/', '_'], "-")));
        let identity = le
            .identity
            .clone()
            .unwrap_or_else(|| format!("{}_{}", hostname(), std::process::id()));
        Ok(Some(LeaderElector::new(
            &cluster,
            &namespace,
            &name,
            &identity,
            le.lease_duration,
        )))
    }

    async fn report(&self, started: Instant) {
        let ctx = JobContext::for_workflows(
            &self.workflows,
            self.config.kubeconfig.as_deref(),
            self.config.page_size,
            self.config.job_timeout,
            started,
            self.this_pod(),
        )
        .await;
        let (report, failed) = run_workflows(&self.workflows, &ctx).await;
        let mut resource_attributes = BTreeMap::from([
            ("service.name".to_string(), "kausal".to_string()),
            ("host.name".to_string(), ctx.hostname.clone()),
        ]);
        resource_attributes.extend(self.config.resource_attributes.clone());
        let meta = ReportMeta {
            signal: self.config.signal.clone(),
            resource_attributes,
            time_unix_nano: now_nanos(),
        };
        let batch = match self.output {
            Output::Logs => Batch::Logs(to_logs(&report.to_json(), &meta)),
            Output::Gauges => Batch::Metrics(to_metrics(&report, &meta)),
        };
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match self.next.consume(batch).await {
            Ok(()) => {
                self.metrics.sent.inc_by(n);
                self.reports
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(component = %self.id, failed_jobs = failed, "cluster report sent");
            }
            Err(e) => {
                self.metrics.failed.inc_by(n);
                tracing::warn!(component = %self.id, error = %e, "cluster report not accepted downstream");
            }
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let started = Instant::now();
        let mut elector: Option<LeaderElector> = None;
        let mut was_leading = false;
        let mut next_report = tokio::time::Instant::now();
        let retry = self.config.leader_election.retry_period;
        loop {
            let leading = if !self.config.leader_election.enabled {
                true
            } else {
                if elector.is_none() {
                    match self.elector().await {
                        Ok(e) => elector = e,
                        Err(e) => {
                            tracing::warn!(component = %self.id, error = %e, "cannot reach the cluster for leader election")
                        }
                    }
                }
                match &elector {
                    Some(e) => match e.try_acquire_or_renew().await {
                        Ok(l) => l,
                        Err(err) => {
                            tracing::warn!(component = %self.id, error = %err, "leader election round failed");
                            false
                        }
                    },
                    None => false,
                }
            };
            if leading != was_leading {
                tracing::info!(component = %self.id, leading, "cluster report leadership changed");
            }
            let now = tokio::time::Instant::now();
            if leading && (!was_leading || now >= next_report) {
                // A report can outlast the lease (slow lists, job timeouts): keep renewing while it
                // runs, so no other replica takes over and reports at the same time.
                let renew = async {
                    match &elector {
                        Some(e) => loop {
                            tokio::time::sleep(retry).await;
                            if let Err(err) = e.try_acquire_or_renew().await {
                                tracing::warn!(component = %self.id, error = %err, "renewing the lease during a report failed");
                            }
                        },
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = self.report(started) => {}
                    _ = renew => {}
                    _ = stop.changed() => break,
                }
                next_report = tokio::time::Instant::now() + self.config.interval;
            }
            was_leading = leading;
            let wake = if self.config.leader_election.enabled {
                tokio::time::Instant::now() + retry
            } else {
                next_report
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.changed() => break,
            }
        }
        if let Some(e) = elector
            && was_leading
        {
            e.release().await;
        }
    }
}

#[async_trait]
impl Component for ClusterReportReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| ComponentError::new(&self.id, "state lock poisoned"))?;
        if running.is_some() {
            return Ok(());
        }
        let (stop, rx) = watch::channel(false);
        let work = Loop {
            id: self.id.clone(),
            config: self.config.clone(),
            workflows: self.workflows.clone(),
            output: self.output,
            next: self.next.clone(),
            metrics: self.metrics.clone(),
            reports: self.reports.clone(),
        };
        let task = tokio::spawn(work.run(rx));
        *running = Some(Running { stop, task });
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = running {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
        Ok(())
    }
}

impl Receiver for ClusterReportReceiver {}

//! Loading a configuration, setting up logs and metrics from `service.telemetry`, and running
//! the service until a signal asks it to stop (then draining every queue).

use std::path::PathBuf;
use std::process::ExitCode;

use kausal_core::config::{Config, LogEncoding, TelemetryConfig};
use kausal_core::service::{self, Service};
use kausal_core::telemetry::Telemetry;

use crate::components::registry;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(paths: &[PathBuf]) -> Result<Config, ExitCode> {
    Config::load(paths, &env).map_err(|errors| {
        eprintln!("kausal: invalid configuration:\n{errors}");
        ExitCode::from(2)
    })
}

pub fn validate(paths: &[PathBuf]) -> ExitCode {
    let config = match load(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match service::validate(&config, &registry()) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("kausal: invalid configuration:\n{errors}");
            ExitCode::from(2)
        }
    }
}

pub fn print_config(paths: &[PathBuf]) -> ExitCode {
    match load(paths) {
        Ok(c) => {
            print!("{}", c.to_yaml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Installs the log subscriber described by `service.telemetry.logs`.
pub fn init_logging(telemetry: &TelemetryConfig) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&telemetry.logs.level)
        .map_err(|e| format!("service.telemetry.logs.level: invalid level {:?}: {e}", telemetry.logs.level))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let result = match telemetry.logs.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.try_init(),
    };
    // A subscriber already installed (tests, embedding) is fine.
    let _ = result;
    Ok(())
}

pub fn run(paths: &[PathBuf]) -> ExitCode {
    let config = match load(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = init_logging(&config.service.telemetry) {
        eprintln!("kausal: invalid configuration:\n{e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kausal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_service(config))
}

pub async fn run_service(config: Config) -> ExitCode {
    let registry = registry();
    match service::validate(&config, &registry) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(errors) => {
            eprintln!("kausal: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    }
    let telemetry = Telemetry::default();
    let mut service = match Service::build(&config, &registry, telemetry.clone()) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("kausal: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    if let Some(address) = &config.service.telemetry.metrics.address
        && let Err(e) = serve_metrics(address, telemetry.clone()).await
    {
        eprintln!("kausal: service.telemetry.metrics.address: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = service.start().await {
        tracing::error!(error = %e, "start failed; shutting down");
        eprintln!("kausal: {e}");
        service.shutdown().await;
        return ExitCode::FAILURE;
    }
    tracing::info!("kausal is running");
    wait_for_signal().await;
    tracing::info!("shutting down: draining queues");
    service.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops kausal");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves `/metrics` in the Prometheus text format.
async fn serve_metrics(address: &str, telemetry: Telemetry) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let telemetry = telemetry.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    telemetry.encode(),
                )
            }
        }),
    );
    tracing::info!(%address, "serving metrics at /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

/// `kausal sim`: the simulated cluster alone.
pub fn sim(args: kausal_sim::cli::Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kausal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kausal_sim::cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kausal sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

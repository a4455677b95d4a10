//! The memory limiter with a controlled memory probe: data passes below the soft limit, is
//! refused as retryable above it, and passes again once memory drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentId, Consumer, ConsumeError, Host};
use kausal_core::telemetry::Telemetry;
use kausal_processor_memorylimiter::config::{Config, Limits};
use kausal_processor_memorylimiter::MemoryLimiter;

struct Null;

#[async_trait]
impl Consumer for Null {
    async fn consume(&self, _: Batch) -> Result<(), ConsumeError> {
        Ok(())
    }
}

#[tokio::test]
async fn refuses_above_the_soft_limit_and_recovers() {
    let used = Arc::new(AtomicU64::new(100));
    let u = used.clone();
    let config = Config { check_interval: Duration::from_millis(20), limit_mib: 1, ..Config::default() };
    let m = MemoryLimiter::new(
        ComponentId::parse("memory_limiter").unwrap(),
        config,
        Limits { hard: 1000, soft: 800 },
        Arc::new(Null),
        Telemetry::default().component("processor", "memory_limiter"),
        Arc::new(move || u.load(Ordering::SeqCst)),
    );
    m.start(&Host::default()).await.unwrap();
    m.consume(Batch::Spans(vec![])).await.unwrap();
    used.store(900, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = m.consume(Batch::Spans(vec![])).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("soft limit"), "{err}");
    used.store(700, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    m.consume(Batch::Spans(vec![])).await.unwrap();
    m.shutdown().await.unwrap();
}

//! The receiver feeds a recording as if live: N times faster than recorded still takes the
//! recording's span divided by N, `max` hands everything on, and shutdown stops it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kausal_core::Activity;
use kausal_core::component::{Batch, ConsumeError, Consumer, CreateContext, Host, ReceiverFactory};
use kausal_core::config::ComponentConfig;
use kausal_core::telemetry::Telemetry;
use kausal_receiver_replay::Factory;

struct Sink(Mutex<Vec<Activity>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Batch::Activities(a) = batch {
            self.0.lock().unwrap().extend(a);
        }
        Ok(())
    }
}

fn capture() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real/kspan/deployment-2-pods.yaml");
    assert!(p.exists(), "recording missing: {} (these tests need ../shared/fixtures/real)", p.display());
    p.display().to_string()
}

async fn replay(speed: &str) -> (Duration, Vec<Activity>) {
    let yaml = format!("files: [{:?}]\nspeed: {speed:?}\n", capture());
    let config = ComponentConfig::from_yaml("replay", &yaml).unwrap();
    let telemetry = Telemetry::default();
    let ctx = CreateContext { id: config.id.clone(), metrics: telemetry.component("receiver", "replay"), telemetry };
    let sink = Arc::new(Sink(Mutex::new(vec![])));
    let receiver = Factory.create(ctx, &config, sink.clone()).unwrap();
    let begin = Instant::now();
    receiver.start(&Host::default()).await.unwrap();
    let deadline = begin + Duration::from_secs(60);
    while sink.0.lock().unwrap().len() < 26 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = begin.elapsed();
    receiver.shutdown().await.unwrap();
    receiver.shutdown().await.unwrap();
    let got = sink.0.lock().unwrap().clone();
    (elapsed, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_faster_takes_a_tenth_of_the_recording() {
    // The capture spans 8.56 s of recorder time.
    let (elapsed, got) = replay("10").await;
    assert_eq!(got.len(), 26);
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}: paced at 10x, not faster");
    let (_, all) = replay("max").await;
    assert_eq!(all.len(), 26);
}

#[tokio::test]
async fn speeds_and_files_are_checked() {
    let bad = ComponentConfig::from_yaml("replay", "files: [a.yaml]\nspeed: sideways\n").unwrap();
    let err = Factory.validate(&bad).unwrap_err().to_string();
    assert!(err.contains("speed") && err.contains("sideways"), "{err}");
    let none = ComponentConfig::from_yaml("replay", "files: []\n").unwrap();
    assert!(Factory.validate(&none).unwrap_err().to_string().contains("files"));
    // Shutdown without start is safe.
    let ok = ComponentConfig::from_yaml("replay", "files: [a.yaml]\nspeed: max\n").unwrap();
    let telemetry = Telemetry::default();
    let ctx = CreateContext { id: ok.id.clone(), metrics: telemetry.component("receiver", "replay"), telemetry };
    let r = Factory.create(ctx, &ok, Arc::new(Sink(Mutex::new(vec![])))).unwrap();
    r.shutdown().await.unwrap();
}

//! The service graph seen from outside: validation messages, backpressure, fan-out to several
//! exporters, and shutdown draining every queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::activity::{Activity, ActivityDetail, ChangeActivity};
use kausal_core::component::*;
use kausal_core::config::{ComponentConfig, Config, ConfigError};
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_core::registry::Registry;
use kausal_core::service::{Service, validate};
use kausal_core::telemetry::Telemetry;
use tokio::sync::Notify;

fn activity(i: i64) -> Activity {
    Activity {
        object: ObjectRef::new(ObjectKey::new("c", "", "pods", "ns", format!("p{i}"))),
        start: i,
        end: i,
        detail: ActivityDetail::Change(ChangeActivity::default()),
        links: vec![],
        change: None,
        cause: None,
    }
}

/// A receiver whose consumer the test drives directly.
#[derive(Clone, Default)]
struct Handle(Arc<Mutex<Option<Arc<dyn Consumer>>>>);

struct TestReceiverFactory(Handle);
struct TestReceiver;
impl Component for TestReceiver {}
impl Receiver for TestReceiver {}

impl ReceiverFactory for TestReceiverFactory {
    fn type_name(&self) -> &'static str {
        "testin"
    }
    fn description(&self) -> &'static str {
        "test"
    }
    fn output(&self) -> DataKind {
        DataKind::Activities
    }
    fn validate(&self, _: &ComponentConfig) -> Result<(), ConfigError> {
        Ok(())
    }
    fn create(&self, _: CreateContext, _: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Arc<dyn Receiver>, ConfigError> {
        *self.0.0.lock().unwrap() = Some(next);
        Ok(Arc::new(TestReceiver))
    }
}

/// An exporter that records what it gets and can be held shut by a gate.
#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<Vec<(String, usize)>>>,
    gate: Arc<Mutex<Option<Arc<Notify>>>>,
}

struct TestExporterFactory(Sink);
struct TestExporter {
    id: String,
    sink: Sink,
}
impl Component for TestExporter {}
impl Exporter for TestExporter {}

#[async_trait]
impl Consumer for TestExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let gate = self.sink.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            g.notified().await;
        }
        self.sink.got.lock().unwrap().push((self.id.clone(), batch.len()));
        Ok(())
    }
}

impl ExporterFactory for TestExporterFactory {
    fn type_name(&self) -> &'static str {
        "testout"
    }
    fn description(&self) -> &'static str {
        "test"
    }
    fn accepts(&self, input: DataKind) -> bool {
        input == DataKind::Activities
    }
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {}
        config.parse::<C>().map(|_| ())
    }
    fn create(&self, ctx: CreateContext, _: &ComponentConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(TestExporter { id: ctx.id.to_string(), sink: self.0.clone() }))
    }
}

fn setup() -> (Registry, Handle, Sink) {
    let handle = Handle::default();
    let sink = Sink::default();
    let mut r = Registry::default();
    r.receiver(TestReceiverFactory(handle.clone())).exporter(TestExporterFactory(sink.clone()));
    (r, handle, sink)
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn dangling_references_and_empty_pipelines_are_named() {
    let (r, _, _) = setup();
    let cfg = Config::from_yaml(
        "receivers:\n  testin: {}\nexporters:\n  testout: {}\n  testout/unused: {}\nservice:\n  pipelines:\n    a:\n      receivers: [testin, nothere]\n      exporters: [testout]\n    b:\n      receivers: [testin]\n",
        &no_env,
    )
    .unwrap();
    let err = validate(&cfg, &r).unwrap_err().to_string();
    assert!(err.contains("service.pipelines.a.receivers: receiver \"nothere\" is not defined under receivers"), "{err}");
    assert!(err.contains("service.pipelines.b.exporters: a pipeline needs at least one exporter"), "{err}");
    assert!(err.contains("<config>:9: service.pipelines.a.receivers"), "errors carry lines: {err}");
}

#[test]
fn unknown_types_and_bad_component_keys_are_rejected_and_unused_warned() {
    let (r, _, _) = setup();
    let cfg = Config::from_yaml(
        "receivers:\n  testin: {}\n  nosuch: {}\nexporters:\n  testout: {bogus: 1}\n  testout/spare: {}\nservice:\n  pipelines:\n    a:\n      receivers: [testin]\n      exporters: [testout]\n",
        &no_env,
    )
    .unwrap();
    let err = validate(&cfg, &r).unwrap_err().to_string();
    assert!(err.contains("receivers.nosuch: unknown receiver type \"nosuch\""), "{err}");
    assert!(err.contains("exporters.testout.bogus: unknown key"), "{err}");
    let ok = Config::from_yaml(
        "receivers:\n  testin: {}\nexporters:\n  testout: {}\n  testout/spare: {}\nservice:\n  pipelines:\n    a:\n      receivers: [testin]\n      exporters: [testout]\n",
        &no_env,
    )
    .unwrap();
    let warnings = validate(&ok, &r).unwrap();
    assert_eq!(warnings, vec!["exporters.testout/spare is defined but not used by the service".to_string()]);
}

#[tokio::test]
async fn full_pipeline_refuses_with_retryable_error_and_shutdown_drains_everything() {
    let (r, handle, sink) = setup();
    let gate = Arc::new(Notify::new());
    *sink.gate.lock().unwrap() = Some(gate.clone());
    let cfg = Config::from_yaml(
        "receivers:\n  testin: {}\nexporters:\n  testout: {}\n  testout/2: {}\nservice:\n  pipelines:\n    a:\n      receivers: [testin]\n      exporters: [testout, testout/2]\n      queue_size: 10\n",
        &no_env,
    )
    .unwrap();
    let mut service = Service::build(&cfg, &r, Telemetry::default()).unwrap();
    service.start().await.unwrap();
    let next = handle.0.lock().unwrap().clone().unwrap();

    // Exporters are held shut: data piles up in exporter queues, then in the entrance, which
    // finally refuses with a retryable error instead of growing or dropping.
    let mut accepted = 0usize;
    let mut refused = None;
    for i in 0..10_000 {
        match next.consume(Batch::Activities(vec![activity(i), activity(i)])).await {
            Ok(()) => accepted += 2,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a held pipeline must eventually refuse");
    assert!(refused.is_retryable(), "{refused:?}");
    assert!(accepted >= 10, "the entrance holds its queue_size before refusing");

    // Open the gate and shut down: everything accepted reaches both exporters exactly once.
    *sink.gate.lock().unwrap() = None;
    gate.notify_waiters();
    let releaser = {
        let gate = gate.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                gate.notify_waiters();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    service.shutdown().await;
    releaser.abort();
    let got = sink.got.lock().unwrap().clone();
    for id in ["testout", "testout/2"] {
        let total: usize = got.iter().filter(|(e, _)| e == id).map(|(_, n)| n).sum();
        assert_eq!(total, accepted, "exporter {id} got every accepted item once");
    }
    // After shutdown the entrance refuses.
    assert!(next.consume(Batch::Activities(vec![activity(0)])).await.unwrap_err().is_retryable());
}

//! Processor `linkrules`: links objects whose audit records carry no bodies by the names
//! controllers give what they create (see `infer`); such links are marked inferred. Activities
//! that already have a parent link are left alone.

pub mod infer;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kausal_core::activity::{LINK_CLASS_CHILDREN, LinkRole};
use kausal_core::component::{
    Batch, Component, ConsumeError, Consumer, CreateContext, DataKind, Processor, ProcessorFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Infer owners from names (ReplicaSet, Pod, StatefulSet Pod, Job Pod, CronJob Job).
    #[serde(default = "yes")]
    pub infer_from_names: bool,
    /// Objects remembered as possible owners.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
}

fn yes() -> bool {
    true
}
fn default_max_objects() -> usize {
    200_000
}

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "linkrules"
    }

    fn description(&self) -> &'static str {
        "links objects by the names controllers give them when audit records carry no bodies (inferred links)"
    }

    fn output(&self, input: DataKind) -> Option<DataKind> {
        (input == DataKind::Activities).then_some(DataKind::Activities)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        let c: Config = config.parse()?;
        if c.max_objects == 0 {
            return Err(config.error("max_objects", "must be at least 1"));
        }
        Ok(())
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Arc<dyn Processor>, ConfigError> {
        self.validate(config)?;
        let c: Config = config.parse()?;
        Ok(Arc::new(LinkRules { known: Mutex::new(infer::Known::new(c.max_objects)), config: c, next, metrics: ctx.metrics }))
    }
}

struct LinkRules {
    config: Config,
    known: Mutex<infer::Known>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Component for LinkRules {}
impl Processor for LinkRules {}

#[async_trait]
impl Consumer for LinkRules {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        self.metrics.received.inc_by(batch.len() as u64);
        if let Batch::Activities(activities) = &mut batch
            && self.config.infer_from_names
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            for a in activities.iter_mut() {
                let key = a.object.key.clone();
                if key.name.is_empty() {
                    continue;
                }
                known.insert(&key);
                let has_parent = a.links.iter().any(|l| l.role == LinkRole::Parent && l.class == LINK_CLASS_CHILDREN);
                if !has_parent && let Some(owner) = infer::infer_owner(&key, &known) {
                    a.links.push(infer::inferred_link(owner));
                }
            }
        }
        let n = batch.len() as u64;
        self.next.consume(batch).await?;
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}

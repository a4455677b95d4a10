//! Processor `annotationlinker`: an object annotated `kausal.io/parent` (JSON
//! `{"cluster"?, "group", "resource", "namespace"?, "name"}`) is linked to that parent — in
//! another cluster too. The annotation is read from the audit bodies; the last one seen per
//! object is remembered (bounded) for activities without bodies.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kausal_core::activity::{Activity, ActivityDetail, Link, LinkRole};
use kausal_core::bounded::BoundedIndex;
use kausal_core::component::{Batch, Component, ConsumeError, Consumer, CreateContext, DataKind, Processor, ProcessorFactory};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_core::telemetry::ComponentMetrics;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Annotation holding the parent.
    #[serde(default = "default_annotation")]
    pub annotation: String,
    /// Link class of the links made.
    #[serde(default = "default_class")]
    pub class: String,
    /// Objects whose parent annotation is remembered.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
}

fn default_annotation() -> String {
    "kausal.io/parent".into()
}
fn default_class() -> String {
    "annotation".into()
}
fn default_max_objects() -> usize {
    200_000
}

#[derive(Deserialize)]
struct Parent {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    group: String,
    resource: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

/// The parent an annotation value names, relative to the annotated object (same cluster and
/// namespace unless given). `None` for anything that is not such JSON.
pub fn parent_of(object: &ObjectKey, value: &str) -> Option<ObjectKey> {
    let p: Parent = serde_json::from_str(value).ok()?;
    if p.resource.is_empty() || p.name.is_empty() {
        return None;
    }
    Some(ObjectKey::new(
        p.cluster.filter(|c| !c.is_empty()).unwrap_or_else(|| object.cluster.clone()),
        p.group,
        p.resource,
        p.namespace.unwrap_or_else(|| object.namespace.clone()),
        p.name,
    ))
}

/// The annotation's value in an audit body, `Some(None)` when the body is an object without it.
fn annotation_in(body: &str, annotation: &str) -> Option<Option<String>> {
    let v: Value = serde_json::from_str(body).ok()?;
    let meta = v.get("metadata")?;
    Some(meta.get("annotations").and_then(|a| a.get(annotation)).and_then(Value::as_str).map(str::to_string))
}

pub struct AnnotationLinker {
    config: Config,
    seen: BoundedIndex<ObjectKey, Option<ObjectKey>>,
}

impl AnnotationLinker {
    pub fn new(config: Config) -> Self {
        AnnotationLinker { seen: BoundedIndex::new(config.max_objects), config }
    }

    pub fn link(&mut self, a: &mut Activity) {
        let key = a.object.key.clone();
        let mut found: Option<Option<ObjectKey>> = None;
        if let ActivityDetail::Audit(audit) = &a.detail
            && let Some(bodies) = &audit.bodies
        {
            let body = bodies.response.as_deref().or(bodies.request.as_deref());
            if let Some(value) = body.and_then(|b| annotation_in(b.get(), &self.config.annotation)) {
                found = Some(value.and_then(|v| parent_of(&key, &v)));
            }
        }
        let parent = match found {
            Some(p) => {
                self.seen.insert(key, p.clone());
                p
            }
            None => self.seen.get(&key).cloned().flatten(),
        };
        if let Some(parent) = parent
            && !a.links.iter().any(|l| l.peer.key == parent && l.role == LinkRole::Parent)
        {
            a.links.push(Link { peer: ObjectRef::new(parent), role: LinkRole::Parent, class: self.config.class.clone(), inferred: false });
        }
    }
}

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "annotationlinker"
    }
    fn description(&self) -> &'static str {
        "links objects to the parent in their kausal.io/parent annotation (cross-cluster allowed)"
    }
    fn output(&self, input: DataKind) -> Option<DataKind> {
        (input == DataKind::Activities).then_some(DataKind::Activities)
    }
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        let c: Config = config.parse()?;
        if c.annotation.is_empty() {
            return Err(config.error("annotation", "must not be empty"));
        }
        if c.max_objects == 0 {
            return Err(config.error("max_objects", "must be at least 1"));
        }
        Ok(())
    }
    fn create(&self, ctx: CreateContext, config: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Arc<dyn Processor>, ConfigError> {
        self.validate(config)?;
        Ok(Arc::new(Proc { linker: Mutex::new(AnnotationLinker::new(config.parse()?)), next, metrics: ctx.metrics }))
    }
}

struct Proc {
    linker: Mutex<AnnotationLinker>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Component for Proc {}
impl Processor for Proc {}

#[async_trait]
impl Consumer for Proc {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        self.metrics.received.inc_by(batch.len() as u64);
        if let Batch::Activities(activities) = &mut batch {
            let mut linker = self.linker.lock().unwrap_or_else(|p| p.into_inner());
            for a in activities.iter_mut() {
                linker.link(a);
            }
        }
        let n = batch.len() as u64;
        self.next.consume(batch).await?;
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_default_to_the_objects_cluster_and_namespace() {
        let pod = ObjectKey::new("c1", "", "pods", "ns", "p");
        assert_eq!(parent_of(&pod, r#"{"group":"apps","resource":"deployments","name":"d"}"#), Some(ObjectKey::new("c1", "apps", "deployments", "ns", "d")));
        assert_eq!(
            parent_of(&pod, r#"{"cluster":"hub","group":"example.com","resource":"rollouts","namespace":"prod","name":"r"}"#),
            Some(ObjectKey::new("hub", "example.com", "rollouts", "prod", "r"))
        );
        assert_eq!(parent_of(&pod, "not json"), None);
        assert_eq!(parent_of(&pod, r#"{"resource":"","name":"x"}"#), None);
    }
}

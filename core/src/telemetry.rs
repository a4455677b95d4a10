//! kausal's own metrics, in Prometheus format: one registry per process, and per component the
//! four counts every component keeps (received, sent, dropped, failed). Serving them over HTTP
//! is the binary's job.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub kind: String,
    pub component: String,
    pub outcome: String,
}

/// The process registry plus the shared per-component item counter family.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Mutex<Registry>>,
    items: Family<ComponentLabels, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kausal");
        let items = Family::<ComponentLabels, Counter>::default();
        registry.register(
            "component_items",
            "Items (activities or spans) per component and outcome: received, sent, dropped, failed",
            items.clone(),
        );
        Telemetry {
            registry: Arc::new(Mutex::new(registry)),
            items,
        }
    }
}

impl Telemetry {
    /// Counters for one component.
    pub fn component(&self, kind: &str, component: &str) -> ComponentMetrics {
        let get = |outcome: &str| {
            self.items
                .get_or_create(&ComponentLabels {
                    kind: kind.to_string(),
                    component: component.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        ComponentMetrics {
            received: get("received"),
            sent: get("sent"),
            dropped: get("dropped"),
            failed: get("failed"),
        }
    }

    /// Lets a component register metrics of its own.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The whole registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &guard);
        out
    }
}

/// The four counts of one component.
#[derive(Clone, Debug, Default)]
pub struct ComponentMetrics {
    pub received: Counter,
    pub sent: Counter,
    pub dropped: Counter,
    pub failed: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_encoded_per_component() {
        let t = Telemetry::default();
        let m = t.component("receiver", "kubeaudit");
        m.received.inc_by(3);
        let text = t.encode();
        assert!(
            text.contains(r#"kausal_component_items_total{kind="receiver",component="kubeaudit",outcome="received"} 3"#),
            "{text}"
        );
    }
}

//! The one registry of compiled-in component factories, by kind and type name. The binary fills
//! it; `service` builds pipelines from it; `kausal components` lists it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::{ExporterFactory, ExtensionFactory, ProcessorFactory, ReceiverFactory};

#[derive(Default, Clone)]
pub struct Registry {
    pub receivers: BTreeMap<&'static str, Arc<dyn ReceiverFactory>>,
    pub processors: BTreeMap<&'static str, Arc<dyn ProcessorFactory>>,
    pub exporters: BTreeMap<&'static str, Arc<dyn ExporterFactory>>,
    pub extensions: BTreeMap<&'static str, Arc<dyn ExtensionFactory>>,
}

/// One line of `kausal components`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub kind: &'static str,
    pub type_name: &'static str,
    pub description: &'static str,
}

impl Registry {
    pub fn receiver(&mut self, f: impl ReceiverFactory + 'static) -> &mut Self {
        self.receivers.insert(f.type_name(), Arc::new(f));
        self
    }

    pub fn processor(&mut self, f: impl ProcessorFactory + 'static) -> &mut Self {
        self.processors.insert(f.type_name(), Arc::new(f));
        self
    }

    pub fn exporter(&mut self, f: impl ExporterFactory + 'static) -> &mut Self {
        self.exporters.insert(f.type_name(), Arc::new(f));
        self
    }

    pub fn extension(&mut self, f: impl ExtensionFactory + 'static) -> &mut Self {
        self.extensions.insert(f.type_name(), Arc::new(f));
        self
    }

    /// Every registered component, grouped by kind, sorted by type.
    pub fn list(&self) -> Vec<ComponentInfo> {
        let mut out = Vec::new();
        for f in self.receivers.values() {
            out.push(ComponentInfo { kind: "receiver", type_name: f.type_name(), description: f.description() });
        }
        for f in self.processors.values() {
            out.push(ComponentInfo { kind: "processor", type_name: f.type_name(), description: f.description() });
        }
        for f in self.exporters.values() {
            out.push(ComponentInfo { kind: "exporter", type_name: f.type_name(), description: f.description() });
        }
        for f in self.extensions.values() {
            out.push(ComponentInfo { kind: "extension", type_name: f.type_name(), description: f.description() });
        }
        out
    }
}

//! Every component compiled into this binary.

use kausal_core::registry::Registry;

pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.receiver(kausal_receiver_kubeaudit::Factory)
        .processor(kausal_processor_ownerlinker::Factory)
        .processor(kausal_processor_spanbuilder::Factory)
        .exporter(kausal_exporter_debug::Factory)
        .exporter(kausal_exporter_spanstore::Factory)
        .extension(kausal_extension_query::Factory);
    r
}

//! Every component compiled into this binary.

use kausal_core::registry::Registry;

pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.receiver(kausal_receiver_kubeaudit::Factory)
        .receiver(kausal_receiver_replay::Factory)
        .processor(kausal_processor_causal::Factory)
        .receiver(kausal_receiver_kubeobjects::Factory)
        .receiver(kausal_receiver_kubeevents::Factory)
        .processor(kausal_processor_diffjoiner::Factory)
        .processor(kausal_processor_linkrules::Factory)
        .processor(kausal_processor_annotationlinker::Factory)
        .receiver(kausal_receiver_otlp::Factory)
        .processor(kausal_processor_ownerlinker::Factory)
        .processor(kausal_processor_spanbuilder::Factory)
        .processor(kausal_processor_batch::Factory)
        .processor(kausal_processor_memorylimiter::Factory)
        .exporter(kausal_exporter_debug::Factory)
        .exporter(kausal_exporter_spanstore::Factory)
        .exporter(kausal_exporter_otlp::Factory)
        .exporter(kausal_exporter_otlphttp::Factory)
        .exporter(kausal_exporter_jaeger::Factory)
        .receiver(kausal_receiver_clusterreport::Factory)
        .receiver(kausal_receiver_clusterreport::GaugesFactory)
        .exporter(kausal_exporter_splunkhec::Factory)
        .exporter(kausal_exporter_tcplines::Factory)
        .extension(kausal_extension_query::Factory)
        .extension(kausal_extension_raftcache::Factory);
    r
}

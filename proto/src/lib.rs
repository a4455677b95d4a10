//! Generated code for the protocol buffer definitions in this directory. Each package is
//! included where its `.proto` file is added (`tonic::include_proto!("package.name")`).

/// Jaeger's model, collector and query APIs (`jaeger.api_v2`) and Jaeger v2's remote storage
/// read API (`jaeger.storage.v2`).
pub mod jaeger {
    pub mod api_v2 {
        tonic::include_proto!("jaeger.api_v2");
    }
    pub mod storage {
        pub mod v2 {
            tonic::include_proto!("jaeger.storage.v2");
        }
    }
}

/// raftcache peer transport and shard state (`kausal.raft.v1`).
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("kausal.raft.v1");
    }
}

/// The OTLP messages the storage v2 API streams (`opentelemetry.proto.*`), generated here so
/// that no system protoc or second prost version is needed. Wire-compatible with the
/// `opentelemetry-proto` crate's types (convert by encoding and decoding).
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod trace {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.trace.v1");
            }
        }
    }
}

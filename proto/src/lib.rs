//! Generated code for the protocol buffer definitions in this directory. Each package is
//! included where its `.proto` file is added (`tonic::include_proto!("package.name")`).

/// Jaeger's model and collector API (`jaeger.api_v2`).
pub mod jaeger {
    pub mod api_v2 {
        tonic::include_proto!("jaeger.api_v2");
    }
}

/// raftcache peer transport and shard state (`kausal.raft.v1`).
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("kausal.raft.v1");
    }
}

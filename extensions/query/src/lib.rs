//! The `query` extension: serves the span store over the Jaeger HTTP API, kausal's own HTTP
//! endpoints (redirect, one trace, durations) and web UI, and over gRPC as Jaeger's query
//! service and Jaeger v2's remote storage read API.

pub mod api;
pub mod assemble;
pub mod durations;
pub mod foreign;
pub mod grpc;
pub mod jaeger;
pub mod load;
pub mod mode;
pub mod reader;
mod ui;

pub use api::{router, QueryOptions};

mod config;
mod extension;

pub use config::{QueryConfig, DEFAULT_GRPC_ENDPOINT};
pub use extension::{Factory, QueryExtension};

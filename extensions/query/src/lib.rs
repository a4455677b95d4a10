//! The `query` extension: serves the span store over the Jaeger HTTP API, kausal's own HTTP
//! endpoints (redirect, one trace, durations) and web UI.

pub mod api;
pub mod assemble;
pub mod durations;
pub mod foreign;
pub mod jaeger;
pub mod load;
pub mod mode;
pub mod reader;
mod ui;

pub use api::{router, QueryOptions};

mod config;
mod extension;

pub use config::QueryConfig;
pub use extension::{Factory, QueryExtension};

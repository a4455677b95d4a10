//! The `query` extension: serves the span store over the Jaeger HTTP query API.

pub mod api;
pub mod assemble;
pub mod jaeger;
pub mod load;
pub mod mode;

pub use api::{router, QueryOptions};

mod config;
mod extension;

pub use config::QueryConfig;
pub use extension::{Factory, QueryExtension};

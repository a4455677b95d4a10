//! kausal's core: the data model (objects, activities, audit wire types), the span conventions,
//! the component model and its registry, the pipeline graph, configuration loading and the
//! cache interface. It depends on no component; components depend on it.

pub mod activity;
pub mod audit;
pub mod bounded;
pub mod cache;
pub mod changes;
pub mod component;
pub mod config;
pub mod conventions;
pub mod object;
pub mod otlp;
pub mod registry;
pub mod service;
pub mod telemetry;

pub use activity::{Activity, ActivityDetail, Link, LinkRole, Nanos};
pub use component::{Batch, ComponentId, Consumer, ConsumeError, DataKind};
pub use object::{ObjectKey, ObjectRef};

/// OTLP types, re-exported so that components agree on one version.
pub use opentelemetry_proto::tonic::{
    common::v1 as otlp_common, logs::v1 as otlp_logs, metrics::v1 as otlp_metrics, resource::v1 as otlp_resource,
    trace::v1 as otlp_trace,
};

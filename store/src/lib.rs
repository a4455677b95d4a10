//! kausal's embedded span store: object spans (one per object and window, merged across
//! re-emissions), the activity spans under them and the indexes the query side searches, in one
//! redb file. It stores and looks up; it does not build trees or render anything.
//!
//! Writers call [`Store::write`] with OTLP batches; readers take a [`Snapshot`]. Every
//! [`Store::open`] of one directory in one process returns the same [`Store`].

mod error;
mod read;
mod record;
mod seen;
mod store;
mod tables;
pub mod testing;

pub use error::StoreError;
pub use read::{canonical_tag, ObjectHit, ObjectQuery, ReverseLink, Snapshot, SHORT_TAGS};
pub use record::{
    any_value_int, any_value_str, any_value_text, find_attr, ActivityKind, ActivityRecord, ObjectLink, ObjectRecord,
    RejectReason,
};
pub use store::{RetentionStats, Store, StoreOptions, WriteStats, DATABASE_FILE};
pub use tables::{SpanLocation, TraceRef};

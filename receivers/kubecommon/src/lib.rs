//! What kausal's watching receivers (`kubeevents`, `kubeobjects`) share: how to reach a cluster
//! (kubeconfig with context, in-cluster, or server + token file), resource include/exclude
//! patterns, and leader election on a coordination.k8s.io Lease. Decisions (pattern matching,
//! lease arbitration) are pure functions; the client calls stay at the edge.

pub mod auth;
pub mod lease;
pub mod patterns;

pub use auth::{Auth, AuthError};
pub use lease::{LeaderElection, LeaseConfig};
pub use patterns::ResourcePatterns;

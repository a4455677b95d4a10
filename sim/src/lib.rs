//! A simulated Kubernetes control plane for demos, tests and benchmarks: an API server spoken over
//! real HTTP(S) (`apiserver`), the apiserver's audit policy and backends (`audit`), the control
//! loops that make a rollout happen (`controllers`), scripted scenarios and load (`scenario`), and
//! the wiring of all of it into one running cluster (`cluster`). It is not a conformant
//! Kubernetes: it implements what kubectl, kube-rs and the Python client use for common workloads.

pub mod apiserver;
pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod controllers;
pub mod scenario;

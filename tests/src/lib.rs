//! Test kit for kausal's end-to-end tests and benchmarks: start the real `kausal` binary with a
//! real configuration (`process`), and generate audit EventLists the way kube-apiserver's
//! webhook backend sends them (`audit_gen`).

pub mod audit_gen;
pub mod http;
pub mod process;

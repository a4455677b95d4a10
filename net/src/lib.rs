//! Network plumbing shared by components that serve over TLS: building a rustls server config
//! from PEM files. It reads files and builds configs; it does not listen or accept.

pub mod tls;

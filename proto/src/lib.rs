//! Generated code for the protocol buffer definitions in this directory. Each package is
//! included where its `.proto` file is added (`tonic::include_proto!("package.name")`).

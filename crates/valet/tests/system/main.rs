//! The system tier: the real `valet` binary, real backend processes, Docker, PostgreSQL,
//! npm/pip, registries and Chromium, in one test crate of modules so the support code
//! compiles once. `cargo test -p valet --test system` runs it; one module:
//! `cargo test -p valet --test system faults::` (test names start with their module).

#[path = "../admin_support/mod.rs"]
mod admin_support;
#[path = "../deploy_support/mod.rs"]
mod deploy_support;
#[path = "../support/mod.rs"]
mod support;

mod admin;
mod assets;
mod cluster;
mod cluster_faults;
mod cluster_network;
mod cluster_ops;
mod cluster_projects;
mod config;
mod convex;
mod dashboard;
mod deploy;
mod deploy_auth;
mod deploy_cli;
mod deploy_docker;
mod deploy_input;
mod deploy_isolation;
mod deploy_kubernetes;
mod deploy_secrets;
mod deploy_store;
mod deploy_swarm;
mod docker;
mod docker_instances;
mod edge;
mod errors;
mod faults;
mod faults_disk;
mod faults_docker;
mod faults_keys;
mod hardening_api;
mod hardening_edge;
mod http1;
mod http1_differential;
mod import;
mod instances;
mod keep_up;
mod key_space;
mod kube_lab;
mod kubernetes;
mod kubernetes_in_pod;
mod lab;
mod lifecycle;
mod malformed;
mod operator_errors;
mod projects_ops;
mod proxy;
mod pull_bars;
mod redeploy_load;
mod registry;
mod scale;
mod streams;
mod swarm;
mod swarm_lab;
mod swarm_registry;
mod tenant_isolation;
mod workers;

//! The integration tests, one binary (one link of the crate and its dependencies instead of one
//! per file): each module is one area, started on real sockets with in-process origins.
mod admin;
mod balancing;
mod cache;
mod cache_rules;
mod cli;
mod client_h1;
mod clients;
mod common;
mod compress;
mod connections;
mod core;
mod dashboard;
mod explain;
mod files;
mod fuzz_corpus;
mod health;
mod limits;
mod observability;
mod queue;
mod resilience;
mod retries;
mod rules;
mod strict;
mod tls_auth;
mod tls_h2;
mod upstream_h1;

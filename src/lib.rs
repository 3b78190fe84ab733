//! langur: a reverse proxy, load balancer and HTTP cache.
//!
//! Data flows one way: a config file is parsed and validated into [`config::Config`], which is
//! built into an immutable [`proxy::Runtime`] snapshot; the request path reads only the snapshot.
//! See `docs/architecture.md` for the request flow.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod backend;
pub mod balancer;
pub mod cache;
pub mod cli;
pub mod client_identity;
pub mod clock;
pub mod cluster;
pub mod coding;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod framing;
pub mod lane;
#[cfg(test)]
mod layers;

/// A directory for one unit test's files, named `langur-TAG-…` in the system's temporary
/// directory and removed with the value, also when the test fails.
#[cfg(test)]
pub(crate) fn scratch_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("langur-{tag}-"))
        .tempdir()
        .expect("a temporary directory")
}
pub mod limits;
pub mod matching;
pub mod park;
pub mod proxy;
pub mod regular_file;
pub mod router;
pub mod server;
pub mod session;
pub mod stats;
pub mod strict;
pub mod template;
pub mod timer;
pub mod tls;
pub mod upstream;
pub mod worker;

pub use server::Langur;

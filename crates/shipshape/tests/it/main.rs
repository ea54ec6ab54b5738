//! The binary's integration tests: the real `shipshape` on temporary copies of the example
//! workspace, real servers on loopback, a real browser. One test binary (one build, one set of
//! helpers in `util`), one module per area.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod util;

mod approvals;
mod bad_input;
mod canary;
mod cli;
mod dashboard;
mod deploy;
mod docs;
mod fleet;
mod fuzz_ingest;
mod gc;
mod https_sinks;
mod monitoring;
mod openpgp;
mod release_pipeline;
mod routes;
mod serve;
mod validate;

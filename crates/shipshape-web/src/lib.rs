//! `shipshape serve`: one process for the post-deploy watch — HTTP ingestion of outcome events, the
//! evaluation scheduler, notification delivery with retries, a JSON API (status, releases, alerts,
//! metric series), the dashboard and `/metrics` in the Prometheus text format.
//!
//! Security by default: the caller binds the listener (loopback unless a token file is given), every
//! state-changing request needs `Authorization: Bearer <operator token>` and an `Origin` (when the
//! browser sends one) of this server, and the dashboard's rollback also a CSRF token from the page.
//! An event batch is acknowledged (`200`) only after its transaction committed with
//! `synchronous = FULL`, so neither a graceful shutdown nor a `kill -9` loses an acknowledged event.
//!
//! # Modules, bottom to top
//!
//! - `error`: [`ApiError`], the one error type of every handler (kind → status, JSON body).
//! - `state`: [`AppState`], what every handler shares — the monitor, the one group-committing
//!   ingest writer and its queue, the `/metrics` counters — and `blocking` (work on the blocking pool).
//! - `auth`: the operator token and the same-origin rule.
//! - `access`: around every request — the viewer token for reads off loopback, the request log.
//! - `ingest`: `POST /api/v1/events`, queued to the writer.
//! - `api`: the read endpoints, `POST /api/v1/evaluate`, the 404 fallback.
//! - `releases`: what a trading engine reads — the active release (ETag-cached), one release by id.
//! - `canary`: `GET /api/v1/canary`, the canary under way.
//! - `metrics`: `/metrics`.
//! - `dashboard`: the page, its read-only views, the live alert stream, the guarded rollback.
//! - `conn`: the accept loop and its [`Limits`] (header, idle and body timeouts, a connection limit
//!   that closes the longest-idle connection to make room, 413 on a declared oversize body).
//! - `serve`: [`router`] (testable without a socket) and [`serve`] (scheduler, delivery, shutdown).

mod access;
mod api;
mod auth;
mod canary;
mod conn;
mod dashboard;
mod error;
mod ingest;
mod metrics;
pub mod operators;
mod releases;
mod serve;
mod state;

pub use conn::Limits;
pub use error::ApiError;
pub use serve::{Settings, router, serve};
pub use state::{AppState, ReadAccess, random_hex, read_token_file};

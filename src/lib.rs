//! promptreg: a self-hosted prompt registry. Prompts are stored as immutable,
//! semver-versioned templates with labels, history, diff and rollback, and
//! served over HTTP from SQLite (default) or Postgres.

pub mod api;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod eval;
pub mod optimize;
pub mod providers;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod ui;
pub mod webhooks;
pub mod worker;

pub use app::build_app;

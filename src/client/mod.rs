//! The commands CI runs against a server: `push`, `pull`, `validate`,
//! `diff`, `promote`, `rollback`, `evaluate` and `optimize`; and the ones
//! people browse with: `ls`, `show`, `history` (`browse`). Prompt files
//! live in `files`; the offline checks in `validate`; HTTP with retries in
//! `http`; output formats, exit statuses and job reports in `report`.

pub mod browse;
pub mod commands;
pub mod evaluate;
pub mod files;
pub mod http;
pub mod optimize;
pub mod pull;
pub mod push;
pub mod remote;
pub mod report;
pub mod validate;

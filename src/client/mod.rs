//! The commands CI runs against a server: `push`, `pull`, `validate`,
//! `diff`, `promote` and `rollback`. Prompt files live in `files`; the
//! offline checks in `validate`; HTTP with retries in `http`.

pub mod files;
pub mod validate;

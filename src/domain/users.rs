//! People and their sessions: user names, roles (each a set of key scopes),
//! argon2id password hashes, and the random secrets a browser session holds
//! (its id and its CSRF token). Pure: hashing is CPU work the caller runs
//! off the async threads.

use std::collections::BTreeMap;
use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Scope;
use super::NameError;

/// What a user may do in one project. Each role includes the one before it:
/// `viewer` reads, `editor` also writes, `releaser` also promotes,
/// `evaluator` also evaluates, and `admin` may do everything.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Releaser,
    Evaluator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Editor,
        Role::Releaser,
        Role::Evaluator,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Releaser => "releaser",
            Self::Evaluator => "evaluator",
            Self::Admin => "admin",
        }
    }

    /// The key scopes this role grants.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Self::Viewer => &[Scope::Read],
            Self::Editor => &[Scope::Read, Scope::Write],
            Self::Releaser => &[Scope::Read, Scope::Write, Scope::Promote],
            Self::Evaluator => &[Scope::Read, Scope::Write, Scope::Promote, Scope::Evaluate],
            Self::Admin => &[Scope::Admin],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person who signs in to the web UI.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    /// Project name → role there.
    pub roles: BTreeMap<String, Role>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// How the audit log names what this user did.
    pub fn audit_name(&self) -> String {
        audit_name(&self.name)
    }
}

/// `user:NAME`, the audit log's name for a user.
pub fn audit_name(user: &str) -> String {
    format!("user:{user}")
}

/// The first user of an install, created on first start.
pub const INIT_ADMIN: &str = "admin";

const MAX_NAME: usize = 64;
pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 1024;

/// A user name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn parse_user_name(raw: &str) -> Result<String, NameError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_NAME
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(NameError(format!(
            "user name {raw:?} must match [a-z0-9][a-z0-9._-]{{0,63}}"
        )))
    }
}

/// Why a password is refused, or `None`.
pub fn password_problem(password: &str) -> Option<String> {
    let len = password.chars().count();
    (!(MIN_PASSWORD..=MAX_PASSWORD).contains(&len))
        .then(|| format!("{MIN_PASSWORD} to {MAX_PASSWORD} characters"))
}

/// An argon2id hash (PHC string) of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the stored PHC string (false for a malformed one).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A random string of letters and digits from the thread-local CSPRNG.
pub fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A session id as the cookie carries it; stored only as its sha256.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(String);

const SESSION_LEN: usize = 43;

impl SessionSecret {
    pub fn generate() -> Self {
        Self(random_token(SESSION_LEN))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == SESSION_LEN && raw.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(…)")
    }
}

/// A signed-in browser: the project it acts in now, its CSRF token, and
/// whom it acts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub project_id: Uuid,
    pub project: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    pub holder: SessionHolder,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionHolder {
    User {
        id: Uuid,
        name: String,
        roles: BTreeMap<String, Role>,
    },
    /// Signed in with an API key: its scopes, in its own project only.
    Key {
        id: Uuid,
        name: String,
        scopes: Vec<Scope>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_one_scope_at_a_time() {
        use super::super::auth::allows;
        assert!(!allows(Role::Viewer.scopes(), Scope::Write));
        assert!(allows(Role::Editor.scopes(), Scope::Write));
        assert!(!allows(Role::Editor.scopes(), Scope::Promote));
        assert!(allows(Role::Releaser.scopes(), Scope::Promote));
        assert!(!allows(Role::Releaser.scopes(), Scope::Evaluate));
        assert!(allows(Role::Evaluator.scopes(), Scope::Evaluate));
        assert!(!allows(Role::Evaluator.scopes(), Scope::Admin));
        assert!(allows(Role::Admin.scopes(), Scope::Admin));
    }

    #[test]
    fn user_names_are_checked() {
        for good in ["ada", "a", "ada.lovelace", "x_1-2"] {
            assert!(parse_user_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "Ada", "-ada", "ada lovelace", "ada/x", long.as_str()] {
            assert!(parse_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong horse battery", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert!(password_problem("short").is_some());
        assert!(password_problem("twelve chars").is_none());
    }

    #[test]
    fn session_secrets_parse_and_hide() {
        let secret = SessionSecret::generate();
        assert_eq!(SessionSecret::parse(secret.expose()), Some(secret.clone()));
        assert!(SessionSecret::parse("short").is_none());
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }
}

//! API keys and scopes: what a key is allowed to do, how secrets look, and
//! how they are stored (only as a hash, with a short prefix for display).

use std::fmt;

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Get, list, render and diff.
    Read,
    /// Create and edit prompts, versions and datasets.
    Write,
    /// Set, delete and roll back labels.
    Promote,
    /// Run evaluations and optimizations.
    Evaluate,
    /// Send feedback on served versions (give it to a service's read key).
    Feedback,
    /// Keys, projects and the audit log; implies every other scope.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Write,
        Scope::Promote,
        Scope::Evaluate,
        Scope::Feedback,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Promote => "promote",
            Self::Evaluate => "evaluate",
            Self::Feedback => "feedback",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a key holding `granted` may act where `needed` is required.
pub fn allows(granted: &[Scope], needed: Scope) -> bool {
    granted.iter().any(|&s| s == needed || s == Scope::Admin)
}

/// A key's secret: `pr_` and at least 32 ASCII letters and digits.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

pub const KEY_PREFIX: &str = "pr_";
const GENERATED_LEN: usize = 40;
const MIN_LEN: usize = 32;
/// How much of a secret is kept in clear to tell keys apart: `pr_` and 8 characters.
const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

impl KeySecret {
    /// A new secret from the thread-local CSPRNG (seeded from the OS).
    pub fn generate() -> Self {
        let random: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(GENERATED_LEN)
            .map(char::from)
            .collect();
        Self(format!("{KEY_PREFIX}{random}"))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(KEY_PREFIX)?;
        (body.len() >= MIN_LEN
            && body.len() <= 256
            && body.bytes().all(|c| c.is_ascii_alphanumeric()))
        .then(|| Self(raw.to_owned()))
    }

    /// What is stored: sha256 (hex). Secrets are long and random, so a fast
    /// hash is enough; nothing can be learnt by guessing against it.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The part shown in lists, and used to find the key's row.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }

    /// The secret itself, for the one answer that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares this secret's hash with a stored one in constant time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        self.hash().as_bytes().ct_eq(stored_hash.as_bytes()).into()
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({}…)", self.display_prefix())
    }
}

/// Who did something, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key_id: Option<uuid::Uuid>,
    pub key_name: String,
}

impl Actor {
    /// Operators acting on the database directly (`promptreg keys …`, bootstrap).
    pub fn system() -> Self {
        Self {
            key_id: None,
            key_name: "system".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = KeySecret::generate();
        let b = KeySecret::generate();
        assert_ne!(a, b);
        assert_eq!(KeySecret::parse(a.expose()), Some(a.clone()));
        assert_eq!(a.expose().len(), 43);
        assert!(a.display_prefix().starts_with("pr_") && a.display_prefix().len() == 11);
        assert!(a.matches(&a.hash()));
        assert!(!a.matches(&b.hash()));
        assert!(
            !format!("{a:?}").contains(&a.expose()[11..]),
            "Debug hides the secret"
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let short = format!("pr_{}", "a".repeat(31));
        let other_prefix = format!("sk_{}", "a".repeat(40));
        let symbol = format!("pr_{}!", "a".repeat(40));
        for bad in [
            "",
            "pr_",
            short.as_str(),
            other_prefix.as_str(),
            symbol.as_str(),
        ] {
            assert!(KeySecret::parse(bad).is_none(), "{bad}");
        }
        assert!(KeySecret::parse(&format!("pr_{}", "a".repeat(32))).is_some());
    }

    #[test]
    fn admin_implies_every_scope() {
        assert!(allows(&[Scope::Admin], Scope::Promote));
        assert!(allows(&[Scope::Read, Scope::Write], Scope::Write));
        assert!(!allows(&[Scope::Read, Scope::Write], Scope::Promote));
        assert_eq!(Scope::parse("evaluate"), Some(Scope::Evaluate));
        assert_eq!(Scope::parse("root"), None);
    }
}

//! Signing secrets at rest: sealed with ChaCha20-Poly1305 under the key
//! `webhooks.secret_key` names (base64 of 32 bytes), a fresh random nonce
//! each time, stored as base64 of nonce and ciphertext. They must be
//! recoverable to sign, so they cannot be hashed; without the key the
//! database alone does not reveal them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("webhooks.secret_key must be the base64 of exactly 32 bytes")]
    BadKey,
    #[error("a stored webhook secret cannot be opened with webhooks.secret_key")]
    Unreadable,
}

impl SecretBox {
    /// The box for `key` (base64 of 32 bytes); `None` when no key is set.
    pub fn from_config(key: &str) -> Result<Option<Self>, SecretError> {
        if key.is_empty() {
            return Ok(None);
        }
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(Some(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        }))
    }

    pub fn seal(&self, secret: &str) -> Result<String, SecretError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, secret.as_bytes())
            .map_err(|_| SecretError::Unreadable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::Unreadable)?;
        if raw.len() <= NONCE_LEN {
            return Err(SecretError::Unreadable);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Unreadable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let sealer = SecretBox::from_config(KEY).ok().flatten().expect("a box");
        let sealed = sealer.seal("whsec_abc").expect("seal");
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(
            sealer.seal("whsec_abc").expect("seal"),
            sealed,
            "fresh nonce"
        );
        assert_eq!(sealer.open(&sealed).expect("open"), "whsec_abc");
        let other = SecretBox::from_config("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=")
            .ok()
            .flatten()
            .expect("a box");
        assert!(other.open(&sealed).is_err());
        assert!(sealer.open("not base64!").is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(matches!(SecretBox::from_config(""), Ok(None)));
        assert!(SecretBox::from_config("c2hvcnQ=").is_err());
        assert!(SecretBox::from_config("%%%").is_err());
    }
}

//! Who is calling and what they may do: API keys checked against their stored
//! hash (in constant time), cached briefly and dropped at once on revocation,
//! per-key token buckets for each scope, and the bootstrap admin key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use quick_cache::sync::Cache;
use uuid::Uuid;

use crate::config::{RateLimit, RateLimits};
use crate::domain::auth::{allows, Actor, KeySecret, Scope};
use crate::domain::{ApiKey, ProjectId, DEFAULT_PROJECT};
use crate::store::{Invalidation, NewKey, Store, StoreError};
use crate::telemetry::metrics;

/// An authenticated caller: the project it acts in, and its (cached) key,
/// or the signed-in user of a web UI session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub project: ProjectId,
    principal: Principal,
}

#[derive(Debug, Clone)]
enum Principal {
    Key(Arc<ApiKey>),
    User(Arc<UserGrant>),
}

/// A user's grant in one project: what its role there allows.
#[derive(Debug)]
struct UserGrant {
    id: Uuid,
    name: String,
    project: String,
    scopes: &'static [Scope],
}

impl Caller {
    /// A signed-in user acting in `project` (`project_name`) with `role`.
    pub fn user(
        id: Uuid,
        name: &str,
        project: ProjectId,
        project_name: &str,
        role: crate::domain::users::Role,
    ) -> Self {
        Self {
            project,
            principal: Principal::User(Arc::new(UserGrant {
                id,
                name: name.to_owned(),
                project: project_name.to_owned(),
                scopes: role.scopes(),
            })),
        }
    }

    /// A web UI session opened with an API key: that key, in its project.
    pub fn key(key: ApiKey) -> Self {
        Self {
            project: key.project_id,
            principal: Principal::Key(Arc::new(key)),
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::Key(key) => Actor {
                key_id: Some(key.id),
                key_name: key.name.clone(),
            },
            Principal::User(user) => Actor {
                key_id: None,
                key_name: crate::domain::users::audit_name(&user.name),
            },
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        allows(self.scopes(), scope)
    }

    fn scopes(&self) -> &[Scope] {
        match &self.principal {
            Principal::Key(key) => &key.scopes,
            Principal::User(user) => user.scopes,
        }
    }

    /// The name of the project the caller acts in.
    pub fn project_name(&self) -> &str {
        match &self.principal {
            Principal::Key(key) => &key.project,
            Principal::User(user) => &user.project,
        }
    }

    /// Who the caller is, as a page shows it: a user's name or a key's.
    pub fn display_name(&self) -> &str {
        match &self.principal {
            Principal::Key(key) => &key.name,
            Principal::User(user) => &user.name,
        }
    }

    /// The rate-limit bucket: the key's, or the user's.
    fn bucket(&self) -> Uuid {
        match &self.principal {
            Principal::Key(key) => key.id,
            Principal::User(user) => user.id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no API key: send `Authorization: Bearer pr_…`")]
    Missing,
    #[error("the API key is not valid or has been revoked")]
    Invalid,
    #[error("this key lacks the `{0}` scope")]
    InsufficientScope(Scope),
    #[error("too many requests for this key; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keys stay cached this long at most, so a revocation this process did not
/// hear of (a lost notification) still takes effect.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

pub struct Authenticator {
    store: Arc<dyn Store>,
    /// Secret's index → a valid (not revoked) key, and when it was cached.
    keys: Cache<u128, (Arc<ApiKey>, Instant)>,
    index: SecretIndex,
    limiters: HashMap<Scope, DefaultKeyedRateLimiter<Uuid>>,
}

/// Where the key cache files a secret: a 128-bit SipHash of it under a key
/// drawn when the process starts. The stored SHA-256 cost more per request
/// than the rest of authentication together; a keyed hash this wide cannot
/// be made to collide by a caller who does not know the process's key, and
/// the cache never holds a secret or anything that could be checked against
/// the database's hashes.
struct SecretIndex {
    k0: u64,
    k1: u64,
}

impl SecretIndex {
    fn random() -> Self {
        Self {
            k0: rand::random(),
            k1: rand::random(),
        }
    }

    fn of(&self, secret: &KeySecret) -> u128 {
        use std::hash::Hasher;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(self.k0, self.k1);
        hasher.write(secret.expose().as_bytes());
        siphasher::sip128::Hasher128::finish128(&hasher).as_u128()
    }
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, limits: &RateLimits) -> anyhow::Result<Self> {
        let mut limiters = HashMap::new();
        for scope in Scope::ALL {
            let limit = match scope {
                Scope::Read => limits.read,
                Scope::Write => limits.write,
                Scope::Promote => limits.promote,
                Scope::Evaluate => limits.evaluate,
                Scope::Feedback => limits.feedback,
                Scope::Admin => limits.admin,
            };
            limiters.insert(scope, DefaultKeyedRateLimiter::keyed(quota(scope, limit)?));
        }
        Ok(Self {
            store,
            keys: Cache::new(10_000),
            index: SecretIndex::random(),
            limiters,
        })
    }

    /// The caller a `Authorization` header value names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or(AuthError::Missing)?;
        let secret = KeySecret::parse(token.trim()).ok_or(AuthError::Invalid)?;
        let key = self.find_key(&secret).await?.ok_or(AuthError::Invalid)?;
        Ok(Caller {
            project: key.project_id,
            principal: Principal::Key(key),
        })
    }

    /// The live (not revoked) key whose secret is `raw`, as the web UI's
    /// "sign in with an API key" form sends it.
    pub async fn key_for_secret(&self, raw: &str) -> Result<ApiKey, AuthError> {
        let secret = KeySecret::parse(raw.trim()).ok_or(AuthError::Invalid)?;
        let key = self.find_key(&secret).await?.ok_or(AuthError::Invalid)?;
        Ok(ApiKey::clone(&key))
    }

    /// The caller a Langfuse-style key pair names: `secret` is the key, and
    /// `public_key` must be that key's id, or the pair is refused.
    pub async fn authenticate_pair(
        &self,
        public_key: &str,
        secret: &str,
    ) -> Result<Caller, AuthError> {
        let id = Uuid::parse_str(public_key.trim()).map_err(|_| AuthError::Invalid)?;
        let secret = KeySecret::parse(secret.trim()).ok_or(AuthError::Invalid)?;
        let key = self
            .find_key(&secret)
            .await?
            .filter(|key| key.id == id)
            .ok_or(AuthError::Invalid)?;
        Ok(Caller {
            project: key.project_id,
            principal: Principal::Key(key),
        })
    }

    async fn find_key(&self, secret: &KeySecret) -> Result<Option<Arc<ApiKey>>, StoreError> {
        let index = self.index.of(secret);
        let hit = self
            .keys
            .get(&index)
            .filter(|(_, cached)| cached.elapsed() < KEY_CACHE_TTL);
        metrics::cache_lookup(metrics::Cache::Key, hit.is_some());
        if let Some((key, _)) = hit {
            return Ok(Some(key));
        }
        let candidates = self
            .store
            .find_keys_by_prefix(secret.display_prefix())
            .await?;
        let found = candidates
            .into_iter()
            .find(|stored| secret.matches(&stored.secret_hash))
            .filter(|stored| !stored.key.revoked)
            .map(|stored| Arc::new(stored.key));
        if let Some(key) = &found {
            self.keys.insert(index, (key.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Checks `scope` and takes a token from the key's bucket for it.
    pub fn authorize(&self, caller: &Caller, scope: Scope) -> Result<(), AuthError> {
        if !caller.has(scope) {
            return Err(AuthError::InsufficientScope(scope));
        }
        if let Some(limiter) = self.limiters.get(&scope) {
            limiter.check_key(&caller.bucket()).map_err(|not_until| {
                AuthError::RateLimited(not_until.wait_time_from(DefaultClock::default().now()))
            })?;
        }
        Ok(())
    }

    /// Applies a change another process announced.
    pub fn apply(&self, change: Invalidation) {
        match change {
            Invalidation::Key(id) => self.invalidate_key(id),
            Invalidation::All => self.keys.clear(),
            Invalidation::Prompt(_) => {}
        }
    }

    /// Forgets a revoked key at once.
    pub fn invalidate_key(&self, id: Uuid) {
        // Revocations are rare; a predicate over the cache is fine.
        self.keys.retain(|_, (key, _)| key.id != id);
    }

    pub async fn create_key(
        &self,
        project: ProjectId,
        name: &str,
        scopes: Vec<Scope>,
        actor: &Actor,
    ) -> Result<(ApiKey, KeySecret), StoreError> {
        let secret = KeySecret::generate();
        let key = self.insert(project, name, scopes, &secret, actor).await?;
        Ok((key, secret))
    }

    async fn insert(
        &self,
        project: ProjectId,
        name: &str,
        scopes: Vec<Scope>,
        secret: &KeySecret,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let new = NewKey {
            name: name.to_owned(),
            scopes,
            prefix: secret.display_prefix().to_owned(),
            secret_hash: secret.hash(),
        };
        self.store.insert_key(project, new, actor).await
    }

    pub async fn revoke_key(
        &self,
        project: ProjectId,
        id: Uuid,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let key = self.store.revoke_key(project, id, actor).await?;
        self.invalidate_key(id);
        Ok(key)
    }

    /// At start: with `init_key`, makes sure an admin key with exactly that
    /// secret exists in project `default`; without one, and with no key at
    /// all, creates an admin key and returns its secret (to be shown once).
    pub async fn bootstrap(
        &self,
        init_key: Option<&KeySecret>,
    ) -> anyhow::Result<Option<KeySecret>> {
        let project = self.store.ensure_project(DEFAULT_PROJECT).await?;
        let system = Actor::system();
        if let Some(secret) = init_key {
            let existing = self
                .store
                .find_keys_by_prefix(secret.display_prefix())
                .await?;
            if !existing
                .iter()
                .any(|k| secret.matches(&k.secret_hash) && !k.key.revoked)
            {
                self.insert(
                    project,
                    "bootstrap admin",
                    vec![Scope::Admin],
                    secret,
                    &system,
                )
                .await?;
            }
            return Ok(None);
        }
        if self.store.count_keys().await? > 0 {
            return Ok(None);
        }
        let (_, secret) = self
            .create_key(project, "bootstrap admin", vec![Scope::Admin], &system)
            .await?;
        Ok(Some(secret))
    }
}

fn quota(scope: Scope, limit: RateLimit) -> anyhow::Result<Quota> {
    let period = (limit.per_second > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / limit.per_second))
        .and_then(Quota::with_period)
        .ok_or_else(|| anyhow::anyhow!("rate_limit.{scope}.per_second must be above 0"))?;
    let burst = NonZeroU32::new(limit.burst)
        .ok_or_else(|| anyhow::anyhow!("rate_limit.{scope}.burst must be at least 1"))?;
    Ok(period.allow_burst(burst))
}

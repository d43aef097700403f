//! Web UI sessions: signing in with a user's password or with an API key,
//! finding the session a cookie names, switching project, signing out. A
//! session acts with exactly the scopes its user's role (in the session's
//! project) or its key grants, so the UI can do nothing the API would not
//! let the same person do. Repeated failed sign-ins are refused for a while,
//! per user name and per client address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::{AuthError, Authenticator, Caller};
use crate::config::UiConfig;
use crate::domain::users::{random_token, verify_password, Session, SessionHolder, SessionSecret};
use crate::domain::DEFAULT_PROJECT;
use crate::store::NewSession;

use super::{Registry, ServiceError, ServiceResult};

/// Failed sign-ins allowed per user name, and per address, in [`WINDOW`].
pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses and names tracked at most; the oldest are forgotten first.
const MAX_TRACKED: usize = 100_000;

/// The sessions' settings and the failed sign-ins of this process.
pub struct Sessions {
    hours: u32,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// What a browser presents to sign in.
pub enum Credentials<'a> {
    Password { name: &'a str, password: &'a str },
    Key { secret: &'a str },
}

/// A new session: the secret for the cookie, shown to nobody else.
#[derive(Debug)]
pub struct Opened {
    pub secret: SessionSecret,
    pub max_age: Duration,
}

/// A live session, as a page needs it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub caller: Caller,
    pub csrf_token: String,
    /// Projects the holder may switch to (a key has only its own).
    pub projects: Vec<String>,
    id_hash: String,
}

impl Sessions {
    pub fn new(config: &UiConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.session_hours >= 1,
            "ui.session_hours must be at least 1"
        );
        Ok(Self {
            hours: config.session_hours,
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.hours) * 3600)
    }

    /// How long to wait when any of `subjects` has failed too often.
    fn blocked(&self, subjects: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subjects
            .iter()
            .filter_map(|subject| {
                let seen = failures.get_mut(subject)?;
                while seen
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    seen.pop_front();
                }
                (seen.len() >= MAX_FAILURES)
                    .then(|| {
                        seen.front()
                            .map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    fn record_failure(&self, subjects: &[String]) {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, seen| seen.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for subject in subjects {
            let seen = failures.entry(subject.clone()).or_default();
            seen.push_back(now);
            while seen.len() > MAX_FAILURES {
                seen.pop_front();
            }
        }
    }
}

/// Opens a session for a user's name and password or for an API key.
/// Wrong credentials answer `SignInRefused`, saying no more; after
/// [`MAX_FAILURES`] failures in [`WINDOW`] for the same user name or from
/// the same address, `TooManySignIns` until the window has passed.
pub async fn sign_in(
    registry: &Registry,
    auth: &Authenticator,
    sessions: &Sessions,
    credentials: Credentials<'_>,
    address: Option<IpAddr>,
) -> ServiceResult<Opened> {
    let mut subjects = vec![format!(
        "address:{}",
        address.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
    )];
    if let Credentials::Password { name, .. } = &credentials {
        subjects.push(format!("user:{name}"));
    }
    if let Some(wait) = sessions.blocked(&subjects) {
        return Err(ServiceError::TooManySignIns(wait));
    }
    let store = &registry.store;
    let verified = match credentials {
        Credentials::Password { name, password } => check_password(registry, name, password).await,
        Credentials::Key { secret } => match auth.key_for_secret(secret).await {
            Ok(key) => Ok(Some((key.project_id, None, Some(key.id)))),
            Err(AuthError::Store(e)) => Err(e.into()),
            Err(_) => Ok(None),
        },
    };
    let Some((project_id, user_id, key_id)) = verified? else {
        sessions.record_failure(&subjects);
        return Err(ServiceError::SignInRefused);
    };
    let secret = SessionSecret::generate();
    let lifetime = sessions.lifetime();
    let expires_at = crate::store::now()
        + chrono::Duration::from_std(lifetime)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("session lifetime: {e}")))?;
    store
        .insert_session(NewSession {
            id_hash: secret.hash(),
            user_id,
            key_id,
            project_id,
            csrf_token: random_token(32),
            expires_at,
        })
        .await?;
    Ok(Opened {
        secret,
        max_age: lifetime,
    })
}

/// An argon2id hash of a random password, checked against when the name is
/// unknown so that an unknown name takes as long as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::domain::users::hash_password(&random_token(24)).unwrap_or_default()
});

/// The project, user and key a session for this name and password would
/// hold; `None` when they do not match.
async fn check_password(
    registry: &Registry,
    name: &str,
    password: &str,
) -> ServiceResult<Option<(uuid::Uuid, Option<uuid::Uuid>, Option<uuid::Uuid>)>> {
    let found = registry.store.find_user_credentials(name).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, DUMMY_HASH.clone()),
    };
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("password check task: {e}")))?;
    let Some(user) = user.filter(|_| matches) else {
        return Ok(None);
    };
    let project = if user.roles.contains_key(DEFAULT_PROJECT) {
        DEFAULT_PROJECT
    } else {
        user.roles
            .keys()
            .next()
            .map(String::as_str)
            .ok_or_else(|| {
                ServiceError::validation(
                    "name",
                    "this user has no role in any project; ask an admin for one",
                )
            })?
    };
    let project = registry.store.get_project(project).await?.id;
    Ok(Some((project, Some(user.id), None)))
}

/// The live session `cookie` names, as the caller it acts as; `None` when
/// it names none (unknown, expired, signed out, its user deleted or its
/// key revoked, or the user no longer has a role in its project).
pub async fn find(registry: &Registry, cookie: &str) -> ServiceResult<Option<SignedIn>> {
    let Some(secret) = SessionSecret::parse(cookie) else {
        return Ok(None);
    };
    let id_hash = secret.hash();
    let Some(session) = registry.store.find_session(&id_hash).await? else {
        return Ok(None);
    };
    Ok(signed_in(session, id_hash))
}

fn signed_in(session: Session, id_hash: String) -> Option<SignedIn> {
    let Session {
        project_id,
        project,
        csrf_token,
        holder,
        ..
    } = session;
    let (caller, projects) = match holder {
        SessionHolder::User { id, name, roles } => {
            let role = *roles.get(&project)?;
            let caller = Caller::user(id, &name, project_id, &project, role);
            (caller, roles.into_keys().collect())
        }
        SessionHolder::Key { id, name, scopes } => {
            let caller = Caller::key(crate::domain::ApiKey {
                id,
                project_id,
                project: project.clone(),
                name,
                scopes,
                prefix: String::new(),
                created_at: chrono::DateTime::UNIX_EPOCH,
                revoked: false,
            });
            (caller, vec![project])
        }
    };
    Some(SignedIn {
        caller,
        csrf_token,
        projects,
        id_hash,
    })
}

/// Makes `project` the session's project; the holder must have a role there.
pub async fn switch_project(
    registry: &Registry,
    session: &SignedIn,
    project: &str,
) -> ServiceResult<()> {
    if !session.projects.iter().any(|p| p == project) {
        return Err(ServiceError::validation(
            "project",
            format!("you have no role in project {project:?}"),
        ));
    }
    let project = registry.store.get_project(project).await?;
    Ok(registry
        .store
        .update_session_project(&session.id_hash, project.id)
        .await?)
}

/// Ends the session: its cookie is refused from now on.
pub async fn sign_out(registry: &Registry, session: &SignedIn) -> ServiceResult<()> {
    Ok(registry.store.delete_session(&session.id_hash).await?)
}

impl SignedIn {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf_token.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

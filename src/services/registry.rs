//! The registry service: every prompt, version and label operation the API
//! offers, with read-through caches in front of the store for the hot path
//! (fetching a version by label or semver).
//!
//! Versions are immutable, so a version found by exact semver is cached for
//! good. Label and `latest` resolutions are cached per prompt and dropped
//! whenever that prompt's labels or versions change: after a write here, or
//! when another process announces one ([`Registry::apply`]). A label the
//! prompt does not have is cached too, the same way: renders at `staging`
//! ask for it on every partial that has only `production`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use quick_cache::sync::Cache;
use quick_cache::Equivalent;
use uuid::Uuid;

use crate::config::CacheConfig;
use crate::domain::auth::Actor;
use crate::domain::experiments::{self, Experiment};
use crate::domain::{
    Label, LabelName, Page, ProjectId, PromptName, PromptSummary, Version, VersionRef,
};
use crate::store::{
    CreatedVersion, Invalidation, LabelVersion, NewPrompt, NewVersion, PageRequest, PromptFilter,
    PromptPatch, Store, StoreError, StoreResult,
};
use crate::telemetry::metrics;

/// How long `/readyz` waits for the database before answering 503.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// What is cached of one prompt while it does not change: its label (and
/// `latest`) resolutions, `None` for a label it does not have, and its
/// summary (labels, tags, latest version). Removed from the cache as a whole
/// on invalidation; a reader that raced the removal fills a detached copy, so
/// a stale answer can never land in the live cache.
type Resolutions = Arc<RwLock<PromptState>>;

#[derive(Default)]
struct PromptState {
    labels: HashMap<LabelName, Option<Resolved>>,
    summary: Option<PromptSummary>,
}

/// A label's version, and the experiment splitting the label, if one runs.
#[derive(Clone)]
struct Resolved {
    version: Arc<Version>,
    split: Option<Arc<Split>>,
}

/// A running experiment as the hot path needs it: weights (the control
/// first) and, per variant, its version and served counter.
struct Split {
    experiment: Uuid,
    weights: Vec<u32>,
    arms: Vec<Arm>,
}

struct Arm {
    version: Arc<Version>,
    served: Arc<AtomicU64>,
}

impl Split {
    /// The variant for `unit` (random without one), counted as served;
    /// `None` only for a split without variants, which is never loaded.
    fn choose(&self, unit: Option<&str>) -> Option<Served> {
        let bucket = match unit {
            Some(unit) => experiments::bucket(self.experiment, unit),
            None => rand::random_range(0..experiments::BUCKETS),
        };
        let arm = self
            .arms
            .get(experiments::variant_for(&self.weights, bucket))?;
        arm.served.fetch_add(1, Ordering::Relaxed);
        Some(Served {
            version: arm.version.clone(),
            experiment: Some(self.experiment),
        })
    }
}

/// What a label served: a version and, when an experiment chose it, which.
#[derive(Debug, Clone)]
pub struct Served {
    pub version: Arc<Version>,
    pub experiment: Option<Uuid>,
}

impl Served {
    fn plain(version: Arc<Version>) -> Self {
        Self {
            version,
            experiment: None,
        }
    }
}

/// A write's answer that names the prompt it changed.
pub(super) trait ChangesPrompt {
    fn changed_prompt(&self) -> Uuid;
}

impl ChangesPrompt for Label {
    fn changed_prompt(&self) -> Uuid {
        self.prompt_id
    }
}

impl ChangesPrompt for Experiment {
    fn changed_prompt(&self) -> Uuid {
        self.prompt_id
    }
}

impl ChangesPrompt for CreatedVersion {
    fn changed_prompt(&self) -> Uuid {
        self.version.prompt_id
    }
}

/// A `(project, name)` key of `prompt_ids` by reference, so that a lookup
/// does not copy the name. Hashes as the tuple does.
#[derive(Hash)]
struct NameKey<'a>(ProjectId, &'a PromptName);

impl Equivalent<(ProjectId, PromptName)> for NameKey<'_> {
    fn equivalent(&self, key: &(ProjectId, PromptName)) -> bool {
        self.0 == key.0 && *self.1 == key.1
    }
}

pub struct Registry {
    /// Reached only by the use-cases in `services`: no front door sees the store.
    pub(super) store: Arc<dyn Store>,
    /// (project, name) → prompt id. Names are never reused for another prompt.
    prompt_ids: Cache<(ProjectId, PromptName), Uuid>,
    exact: Cache<(Uuid, semver::Version), Arc<Version>>,
    resolutions: Cache<Uuid, Resolutions>,
    /// Requests each experiment variant served since the last flush, by
    /// (experiment, position); cached splits hold the same counters.
    served: Mutex<HashMap<(Uuid, u32), Arc<AtomicU64>>>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, limits: &CacheConfig) -> Self {
        Self {
            store,
            prompt_ids: Cache::new(limits.max_prompts),
            exact: Cache::new(limits.max_versions),
            resolutions: Cache::new(limits.max_prompts),
            served: Mutex::default(),
        }
    }

    /// The database connections now, for the metrics scrape.
    pub fn pool_connections(&self) -> crate::store::PoolConnections {
        self.store.pool_connections()
    }

    /// The store's webhook side, for the delivery loop (which, like the job
    /// worker, works on the outbox rather than through a use-case).
    pub fn webhook_store(&self) -> Arc<dyn crate::store::WebhookStore> {
        self.store.clone()
    }

    /// Which backend the store is, for logs.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Drops cached resolutions another process announced as stale.
    pub fn apply(&self, change: Invalidation) {
        match change {
            Invalidation::Prompt(id) => self.invalidate(id),
            Invalidation::All => self.resolutions.clear(),
            Invalidation::Key(_) => {}
        }
    }

    fn invalidate(&self, prompt_id: Uuid) {
        self.resolutions.remove(&prompt_id);
    }

    /// The prompt's cached state, a fresh one if it has none yet.
    fn resolutions_of(&self, prompt_id: Uuid) -> Resolutions {
        match self
            .resolutions
            .get_or_insert_with(&prompt_id, || Ok::<_, Infallible>(Resolutions::default()))
        {
            Ok(entry) => entry,
            Err(never) => match never {},
        }
    }

    /// Awaits a write to a prompt's labels or versions, then drops that
    /// prompt's cached resolutions: every such write goes through here.
    pub(super) async fn changed<T: ChangesPrompt>(
        &self,
        write: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let done = write.await?;
        self.invalidate(done.changed_prompt());
        Ok(done)
    }

    pub async fn create_prompt(
        &self,
        project: ProjectId,
        new: NewPrompt,
        actor: &Actor,
    ) -> StoreResult<PromptSummary> {
        let prompt = self.store.insert_prompt(project, new, actor).await?;
        // A new prompt has no labels and no versions: nothing to read back.
        Ok(PromptSummary {
            prompt,
            labels: Default::default(),
            latest_version: None,
            latest_content_hash: None,
            latest_created_by: None,
        })
    }

    /// A prompt with its labels, from memory when possible: the Langfuse
    /// SDK's prompt read answers the labels and tags on every call.
    pub async fn get_prompt(
        &self,
        project: ProjectId,
        name: &PromptName,
    ) -> StoreResult<PromptSummary> {
        let Some(id) = self.prompt_ids.get(&NameKey(project, name)) else {
            let summary = self.store.get_prompt(project, name).await?;
            self.prompt_ids
                .insert((project, name.clone()), summary.prompt.id);
            return Ok(summary);
        };
        let entry = self.resolutions_of(id);
        if let Some(summary) = read(&entry).summary.clone() {
            return Ok(summary);
        }
        // Fetched with the entry in hand, as for labels.
        let summary = self.store.get_prompt(project, name).await?;
        write(&entry).summary = Some(summary.clone());
        Ok(summary)
    }

    pub async fn list_prompts(
        &self,
        project: ProjectId,
        filter: &PromptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<PromptSummary>> {
        self.store.list_prompts(project, filter, page).await
    }

    pub async fn update_prompt(
        &self,
        project: ProjectId,
        name: &PromptName,
        patch: PromptPatch,
        actor: &Actor,
    ) -> StoreResult<PromptSummary> {
        let summary = self
            .store
            .update_prompt(project, name, patch, actor)
            .await?;
        self.invalidate(summary.prompt.id);
        Ok(summary)
    }

    /// See [`OptimizationStore::finish_optimization`](crate::store::OptimizationStore::finish_optimization); `prompt_id` is the optimized prompt's.
    pub async fn finish_optimization(
        &self,
        id: Uuid,
        prompt_id: Uuid,
        owner: &str,
        state: &crate::domain::optimization::OptimizationState,
        result: Option<(ProjectId, PromptName, NewVersion, Actor)>,
    ) -> StoreResult<Option<semver::Version>> {
        let version = self
            .store
            .finish_optimization(id, owner, state, result)
            .await?;
        self.invalidate(prompt_id);
        Ok(version)
    }

    pub async fn list_versions(
        &self,
        project: ProjectId,
        name: &PromptName,
        page: PageRequest,
    ) -> StoreResult<Page<Version>> {
        self.store.list_versions(project, name, page).await
    }

    /// The hot path: a version by semver or label, from memory when possible.
    /// A label resolves to its own version even while an experiment splits
    /// it: [`Registry::serve_version`] is what serves the split.
    pub async fn get_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
    ) -> StoreResult<Arc<Version>> {
        match reference {
            VersionRef::Label(label) => Ok(self.resolve_label(project, name, label).await?.version),
            VersionRef::Exact(semver) => self.exact_version(project, name, semver).await,
        }
    }

    async fn exact_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        semver: &semver::Version,
    ) -> StoreResult<Arc<Version>> {
        let prompt_id = self.prompt_ids.get(&NameKey(project, name));
        if let Some(hit) = prompt_id.and_then(|id| self.exact.get(&(id, semver.clone()))) {
            return Ok(hit);
        }
        let reference = VersionRef::Exact(semver.clone());
        let version = Arc::new(self.store.get_version(project, name, &reference).await?);
        self.prompt_ids
            .insert((project, name.clone()), version.prompt_id);
        self.exact
            .insert((version.prompt_id, semver.clone()), version.clone());
        Ok(version)
    }

    /// A version for a client to use: as [`Registry::get_version`], except
    /// that a label an experiment runs on answers one of its variants,
    /// chosen in memory: by `unit` (sticky: the same unit, the same
    /// variant, on every replica), else at random.
    pub async fn serve_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
        unit: Option<&str>,
    ) -> StoreResult<Served> {
        let VersionRef::Label(label) = reference else {
            return Ok(Served::plain(
                self.get_version(project, name, reference).await?,
            ));
        };
        let resolved = self.resolve_label(project, name, label).await?;
        Ok(resolved
            .split
            .and_then(|split| split.choose(unit))
            .unwrap_or(Served::plain(resolved.version)))
    }

    /// A label's version and the split running on it, from memory when possible.
    async fn resolve_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
    ) -> StoreResult<Resolved> {
        let Some(id) = self.prompt_ids.get(&NameKey(project, name)) else {
            metrics::cache_lookup(metrics::Cache::Label, false);
            let found = self.store.get_label_version(project, name, label).await?;
            let prompt_id = found.version.prompt_id;
            self.prompt_ids.insert((project, name.clone()), prompt_id);
            return self.resolved(project, name, prompt_id, label, found).await;
        };
        let entry = self.resolutions_of(id);
        let hit = read(&entry).labels.get(label).cloned();
        metrics::cache_lookup(metrics::Cache::Label, hit.is_some());
        match hit {
            Some(Some(resolved)) => return Ok(resolved),
            Some(None) => {
                return Err(StoreError::LabelNotFound {
                    prompt: name.to_string(),
                    label: label.to_string(),
                })
            }
            None => {}
        }
        // Fetch with the entry in hand: if a write invalidates it
        // meanwhile, what we fetched goes into the detached entry.
        match self.store.get_label_version(project, name, label).await {
            Ok(found) => {
                let resolved = self.resolved(project, name, id, label, found).await?;
                write(&entry)
                    .labels
                    .insert(label.clone(), Some(resolved.clone()));
                Ok(resolved)
            }
            Err(unset @ StoreError::LabelNotFound { .. }) => {
                write(&entry).labels.insert(label.clone(), None);
                Err(unset)
            }
            Err(other) => Err(other),
        }
    }

    /// A label's version, with the experiment's split when one runs on
    /// the label (rare: only then is there more to read).
    async fn resolved(
        &self,
        project: ProjectId,
        name: &PromptName,
        prompt_id: Uuid,
        label: &LabelName,
        found: LabelVersion,
    ) -> StoreResult<Resolved> {
        let split = if found.experiment_running {
            self.load_split(project, name, prompt_id, label).await?
        } else {
            None
        };
        Ok(Resolved {
            version: Arc::new(found.version),
            split,
        })
    }

    /// The experiment running on a label, with its variants' versions and
    /// served counters at hand, so that a request chooses without I/O.
    async fn load_split(
        &self,
        project: ProjectId,
        name: &PromptName,
        prompt_id: Uuid,
        label: &LabelName,
    ) -> StoreResult<Option<Arc<Split>>> {
        let Some(experiment) = self
            .store
            .find_running_experiment(prompt_id, label.as_str())
            .await?
        else {
            return Ok(None);
        };
        let mut arms = Vec::with_capacity(experiment.variants.len());
        for (position, variant) in (0u32..).zip(&experiment.variants) {
            let version = self.exact_version(project, name, &variant.version).await?;
            let served = lock(&self.served)
                .entry((experiment.id, position))
                .or_default()
                .clone();
            arms.push(Arm { version, served });
        }
        Ok(Some(Arc::new(Split {
            experiment: experiment.id,
            weights: experiment.variants.iter().map(|v| v.weight).collect(),
            arms,
        })))
    }

    /// Writes the requests served since the last flush to the store (one
    /// write per variant that served any), and forgets the counters of
    /// splits no longer cached. On failure the counts are kept for the next.
    pub async fn flush_served(&self) -> StoreResult<()> {
        let counts: Vec<(Uuid, u32, u64)> = {
            let mut served = lock(&self.served);
            let counts = served
                .iter()
                .map(|(&(experiment, position), count)| {
                    (experiment, position, count.swap(0, Ordering::Relaxed))
                })
                .filter(|(_, _, count)| *count > 0)
                .collect();
            served.retain(|_, count| Arc::strong_count(count) > 1);
            counts
        };
        if counts.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.add_served(&counts).await {
            let mut served = lock(&self.served);
            for (experiment, position, count) in counts {
                served
                    .entry((experiment, position))
                    .or_default()
                    .fetch_add(count, Ordering::Relaxed);
            }
            return Err(e);
        }
        Ok(())
    }

    pub async fn list_labels(
        &self,
        project: ProjectId,
        name: &PromptName,
    ) -> StoreResult<Vec<Label>> {
        self.store.list_labels(project, name).await
    }

    /// Readiness: the database answers within [`READY_WITHIN`]. A readiness
    /// probe needs an answer, not a wait: in the moments after the database
    /// goes, before the health probe has seen it, a ping would otherwise wait
    /// for a connection that never comes; and a replica that cannot get a
    /// connection that fast is better taken out of rotation anyway.
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(READY_WITHIN, self.store.ping())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {} ms",
                    READY_WITHIN.as_millis()
                )))
            })
    }
}

// A poisoned lock only means a panic elsewhere mid-insert into a plain map;
// the map is still valid, so keep serving.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_key_finds_what_its_owned_tuple_filed() {
        let cache: Cache<(ProjectId, PromptName), Uuid> = Cache::new(10);
        let project = Uuid::new_v4();
        let name = PromptName::parse("team/greeting").expect("a valid name");
        let id = Uuid::new_v4();
        cache.insert((project, name.clone()), id);
        assert_eq!(cache.get(&NameKey(project, &name)), Some(id));
        let other = PromptName::parse("team/other").expect("a valid name");
        assert_eq!(cache.get(&NameKey(project, &other)), None);
        assert_eq!(cache.get(&NameKey(Uuid::new_v4(), &name)), None);
    }

    #[test]
    fn a_cache_of_no_entries_keeps_nothing() {
        // `cache.max_prompts = 0` turns the label cache off (bench/load.sh's
        // cold reads): what is filled must not be found again.
        let cache: Cache<Uuid, Resolutions> = Cache::new(0);
        let id = Uuid::new_v4();
        let first = cache.get_or_insert_with(&id, || Ok::<_, Infallible>(Resolutions::default()));
        assert!(first.is_ok());
        assert!(cache.get(&id).is_none());
    }
}

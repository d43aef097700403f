-- Optimizations: a job that proposes and scores candidate templates for a
-- prompt version. `spec` is what was asked for; `state` is how far the job
-- got, rewritten after every step so a resumed job continues from there.
create table optimization (
    id uuid primary key,
    project_id uuid not null references project (id),
    job_id uuid not null unique references job (id),
    prompt_id uuid not null references prompt (id),
    version_id uuid not null references prompt_version (id),
    dataset_id uuid not null references dataset (id),
    -- The dataset's size at creation: later items are not part of it.
    item_count bigint not null,
    spec jsonb not null,
    state jsonb not null,
    -- Set in the transaction that creates the version, so there is one at most.
    result_version_id uuid references prompt_version (id),
    created_at timestamptz not null,
    created_by text
);

create index optimization_project_created_idx on optimization (project_id, created_at);

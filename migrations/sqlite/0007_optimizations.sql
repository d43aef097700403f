-- Optimizations: a job that proposes and scores candidate templates for a
-- prompt version. `spec` is what was asked for; `state` is how far the job
-- got, rewritten after every step so a resumed job continues from there.
create table optimization (
    id blob primary key,
    project_id blob not null references project (id),
    job_id blob not null unique references job (id),
    prompt_id blob not null references prompt (id),
    version_id blob not null references prompt_version (id),
    dataset_id blob not null references dataset (id),
    -- The dataset's size at creation: later items are not part of it.
    item_count integer not null,
    spec text not null,
    state text not null,
    -- Set in the transaction that creates the version, so there is one at most.
    result_version_id blob references prompt_version (id),
    created_at text not null,
    created_by text
);

create index optimization_project_created_idx on optimization (project_id, created_at);

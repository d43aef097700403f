-- Durable jobs (a lease-based queue) and evaluations: a version run over a
-- dataset with a provider, scored per item as each completes.
create table job (
    id blob primary key,
    project_id blob not null references project (id),
    kind text not null,
    payload text not null,
    status text not null check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts integer not null default 0,
    max_attempts integer not null,
    lease_owner text,
    lease_expires_at text,
    run_after text not null,
    progress_done integer not null default 0,
    progress_total integer not null default 0,
    cancel_requested boolean not null default false,
    error text,
    created_at text not null,
    started_at text,
    finished_at text,
    updated_at text not null
);

create index job_status_run_after_idx on job (status, run_after);

create table evaluation (
    id blob primary key,
    project_id blob not null references project (id),
    job_id blob not null references job (id),
    prompt_id blob not null references prompt (id),
    version_id blob not null references prompt_version (id),
    dataset_id blob not null references dataset (id),
    provider text not null,
    model text,
    params text not null,
    metrics text not null,
    concurrency integer not null,
    -- The dataset's size when the evaluation was created: later items are not part of it.
    item_count integer not null,
    created_at text not null,
    created_by text
);

create index evaluation_version_dataset_idx on evaluation (version_id, dataset_id);

create table evaluation_result (
    id integer primary key autoincrement,
    evaluation_id blob not null references evaluation (id),
    item_id blob not null references dataset_item (id),
    item_seq integer not null,
    output text,
    scores text not null,
    -- Per metric, what else it said (an LLM judge's reason).
    details text not null,
    error text,
    latency_ms integer not null,
    input_tokens integer not null,
    output_tokens integer not null,
    cost_usd real,
    created_at text not null,
    constraint evaluation_result_evaluation_id_item_id_key unique (evaluation_id, item_id)
);

-- Quality gates: moving `label` on a prompt requires a succeeded evaluation
-- of the target version on `dataset_id` that meets every rule.
create table gate (
    prompt_id blob not null references prompt (id),
    label text not null,
    dataset_id blob not null references dataset (id),
    rules text not null,
    created_at text not null,
    updated_at text not null,
    primary key (prompt_id, label)
);

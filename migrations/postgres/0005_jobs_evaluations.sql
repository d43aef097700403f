-- Durable jobs (a lease-based queue) and evaluations: a version run over a
-- dataset with a provider, scored per item as each completes.
create table job (
    id uuid primary key,
    project_id uuid not null references project (id),
    kind text not null,
    payload jsonb not null,
    status text not null check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts integer not null default 0,
    max_attempts integer not null,
    lease_owner text,
    lease_expires_at timestamptz,
    run_after timestamptz not null,
    progress_done bigint not null default 0,
    progress_total bigint not null default 0,
    cancel_requested boolean not null default false,
    error text,
    created_at timestamptz not null,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz not null
);

create index job_status_run_after_idx on job (status, run_after);

create table evaluation (
    id uuid primary key,
    project_id uuid not null references project (id),
    job_id uuid not null references job (id),
    prompt_id uuid not null references prompt (id),
    version_id uuid not null references prompt_version (id),
    dataset_id uuid not null references dataset (id),
    provider text not null,
    model text,
    params jsonb not null,
    metrics jsonb not null,
    concurrency integer not null,
    -- The dataset's size when the evaluation was created: later items are not part of it.
    item_count bigint not null,
    created_at timestamptz not null,
    created_by text
);

create index evaluation_version_dataset_idx on evaluation (version_id, dataset_id);

create table evaluation_result (
    id bigint generated always as identity primary key,
    evaluation_id uuid not null references evaluation (id),
    item_id uuid not null references dataset_item (id),
    item_seq bigint not null,
    output text,
    scores jsonb not null,
    -- Per metric, what else it said (an LLM judge's reason).
    details jsonb not null,
    error text,
    latency_ms bigint not null,
    input_tokens bigint not null,
    output_tokens bigint not null,
    cost_usd double precision,
    created_at timestamptz not null,
    constraint evaluation_result_evaluation_id_item_id_key unique (evaluation_id, item_id)
);

-- Quality gates: moving `label` on a prompt requires a succeeded evaluation
-- of the target version on `dataset_id` that meets every rule.
create table gate (
    prompt_id uuid not null references prompt (id),
    label text not null,
    dataset_id uuid not null references dataset (id),
    rules jsonb not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    primary key (prompt_id, label)
);

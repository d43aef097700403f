-- Online experiments: a running experiment splits a label's traffic between
-- its variants (the control, the label's version, first); feedback on served
-- versions, kept also outside experiments; label history notes for the
-- experiment's start, ramps and end.
create table experiment (
    id blob primary key,
    project_id blob not null references project (id),
    prompt_id blob not null references prompt (id),
    label text not null,
    metric text not null,
    direction text not null check (direction in ('higher', 'lower')),
    min_samples integer not null,
    confidence real not null,
    rollback_if_worse boolean not null,
    auto_promote boolean not null,
    status text not null check (status in ('running', 'stopped', 'promoted', 'rolled_back')),
    created_at text not null,
    created_by text,
    ended_at text
);

-- One running experiment per label.
create unique index experiment_running_label_key on experiment (prompt_id, label) where status = 'running';
create index experiment_project_id_idx on experiment (project_id, id);

create table experiment_variant (
    experiment_id blob not null references experiment (id),
    position integer not null,
    version_id blob not null references prompt_version (id),
    version text not null,
    weight integer not null,
    served integer not null default 0,
    primary key (experiment_id, position)
);

create table feedback (
    id blob primary key,
    project_id blob not null references project (id),
    -- The client's own id: a retry with the same id is not counted twice.
    client_id text,
    prompt_id blob not null references prompt (id),
    version_id blob not null references prompt_version (id),
    experiment_id blob references experiment (id),
    name text not null,
    value real not null,
    unit text,
    comment text,
    latency_ms integer,
    cost_usd real,
    trace_id text,
    metadata text,
    created_at text not null
);

create unique index feedback_project_id_client_id_key on feedback (project_id, client_id);
create index feedback_experiment_id_name_idx on feedback (experiment_id, name);
create index feedback_prompt_id_created_at_idx on feedback (prompt_id, created_at);

-- What an experiment did to the label (start, ramp, end); such entries move
-- nothing, so a rollback passes over them.
alter table label_move add column note text;

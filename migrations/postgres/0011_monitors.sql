-- Monitors: a watch on a label after its rollout. The label's version's mean
-- feedback over a window is compared with the version before it (or its own
-- first window); a confident drop fires the monitor once per version. The
-- config, then what the last check saw and when the monitor fired.
create table monitor (
    prompt_id uuid not null references prompt (id),
    label text not null,
    feedback text not null,
    -- As given: `30m`, `24h`, `7d`.
    window_spec text not null,
    min_samples bigint not null,
    max_drop double precision not null,
    confidence double precision not null,
    action text not null check (action in ('alert', 'rollback')),
    created_at timestamptz not null,
    updated_at timestamptz not null,
    created_by text,
    checked_at timestamptz,
    decision text check (decision in ('waiting', 'holding', 'dropped')),
    current_version text,
    current_n bigint,
    current_mean double precision,
    previous_version text,
    previous_n bigint,
    previous_mean double precision,
    first_window boolean not null default false,
    fired_at timestamptz,
    fired_version text,
    primary key (prompt_id, label)
);

-- The summary and the monitors read one version's feedback by name and time.
create index feedback_version_id_name_created_at_idx on feedback (version_id, name, created_at);

-- Monitors: a watch on a label after its rollout. The label's version's mean
-- feedback over a window is compared with the version before it (or its own
-- first window); a confident drop fires the monitor once per version. The
-- config, then what the last check saw and when the monitor fired.
create table monitor (
    prompt_id blob not null references prompt (id),
    label text not null,
    feedback text not null,
    -- As given: `30m`, `24h`, `7d`.
    window_spec text not null,
    min_samples integer not null,
    max_drop real not null,
    confidence real not null,
    action text not null check (action in ('alert', 'rollback')),
    created_at text not null,
    updated_at text not null,
    created_by text,
    checked_at text,
    decision text check (decision in ('waiting', 'holding', 'dropped')),
    current_version text,
    current_n integer,
    current_mean real,
    previous_version text,
    previous_n integer,
    previous_mean real,
    first_window boolean not null default false,
    fired_at text,
    fired_version text,
    primary key (prompt_id, label)
);

-- The summary and the monitors read one version's feedback by name and time.
create index feedback_version_id_name_created_at_idx on feedback (version_id, name, created_at);

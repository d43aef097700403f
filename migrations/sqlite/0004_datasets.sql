-- Datasets: named, append-only collections of items (input variables, an
-- optional reference output, metadata) that evaluations run over.
create table dataset (
    id blob primary key,
    project_id blob not null references project (id),
    name text not null,
    description text not null default '',
    item_count integer not null default 0,
    created_at text not null,
    updated_at text not null,
    constraint dataset_project_id_name_key unique (project_id, name)
);

create table dataset_item (
    id blob primary key,
    dataset_id blob not null references dataset (id),
    seq integer not null,
    input text not null,
    expected text,
    metadata text not null,
    created_at text not null,
    constraint dataset_item_dataset_id_seq_key unique (dataset_id, seq)
);

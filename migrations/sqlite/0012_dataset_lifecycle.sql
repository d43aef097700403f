-- Datasets can be archived (hidden from the list, still readable, taking no
-- new items) instead of deleted; lists of evaluations, optimizations and
-- jobs page newest first within a project, and a dataset's evaluations are
-- found when it is deleted.
alter table dataset add column archived_at text;

create index evaluation_project_id_idx on evaluation (project_id, id);
create index evaluation_dataset_id_idx on evaluation (dataset_id);
create index optimization_project_id_idx on optimization (project_id, id);
create index optimization_dataset_id_idx on optimization (dataset_id);
create index job_project_id_idx on job (project_id, id);

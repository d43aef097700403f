-- The variables a version reads from the caller's input, extracted at creation.
alter table prompt_version add column variables text not null default '[]';

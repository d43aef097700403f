-- The W3C traceparent of the request that queued a job, so the job's trace
-- links back to it. Null when tracing was off.
alter table job add column trace_parent text;

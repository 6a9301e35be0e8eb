-- +goose Up
-- A token may be bound to a task context: minted by an orchestrator for one
-- task (project, agent, run, job), it carries that context on every call, and
-- the call cannot change it (it may only add the fields left open). Policy
-- conditions marked from=token are satisfied only by such bound fields, never
-- by what a call asserts about itself. minted_by names who minted it.
ALTER TABLE api_tokens
    ADD COLUMN bound_task_id uuid,
    ADD COLUMN bound_project_id uuid,
    ADD COLUMN bound_run_id uuid,
    ADD COLUMN bound_job_id uuid,
    ADD COLUMN bound_agent_id text,
    ADD COLUMN minted_by text;

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN bound_task_id, DROP COLUMN bound_project_id, DROP COLUMN bound_run_id,
    DROP COLUMN bound_job_id, DROP COLUMN bound_agent_id, DROP COLUMN minted_by;

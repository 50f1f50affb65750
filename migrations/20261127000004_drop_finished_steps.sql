-- Progress is computed from the steps when read; this counter was only
-- written when the execution row itself changed, so it was stale while an
-- execution ran.
ALTER TABLE executions DROP COLUMN finished_steps;

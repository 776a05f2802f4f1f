"""Run execution: worker pool, pipeline, runners, worktrees and the coordinator."""

"""One shard of a planned run: engine and OOM backoff, synthesis, checks and regeneration, storage, rows, commit."""

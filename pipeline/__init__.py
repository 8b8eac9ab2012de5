"""The `pipeline` command, shard layout and committing, Ray scheduling, status and previews."""

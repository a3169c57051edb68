"""Per-user, per-chat context and image records in SQL (the storage and dialogue issue fills this in)."""

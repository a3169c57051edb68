"""Follow-up questions about photos (the storage and dialogue issue fills this in)."""

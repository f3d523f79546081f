"""softgrad."""

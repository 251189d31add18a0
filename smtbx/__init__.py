"""The small-molecule front end (not built yet)."""

"""The macromolecular front end (not built yet)."""

"""Geometry and ADP restraints (not built yet)."""

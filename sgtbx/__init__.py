"""Space groups, unit cells, site symmetry and reciprocal-space symmetry."""

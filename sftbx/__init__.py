"""Structure factors and their derivatives (not built yet)."""

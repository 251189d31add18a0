"""Least squares: normal equations, damping, solution, covariance (not built yet)."""

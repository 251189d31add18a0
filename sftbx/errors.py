"""Errors raised by sftbx for bad user input."""

from sgtbx.errors import CrystallographyError


class ScatteringError(CrystallographyError):
    """Bad scatterers, scattering types, reflections or options for sftbx."""

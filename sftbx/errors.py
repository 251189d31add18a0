"""Errors raised by sftbx for bad user input."""

try:
    from sgtbx.errors import CrystallographyError
except ImportError:  # sgtbx not merged yet: the same root as it will be
    class CrystallographyError(ValueError):
        """Root of the crystallographic input errors."""


class ScatteringError(CrystallographyError):
    """Bad scatterers, scattering types, reflections or options for sftbx."""

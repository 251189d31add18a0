"""The exception raised for bad restraint input."""

try:
    from sgtbx.errors import CrystallographyError
except ImportError:  # sgtbx not merged yet: the same base, ValueError
    class CrystallographyError(ValueError):
        """Root of the crystallographic errors (sgtbx defines the real one)."""


class RestraintError(CrystallographyError):
    """Bad restraint input: the message names the restraint type, the proxy
    index and what was expected."""

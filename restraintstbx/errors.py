"""The exception raised for bad restraint input."""

from sgtbx.errors import CrystallographyError


class RestraintError(CrystallographyError):
    """Bad restraint input: the message names the restraint type, the proxy
    index and what was expected."""

"""The exceptions of mmtbx: all are :class:`sgtbx.CrystallographyError`."""

from sgtbx.errors import CrystallographyError


class MmtbxError(CrystallographyError):
    """Root of the errors raised by the macromolecular front end."""


class ModelError(MmtbxError):
    """A model file that cannot be read or has nothing to compute with."""


class DataError(MmtbxError):
    """Reflection data that cannot be read, or columns that cannot be chosen."""


class ScalingError(MmtbxError):
    """Arrays given to the scaling or the targets that do not fit together."""

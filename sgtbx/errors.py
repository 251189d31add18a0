"""The exceptions of the crystallographic toolboxes.

Every user error is a :class:`CrystallographyError` (a ``ValueError``), with
a subclass saying what kind of input was wrong.  The toolboxes that build on
sgtbx (sftbx, restraintstbx, smtbx, mmtbx) derive their own from it.
"""


class CrystallographyError(ValueError):
    """Root of the errors raised for bad crystallographic input."""


class SymmetryError(CrystallographyError):
    """An unknown space-group symbol, or operations that are not a space group."""


class UnitCellError(CrystallographyError):
    """Cell parameters that do not describe a cell, or a cell that does not
    agree with the lattice of a space group."""


class SiteError(CrystallographyError):
    """A site (coordinates, s.u.'s or ADP) that cannot be used."""


class ReflectionError(CrystallographyError):
    """Miller indices or reflection data of the wrong shape or kind."""

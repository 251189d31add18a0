"""Errors raised by sftbx for bad user input."""

from sgtbx.errors import CrystallographyError


class ScatteringError(CrystallographyError):
    """Bad scatterers, scattering types, reflections or options for sftbx."""


class NonPositiveDefiniteWarning(UserWarning):
    """An atom whose ADP is not positive definite (NPD): a U* with an
    eigenvalue <= 0, or a negative u_iso.

    Its structure factors are still defined (the Debye-Waller factor
    exp(-2 pi^2 h U* h^T) exceeds 1 for some h), and SHELXL refines such
    atoms, flagging them NPD; the model is physically suspect.

    Attributes
    ----------
    atom : str
        The atom's label.
    index : int
        Its row in the scatterer table.
    """

    def __init__(self, message, atom, index):
        super().__init__(message)
        self.atom = atom
        self.index = index

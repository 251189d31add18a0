"""smtbx: the small-molecule front end (SHELX files, the model, refinement)."""

from .errors import ShelxSyntaxError, ShelxWarning, UnsupportedInstruction
from .model import Model, Observations
from .shelx import read_hkl, read_ins

__all__ = ["Model", "Observations", "ShelxSyntaxError", "ShelxWarning", "UnsupportedInstruction",
           "read_hkl", "read_ins"]

"""smtbx: the small-molecule front end (SHELX files, the model, refinement)."""

from .errors import OutputError, ShelxSyntaxError, ShelxWarning, UnsupportedInstruction
from .model import Model, Observations
from .shelx import format_res, read_hkl, read_ins, read_shelx, write_res

__all__ = ["Model", "Observations", "OutputError", "ShelxSyntaxError", "ShelxWarning",
           "UnsupportedInstruction", "format_res", "read_hkl", "read_ins", "read_shelx", "write_res"]

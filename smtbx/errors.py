"""Exceptions and warnings of the small-molecule front end."""

from dataclasses import dataclass

from sgtbx.errors import CrystallographyError


class ShelxSyntaxError(CrystallographyError):
    """A SHELX file (.ins, .res or .hkl) that cannot be read.

    Parameters
    ----------
    file : str
        The file name as given to the reader.
    line : int or None
        The 1-based line number, or None when the problem concerns the
        whole file (missing, not text).
    message : str
        What was found and what was expected.
    """

    def __init__(self, file, line, message):
        self.file = str(file)
        self.line = line
        self.message = message
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {message}")


class TwinError(CrystallographyError):
    """A twin law, component number or BASF list that cannot be used."""


class TwinInputError(ShelxSyntaxError, TwinError):
    """A :class:`TwinError` in the TWIN, BASF or HKLF 5 input of a file,
    with the file named."""


class UnsupportedInstruction(ShelxSyntaxError):
    """A SHELX instruction that is read correctly but cannot be honoured."""


@dataclass(frozen=True)
class ShelxWarning:
    """Something read from a SHELX file that was not used as written.

    Attributes
    ----------
    file : str
    line : int or None
        1-based line number of the instruction concerned.
    message : str
    """

    file: str
    line: int | None
    message: str

    def __str__(self):
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class OutputError(CrystallographyError):
    """An output that would overwrite an input, or a model that the output
    format cannot express."""

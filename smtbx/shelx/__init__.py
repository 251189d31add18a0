"""SHELX files: .ins/.res reader and writer, .hkl reader."""

from .hkl import read_hkl
from .reader import read_ins, read_shelx
from .writer import format_res, write_res

__all__ = ["format_res", "read_hkl", "read_ins", "read_shelx", "write_res"]

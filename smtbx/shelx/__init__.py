"""SHELX files: .ins/.res reader and writer, .hkl reader."""

from .hkl import read_hkl
from .reader import read_ins

__all__ = ["read_hkl", "read_ins"]

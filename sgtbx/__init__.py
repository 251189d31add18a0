"""sgtbx: space groups, unit cells, site symmetry and reciprocal-space symmetry.

Symbols and Hall parsing come from gemmi's tables; the operations are kept
as exact integer arrays, and the array work (site symmetry of many sites,
absences, centric flags, epsilons, asymmetric unit, merging) is done in
Cython.
"""

from .errors import (CrystallographyError, ReflectionError, SiteError, SymmetryError,
                     UnitCellError)
from .space_group import DEN, SpaceGroup
from .unit_cell import UnitCell
from .site_symmetry import SiteSymmetry, SiteSymmetryTable
from .reciprocal import (AsuMapping, MergedData, complete_set, completeness, map_to_asu,
                         merge_equivalents)

__all__ = [
    "AsuMapping", "CrystallographyError", "DEN", "MergedData", "ReflectionError", "SiteError",
    "SiteSymmetry", "SiteSymmetryTable", "SpaceGroup", "SymmetryError", "UnitCell",
    "UnitCellError", "complete_set", "completeness", "map_to_asu", "merge_equivalents",
]

"""restraintstbx: geometry and ADP restraints with values, gradients and
least-squares design rows, symmetry-aware (DESIGN.md §6).

Residuals are Delta = target - value, weights 1/sigma^2, the residual sum
sum w Delta^2.  Each type is a proxies class with ``residual_sum`` (and the
gradient), ``design_rows`` (sparse CSR rows for lstbx), ``deltas`` and
``statistics``; a RestraintSet adds several up.  Derivations:
restraintstbx/DERIVATIONS.md.
"""

from .errors import RestraintError
from .symmetry import Symmetry, u_transform
from .neighbours import Pairs, find_pairs
from .proxies import (
    AdpSimilarityProxies, AdpVolumeSimilarityProxies, AngleProxies, BondProxies,
    BondSimilarityProxies, BSimilarityProxies, BumpProxies, ChiralityProxies,
    DesignRows, DihedralProxies, FixedUeqProxies, FlatProxies, IsotropicAdpProxies,
    NonbondedProxies, PlanarityProxies, RestraintSet, RigidBondProxies, RiguProxies,
    Statistics, UeqSimilarityProxies,
)

__all__ = [
    "RestraintError", "Symmetry", "u_transform", "Pairs", "find_pairs", "DesignRows",
    "Statistics", "RestraintSet",
    "BondProxies", "AngleProxies", "DihedralProxies", "ChiralityProxies",
    "PlanarityProxies", "FlatProxies", "BondSimilarityProxies", "NonbondedProxies",
    "BumpProxies",
    "RigidBondProxies", "RiguProxies", "AdpSimilarityProxies", "IsotropicAdpProxies",
    "UeqSimilarityProxies", "FixedUeqProxies", "AdpVolumeSimilarityProxies",
    "BSimilarityProxies",
]

"""restraintstbx: geometry and ADP restraints with values, gradients and
least-squares design rows, symmetry-aware (DESIGN.md §6).

Residuals are Delta = target - value, weights 1/sigma^2, the residual sum
sum w Delta^2.  Each type is a proxies class with ``residual_sum`` (and the
gradient), ``design_rows`` (sparse CSR rows for lstbx), ``deltas`` and
``statistics``; a RestraintSet adds several up.  Derivations:
restraintstbx/DERIVATIONS.md.

>>> import numpy as np
>>> import restraintstbx as rt
>>> sites = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 1.5, 0.0]])
>>> bonds = rt.BondProxies([[0, 1], [1, 2]], distance_ideal=1.53, sigma=0.02)
>>> angles = rt.AngleProxies([[0, 1, 2]], angle_ideal=109.5, sigma=2.0)
>>> restraints = rt.RestraintSet([bonds, angles])
>>> gradient = np.zeros_like(sites)
>>> round(restraints.residual_sum(sites, gradients_out=gradient), 2)
99.56
>>> rows = restraints.design_rows(sites)
>>> rows.sites.shape, rows.deltas.round(2).tolist()
((3, 9), [0.03, 0.03, 19.5])
>>> print(bonds.statistics(sites, labels=["C1", "C2", "C3"], n_worst=1).format())
bond: 2 proxies, 2 rows, rmsd 0.03, rms Z 1.500
  proxy 0 (C1 C2): delta [0.03], |Z| 1.50
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

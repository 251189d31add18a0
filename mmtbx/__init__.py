"""mmtbx: the macromolecular front end.

Models and reflections are read through gemmi (:mod:`mmtbx.io`, with
French–Wilson for intensities); F_calc and F_mask come from one function,
:func:`mmtbx.sources.compute_f_calc_and_mask` (sftbx's FFT path and solvent
mask); :class:`FModel` fits the bulk
solvent and the scales and gives R factors, the least-squares and
maximum-likelihood targets with gradients with respect to F_calc, α/β, σA,
figures of merit and map coefficients.  The command ``mmtbx-fmodel`` is
:mod:`mmtbx.fmodel_cli`.
"""

from .errors import DataError, MmtbxError, ModelError, ScalingError
from .fmodel import (FModel, check_twin_law, fmodel_from_arrays, fmodel_from_files,
                     parse_twin_law, twin_mates)
from .french_wilson import french_wilson
from .io import ReflectionData, detect_free_convention, read_model, read_reflections
from .maps import write_map_coefficients
from .scaling import bulk_solvent_and_scale
from .sources import compute_f_calc_and_mask
from .statistics import data_statistics, r_factor
from .targets import (estimate_alpha_beta, figure_of_merit, least_squares_target, ml_target,
                      outlier_probabilities)

__all__ = [
    "DataError", "FModel", "MmtbxError", "ModelError", "ReflectionData", "ScalingError",
    "bulk_solvent_and_scale", "check_twin_law", "compute_f_calc_and_mask", "data_statistics",
    "detect_free_convention", "estimate_alpha_beta", "figure_of_merit", "fmodel_from_arrays",
    "fmodel_from_files", "french_wilson", "least_squares_target", "ml_target",
    "outlier_probabilities", "parse_twin_law", "r_factor", "read_model", "read_reflections",
    "twin_mates", "write_map_coefficients",
]

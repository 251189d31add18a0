"""sftbx: structure factors by direct summation and all their derivatives.

Public names::

    Scatterers, ParameterMap, SLOTS        the model as arrays; design-row columns
    not_positive_definite                  which ADPs are NPD (Scatterers warns of them)
    StructureFactors, structure_factors    F(h), design rows, target gradients
    ShelxExtinction, extinction_correction SHELXL's EXTI (also for twin sums of Fc^2)
    y_calc                                 Y = |F|^2 or |F| and its partials
    form_factor_table, cromer_liberman     scattering tables (from gemmi)
    ScatteringError                        bad input
    NonPositiveDefiniteWarning             an atom whose ADP is not positive definite
"""

from .errors import NonPositiveDefiniteWarning, ScatteringError
from .scatterers import SLOTS, ParameterMap, Scatterers, not_positive_definite
from .scattering import TABLES, cromer_liberman, form_factor_table, parse_scattering_type
from .direct import (ShelxExtinction, StructureFactors, extinction_correction,
                     structure_factors, y_calc)
from .fft import ACCURACY, FFTError, FFTStructureFactors, grid_shape, structure_factor_calculator
from .mask import VDW_RADII_CCTBX, MaskError, SolventMask, f_mask, vdw_radii
from .maps import (FourierMap, Peak, difference_map, fourier_synthesis, grid_size, move_near_atoms,
                   peak_search, q_peak_lines)

__all__ = [
    "ScatteringError", "NonPositiveDefiniteWarning", "SLOTS", "ParameterMap", "Scatterers",
    "not_positive_definite", "TABLES", "cromer_liberman",
    "form_factor_table", "parse_scattering_type", "ShelxExtinction", "StructureFactors", "extinction_correction",
    "structure_factors", "y_calc",
    "ACCURACY", "FFTError", "FFTStructureFactors", "grid_shape", "structure_factor_calculator",
    "VDW_RADII_CCTBX", "MaskError", "SolventMask", "f_mask", "vdw_radii",
    "FourierMap", "Peak", "difference_map", "fourier_synthesis", "grid_size", "move_near_atoms",
    "peak_search", "q_peak_lines",
]

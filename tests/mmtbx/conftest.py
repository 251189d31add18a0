"""Fixtures for the mmtbx tests: the small 5e5z set, read once."""

import pytest

from mmtbx import compute_f_calc_and_mask, read_model, read_reflections


@pytest.fixture(scope="session")
def set_5e5z(macro_data):
    structure = read_model(macro_data / "5e5z" / "5e5z.pdb")
    data = read_reflections(macro_data / "5e5z" / "5e5z.mtz")
    f_calc, f_mask = compute_f_calc_and_mask(structure, data.unit_cell, data.space_group,
                                             data.hkl, data.d_min)
    return structure, data, f_calc, f_mask

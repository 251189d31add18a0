"""The shared small-molecule sets by name: their file stems, and each set
read and reduced once per test session."""

import pytest

import smtbx
from smtbx.data import reduce_observations

# data-set folder -> file stem (NAME.ins or NAME.res with NAME.hkl)
STEMS = {
    "alga_p21c": "p21c", "bjk_p21212": "bjk", "caf2_fm3m": "caf2", "cc_invtwin": "disorder",
    "ed_cinch_p21": "shelxl", "exti_c2m": "exti", "fecl_r3c": "2240189", "gabipy_c2c": "C2c_a",
    "hmamg_p21c": "hma_mg", "musc_c2c": "muscovite", "nacl_fm3m": "NaCl", "ni_i43d": "i43d",
    "p31c_sad": "sad", "ru_p21c": "05srv085", "sh2185_p212121": "sh2185", "sucrose_p21": "zucker2",
    "thpp_p21n": "thpp", "twin5_p21n": "NO_PF-F-PF_twin4_XPREP_a", "twin5_p4": "P-4_NotDetwinned_12",
}


@pytest.fixture(scope="session")
def shelx_stem(small_data):
    """``shelx_stem(name)``: the path of a set without its extension."""
    return lambda name: small_data / name / STEMS[name]


@pytest.fixture(scope="session")
def reduced_set(shelx_stem):
    """``reduced_set(name)``: (model, reflections as SHELXL uses them), read
    once per session; callers must not modify them."""
    cache = {}

    def get(name):
        if name not in cache:
            model = smtbx.read_shelx(shelx_stem(name))
            cache[name] = (model, reduce_observations(model))
        return cache[name]
    return get

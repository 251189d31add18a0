"""Reading models and reflections: columns, free flags, merging, bad input."""

import gemmi
import numpy as np
import pytest

from mmtbx import (DataError, ModelError, detect_free_convention, read_model, read_reflections)
from mmtbx.io import check_cells_agree, residues_missing_from_monomer_library


# -- free-flag conventions ---------------------------------------------------------------

def test_ccp4_flags_0_to_19():
    values = np.arange(2000) % 20
    assert detect_free_convention(values) == ("ccp4", 0)


def test_phenix_flags_one_is_rare():
    values = np.r_[np.zeros(950), np.ones(50)]
    assert detect_free_convention(values) == ("phenix", 1)


def test_binary_flags_with_zero_rare_are_ccp4_like_3hqb():
    values = np.r_[np.zeros(118), np.ones(2171)]
    assert detect_free_convention(values) == ("ccp4", 0)


@pytest.mark.parametrize("values", [np.ones(10), np.r_[np.zeros(5), np.ones(5)]])
def test_undecidable_flags_are_an_error(values):
    with pytest.raises(DataError, match="free"):
        detect_free_convention(values, "FREE")


# -- real files ----------------------------------------------------------------------------

def test_5e5z_amplitudes_and_ccp4_flags(macro_data):
    data = read_reflections(macro_data / "5e5z" / "5e5z.mtz")
    assert data.columns == {"amplitudes": ("FP", "SIGFP")}
    assert data.free_flags.convention == "ccp4" and data.free_flags.column == "FREE"
    # cctbx uses 403 reflections, 18 of them free (REFERENCE.md)
    assert len(data.hkl) == 403 and int(data.free.sum()) == 18


def test_5e5z_intensities_by_french_wilson_match_amplitudes(macro_data):
    f_data = read_reflections(macro_data / "5e5z" / "5e5z.mtz")
    i_data = read_reflections(macro_data / "5e5z" / "5e5z.mtz", labels=("I", "SIGI"))
    assert "intensities" in i_data.columns and i_data.i_obs is not None
    common, ia, ib = np.intersect1d(_keys(f_data.hkl), _keys(i_data.hkl), return_indices=True)
    assert len(common) > 390
    fa, fb = f_data.f_obs[ia], i_data.f_obs[ib]
    # the deposited FP came from the same intensities (by truncate): same up to scale and noise
    k = np.sum(fa * fb) / np.sum(fb * fb)
    assert np.sum(np.abs(fa - k * fb)) / np.sum(fa) < 0.05


def _keys(hkl):
    return (hkl[:, 0].astype(np.int64) * 4096 + hkl[:, 1]) * 4096 + hkl[:, 2]


def test_4hg7_sf_mmcif_status_flags(macro_data):
    data = read_reflections(macro_data / "4hg7" / "4hg7-sf.cif")
    assert data.free_flags.convention == "mmcif"
    assert data.columns == {"amplitudes": ("F_meas_au", "F_meas_sigma_au")}
    # 'x' rows (262) are dropped; 1065 free (README.md, REFERENCE.md)
    assert len(data.hkl) == 21135 and int(data.free.sum()) == 1065


def test_3hqb_phenix_named_column_with_zero_free(macro_data):
    data = read_reflections(macro_data / "3hqb" / "3hqb.mtz")
    assert data.free_flags.column == "R-free-flags"
    assert data.free_flags.free_value == 0 and int(data.free.sum()) == 118


def test_free_value_override(macro_data):
    data = read_reflections(macro_data / "3hqb" / "3hqb.mtz", free_value=1)
    assert data.free_flags.convention == "given" and int(data.free.sum()) == 2289 - 118


def test_1l2h_intensities_only(macro_data):
    data = read_reflections(macro_data / "1l2h" / "1l2h.mtz")
    assert data.columns == {"intensities": ("IMEAN", "SIGIMEAN")}
    assert len(data.hkl) == 31780 and int(data.free.sum()) == 1519


def test_rnasa_picks_the_observed_amplitudes_not_fc(macro_data):
    data = read_reflections(macro_data / "rnasa" / "rnasa-1.8-all_refmac1.mtz")
    assert data.columns == {"amplitudes": ("FGMP18", "SIGFGMP18")}


# -- synthetic MTZ files -----------------------------------------------------------------------

def _write_mtz(path, columns, hkl, values, cell=(30, 40, 50, 90, 90, 90), sg="P 21 21 21"):
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("x")
    for label, kind in columns:
        mtz.add_column(label, kind)
    mtz.set_data(np.column_stack([hkl, values]).astype(np.float32))
    mtz.write_to_file(str(path))
    return str(path)


def _some_hkl(n=200, seed=0):
    rng = np.random.default_rng(seed)
    seen = set()
    rows = []
    while len(rows) < n:
        h = tuple(int(x) for x in rng.integers([1, 1, 1], [9, 11, 13]))  # no axial: no absences
        if h not in seen:
            seen.add(h)
            rows.append(h)
    return np.array(rows)


def test_mtz_without_amplitudes_or_intensities(tmp_path):
    hkl = _some_hkl()
    path = _write_mtz(tmp_path / "x.mtz", [("FREE", "I")], hkl, np.arange(len(hkl)) % 20)
    with pytest.raises(DataError, match="no amplitudes.*FREE:I"):
        read_reflections(path)


def test_ambiguous_amplitude_columns_name_the_candidates(tmp_path):
    hkl = _some_hkl()
    vals = np.ones((len(hkl), 4))
    path = _write_mtz(tmp_path / "x.mtz", [("FA", "F"), ("SIGFA", "Q"), ("FB", "F"), ("SIGFB", "Q")],
                      hkl, vals)
    with pytest.raises(DataError, match="FA/SIGFA, FB/SIGFB"):
        read_reflections(path)
    assert read_reflections(path, labels=("FB", "SIGFB")).columns == {"amplitudes": ("FB", "SIGFB")}


def test_ambiguous_free_flag_columns(tmp_path):
    hkl = _some_hkl()
    vals = np.c_[np.ones((len(hkl), 2)), np.arange(len(hkl)) % 20, np.arange(len(hkl)) % 10]
    path = _write_mtz(tmp_path / "x.mtz", [("F", "F"), ("SIGF", "Q"), ("FreeR_flag", "I"),
                                           ("FREE", "I")], hkl, vals)
    with pytest.raises(DataError, match=r"x\.mtz: 2 candidate free-flag columns \(FreeR_flag, FREE\)"):
        read_reflections(path)
    assert read_reflections(path, free_label="FREE").free_flags.column == "FREE"


def test_anomalous_pairs_are_averaged(tmp_path):
    hkl = _some_hkl()
    rng = np.random.default_rng(1)
    fp, fm = rng.uniform(10, 20, len(hkl)), rng.uniform(10, 20, len(hkl))
    fm[:5] = np.nan                      # F(-) missing: F(+) alone
    vals = np.c_[fp, np.ones(len(hkl)), fm, np.full(len(hkl), 2.0)]
    path = _write_mtz(tmp_path / "x.mtz", [("F(+)", "G"), ("SIGF(+)", "L"), ("F(-)", "G"),
                                           ("SIGF(-)", "L")], hkl, vals)
    data = read_reflections(path)
    order = np.argsort(_keys(hkl))
    expected = np.where(np.isnan(fm), fp, 0.5 * (fp + fm))[order]
    got = data.f_obs[np.argsort(_keys(data.hkl))]
    assert np.allclose(got, expected, rtol=1e-6)
    assert data.free_flags.convention == "none"


def test_friedel_mates_in_separate_rows_are_merged(tmp_path):
    hkl = _some_hkl(100)
    both = np.r_[hkl, -hkl]
    vals = np.c_[np.r_[np.full(100, 10.0), np.full(100, 20.0)], np.ones(200)]
    path = _write_mtz(tmp_path / "x.mtz", [("F", "F"), ("SIGF", "Q")], both, vals)
    data = read_reflections(path)
    assert len(data.hkl) == 100 and data.n_merged == 100
    assert np.allclose(data.f_obs, 15.0)


def test_cell_mismatch_over_one_percent():
    check_cells_agree((30, 40, 50, 90, 90, 90), (30.2, 40, 50, 90, 90, 90), "m", "d")
    with pytest.raises(DataError, match="differ by more than 1%"):
        check_cells_agree((30, 40, 50, 90, 90, 90), (30.5, 40, 50, 90, 90, 90), "m.pdb", "d.mtz")


def test_model_with_no_atoms(tmp_path):
    path = tmp_path / "empty.pdb"
    path.write_text("CRYST1   30.000   40.000   50.000  90.00  90.00  90.00 P 21 21 21\nEND\n")
    with pytest.raises(ModelError, match="no atoms"):
        read_model(path)


def test_missing_files():
    with pytest.raises(ModelError, match="not found"):
        read_model("/nonexistent/model.pdb")
    with pytest.raises(DataError, match="not found"):
        read_reflections("/nonexistent/data.mtz")


def test_residue_missing_from_monomer_library(macro_data, monomer_data):
    structure = read_model(macro_data / "5e5z" / "5e5z.pdb")
    assert residues_missing_from_monomer_library(structure, str(monomer_data)) == []
    structure[0][0][0].name = "ZZQ"
    assert residues_missing_from_monomer_library(structure, str(monomer_data)) == ["ZZQ"]


def test_given_labels_are_checked(macro_data):
    path = macro_data / "5e5z" / "5e5z.mtz"
    with pytest.raises(DataError, match="columns FP, I have types FJ; expected FQ"):
        read_reflections(path, labels=("FP", "I"))
    with pytest.raises(DataError, match="column 'FREE' has type I, not amplitudes"):
        read_reflections(path, labels=("FREE", "SIGFP"))
    assert read_reflections(path, labels=("FP", "SIGFP")).columns == {"amplitudes": ("FP", "SIGFP")}


def test_sf_mmcif_anomalous_pairs_and_status(tmp_path):
    rows = []
    rng = np.random.default_rng(3)
    hkl = _some_hkl(120)
    fp, fm = rng.uniform(10, 20, len(hkl)), rng.uniform(10, 20, len(hkl))
    status = np.where(np.arange(len(hkl)) % 10 == 0, "f", "o")
    status[1] = "x"
    for (h, k, l), a, b, s in zip(hkl, fp, fm, status):
        rows.append(f"{h} {k} {l} {s} {a:.3f} 0.5 {b:.3f} 0.5")
    text = ("data_test\n_cell.length_a 30\n_cell.length_b 40\n_cell.length_c 50\n"
            "_cell.angle_alpha 90\n_cell.angle_beta 90\n_cell.angle_gamma 90\n"
            "_symmetry.space_group_name_H-M 'P 21 21 21'\nloop_\n_refln.index_h\n_refln.index_k\n"
            "_refln.index_l\n_refln.status\n_refln.pdbx_F_plus\n_refln.pdbx_F_plus_sigma\n"
            "_refln.pdbx_F_minus\n_refln.pdbx_F_minus_sigma\n" + "\n".join(rows) + "\n")
    path = tmp_path / "sf.cif"
    path.write_text(text)
    data = read_reflections(path)
    assert data.columns == {"amplitudes": ("pdbx_F_plus", "pdbx_F_plus_sigma", "pdbx_F_minus",
                                           "pdbx_F_minus_sigma")}
    assert data.free_flags.convention == "mmcif"
    assert len(data.hkl) == len(hkl) - 1 and int(data.free.sum()) == 12
    order = np.argsort(_keys(hkl[status != "x"]))
    expected = (0.5 * (fp + fm))[status != "x"][order]
    assert np.allclose(data.f_obs[np.argsort(_keys(data.hkl))], expected, atol=1e-3)


def test_systematic_absences_are_dropped(tmp_path):
    hkl = np.r_[_some_hkl(50), [[0, 0, 3], [0, 5, 0], [0, 0, 4]]]
    vals = np.c_[np.full(len(hkl), 10.0), np.ones(len(hkl))]
    path = _write_mtz(tmp_path / "x.mtz", [("F", "F"), ("SIGF", "Q")], hkl, vals)
    data = read_reflections(path)
    assert len(data.hkl) == 51 and data.n_rejected == 2

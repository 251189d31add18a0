"""The mmtbx-fmodel command through main(): output, JSON, MTZ, bad input."""

import argparse
import json
import os
import shutil
import stat

import gemmi
import numpy as np
import pytest

from mmtbx import fmodel_cli


def _run(argv):
    parser = argparse.ArgumentParser(prog="mmtbx-fmodel")
    fmodel_cli.add_arguments(parser)
    return fmodel_cli.main(parser.parse_args([str(a) for a in argv]))


def test_5e5z_prints_r_factors_and_writes_json_and_mtz(macro_data, tmp_path, capsys):
    out_json, out_mtz = tmp_path / "r.json", tmp_path / "maps.mtz"
    code = _run([macro_data / "5e5z" / "5e5z.pdb", macro_data / "5e5z" / "5e5z.mtz",
                 "--json", out_json, "--mtz-out", out_mtz])
    text = capsys.readouterr().out
    assert code == 0
    assert "R-work 0.17" in text and "free flags: FREE (ccp4, free = 0), 18 free" in text
    figures = json.loads(out_json.read_text())
    for key in ("r_work", "r_free", "k_sol", "b_sol", "n_work", "n_free", "d_min"):
        assert key in figures
    assert figures["n_free"] == 18 and figures["d_min"] == pytest.approx(1.664, abs=1e-3)
    mtz = gemmi.read_mtz_file(str(out_mtz))
    assert [c.label for c in mtz.columns] == ["H", "K", "L", "FWT", "PHWT", "DELFWT", "PHDELWT", "FOM"]
    assert mtz.nreflections == figures["n_work"]


def test_map_coefficients_follow_read_1986(macro_data, tmp_path):
    from mmtbx import fmodel_from_files, write_map_coefficients
    fmodel, data, _ = fmodel_from_files(macro_data / "5e5z" / "5e5z.pdb", macro_data / "5e5z" / "5e5z.mtz")
    hkl, two, diff, fom = fmodel.map_coefficients()
    sel = fmodel.work
    fo, fm = fmodel.f_obs[sel], fmodel.f_model[sel]
    d = fmodel.alpha_beta().alpha[sel]
    centric = fmodel.centric[sel]
    phase = np.exp(1j * np.angle(fm))
    assert centric.any() and (~centric).any()
    assert np.allclose(two[centric], (fom * fo * phase)[centric])
    assert np.allclose(two[~centric], ((2 * fom * fo - d * np.abs(fm)) * phase)[~centric])
    assert np.allclose(diff, (fom * fo - d * np.abs(fm)) * phase)
    path = tmp_path / "m.mtz"
    write_map_coefficients(path, data.unit_cell, data.space_group, hkl, two, diff, fom)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask      # not mkstemp's 0600
    back = gemmi.read_mtz_file(str(path))
    fwt = np.asarray(back.array)[:, 3] * np.exp(1j * np.radians(np.asarray(back.array)[:, 4]))
    assert np.allclose(fwt, two, rtol=1e-5, atol=1e-4)


def test_refuses_to_overwrite_the_input(macro_data, tmp_path, capsys):
    data = tmp_path / "5e5z.mtz"
    shutil.copy(macro_data / "5e5z" / "5e5z.mtz", data)
    before = data.read_bytes()
    code = _run([macro_data / "5e5z" / "5e5z.pdb", data, "--mtz-out", data])
    err = capsys.readouterr().err
    assert code == 2 and "would overwrite an input file" in err and err.count("\n") == 1
    assert data.read_bytes() == before


def test_twin_law_on_1l2h(macro_data, tmp_path, capsys):
    out_json = tmp_path / "t.json"
    code = _run([macro_data / "1l2h" / "1l2h.cif", macro_data / "1l2h" / "1l2h.mtz",
                 "--twin-law", "h,-k,-l", "--json", out_json])
    assert code == 0
    figures = json.loads(out_json.read_text())
    assert figures["twin_fraction"] == pytest.approx(0.36, abs=0.03)
    assert "twin fraction" in capsys.readouterr().out


def _mtz(path, columns, values):
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 1 21 1")
    mtz.set_cell_for_all(gemmi.UnitCell(9.643, 9.609, 19.029, 90, 101.224, 90))
    mtz.add_dataset("x")
    for label, kind in columns:
        mtz.add_column(label, kind)
    hkl = np.array([[h, k, l] for h in range(0, 4) for k in range(0, 4) for l in range(1, 6)])
    mtz.set_data(np.column_stack([hkl, values(len(hkl))]).astype(np.float32))
    mtz.write_to_file(str(path))
    return path


@pytest.mark.parametrize("what, message", [
    ("no amplitudes", "no amplitudes (F with SIGF) or intensities"),
    ("no atoms", "the model has no atoms"),
    ("cell mismatch", "differ by more than 1%"),
    ("ambiguous free flags", "2 candidate free-flag columns (FREE, FreeR_flag)"),
    ("bad twin law", "twin law 'h,k' : expected"),
])
def test_bad_input_is_one_line_and_exit_code_2(macro_data, tmp_path, capsys, what, message):
    model = macro_data / "5e5z" / "5e5z.pdb"
    data = macro_data / "5e5z" / "5e5z.mtz"
    extra = []
    if what == "no amplitudes":
        data = _mtz(tmp_path / "x.mtz", [("FREE", "I")], lambda n: np.arange(n) % 20)
    elif what == "no atoms":
        model = tmp_path / "empty.pdb"
        model.write_text("CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 1 21 1\nEND\n")
    elif what == "cell mismatch":
        text = (macro_data / "5e5z" / "5e5z.pdb").read_text()
        model = tmp_path / "m.pdb"
        model.write_text(text.replace("CRYST1    9.643", "CRYST1    9.843"))
    elif what == "ambiguous free flags":
        data = _mtz(tmp_path / "x.mtz", [("FP", "F"), ("SIGFP", "Q"), ("FREE", "I"), ("FreeR_flag", "I")],
                    lambda n: np.c_[np.full(n, 10.0), np.ones(n), np.arange(n) % 20, np.arange(n) % 10])
    elif what == "bad twin law":
        extra = ["--twin-law", "h,k"]
    code = _run([model, data, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mmtbx-fmodel: error: ") and err.count("\n") == 1
    assert message.replace(" : ", ": ") in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        _run(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "refinetbx" in out and "gemmi" in out and "numpy" in out and "scipy" in out

"""smtbx-refine NAME --cycles 0 (figures of the model as read) and its
input checks, through its main function; the refinement itself is tested in
test_cli_refine.py."""

import argparse
import json
import re
import shutil

import gemmi
import scipy

import numpy as np
import pytest

import smtbx
from smtbx import cli
from smtbx.figures import starting_figures

INS = """TITL test in P2(1)/c
CELL 0.71073 5.0 6.0 7.0 90 100 90
ZERR 4 0.001 0.001 0.001 0 0.01 0
LATT 1
SYMM -X, 1/2+Y, 1/2-Z
SFAC C O
UNIT 8 4
L.S. 4
WGHT 0.1
FVAR 1.0 0.5
C1 1 0.1 0.2 0.3 11 0.02
O1 2 0.3 0.1 0.6 11 0.03
HKLF 4
END
"""

HKL = "".join(f"{h:4d}{k:4d}{l:4d}{fo:8.2f}{sig:8.2f}\n" for h, k, l, fo, sig in [
    (1, 0, 0, 120.0, 3.0), (0, 1, 1, 60.5, 2.0), (1, 1, 1, 33.0, 1.5), (-1, 1, 1, 40.0, 2.0),
    (2, 1, 0, 10.0, 1.0), (0, 2, 1, 5.0, 2.0), (1, 2, 3, 8.0, 1.0)]) + "   0   0   0    0.00    0.00\n"


def run(argv, capsys):
    code = cli.main_cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make(tmp_path, ins=INS, hkl=HKL, ext=".ins"):
    (tmp_path / ("t" + ext)).write_text(ins)
    if hkl is not None:
        (tmp_path / "t.hkl").write_text(hkl)
    return tmp_path / "t"


def test_real_data_json(small_data, tmp_path, capsys):
    stem = small_data / "fecl_r3c" / "2240189"
    out_json = tmp_path / "fecl.json"
    code, out, err = run([stem, "--cycles", "0", "--json", out_json, "--threads", "2"], capsys)
    assert code == 0 and err == ""
    result = json.loads(out_json.read_text())
    for key in ("r1_gt", "r1_all", "wr2", "gof", "n_reflections", "n_parameters", "n_restraints"):
        assert key in result
    # SHELXL: R1 0.0413 for 640 Fo > 4sig(Fo) and 0.0423 for all 658 data, wR2 0.0916, no restraints
    assert result["n_reflections"] == 658 and result["n_gt"] == 640
    assert result["r1_gt"] == pytest.approx(0.0413, abs=0.0002)
    assert result["r1_all"] == pytest.approx(0.0423, abs=0.0002)
    assert result["wr2"] == pytest.approx(0.0916, abs=0.0002)
    # SHELXL: 60 parameters, GooF 1.113
    assert result["n_restraints"] == 0 and result["n_parameters"] == 60
    assert result["gof"] == pytest.approx(1.113, abs=0.002)
    assert result["counts"]["outside_resolution"] == 124
    assert f"R1 = {result['r1_gt']:.4f} for 640 Fo > 4sig(Fo) and {result['r1_all']:.4f} for all 658 data" in out
    assert "0 restraints" in out
    code, out, err = run([stem, "--quiet", "--threads", "2"], capsys)   # L.S. 0
    assert code == 0 and out == "" and err == ""


def test_twin5_p21n_starts_at_shelxl_with_its_npd_atom(small_data, tmp_path, capsys):
    """HKLF 5 twin whose F4_2 has a U that is not positive definite (NPD) as
    SHELXL wrote it: warned about, naming the atom and its line, and used as
    written.  SHELXL's REM: R1 0.0885 for 6519 Fo > 4sig(Fo) and 0.1466 for
    all 10418 data, 1184 parameters, 7497 restraints; wR2 0.2263 and GoF
    1.100 are REFERENCE.md's (cctbx) start."""
    stem = small_data / "twin5_p21n" / "NO_PF-F-PF_twin4_XPREP_a"
    out_json = tmp_path / "twin.json"
    code, out, err = run([stem, "--cycles", "0", "--json", out_json, "--threads", "2"], capsys)
    assert code == 0
    assert re.search(r"\.res:186: atom F4_2: its U is not positive definite \(NPD\)", err)
    result = json.loads(out_json.read_text())
    assert result["n_reflections"] == 10418 and result["n_gt"] == 6519
    assert result["r1_gt"] == pytest.approx(0.0885, abs=0.0005)
    assert result["r1_all"] == pytest.approx(0.1466, abs=0.0005)
    assert result["wr2"] == pytest.approx(0.2263, abs=0.001)
    assert result["gof"] == pytest.approx(1.100, abs=0.002)
    assert result["n_restraints"] == 7497
    # SHELXL's 1184 less the 6 U's of O1_6 that the file's EADP O1_5 O1_6
    # shares here and SHELXL did not (test_reparametrisation.EXPLAINED)
    assert result["n_parameters"] == 1184 - 6
    assert "R1 = 0.0885 for 6519 Fo > 4sig(Fo) and 0.1466 for all 10418 data" in out


def test_ins_preferred_and_res_otherwise(tmp_path, capsys):
    stem = make(tmp_path)
    model = smtbx.read_shelx(stem)
    expected, *_ = starting_figures(model)
    code, out, _ = run([stem, "--cycles", "0", "--json", tmp_path / "a.json"], capsys)
    assert code == 0
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["model"].endswith("t.ins")
    assert result["r1_gt"] == pytest.approx(expected.r1_gt, rel=1e-12)
    assert result["wr2"] == pytest.approx(expected.wr2, rel=1e-12)
    assert result["n_restraints"] == 0          # P2(1)/c: no floating origin
    shutil.move(tmp_path / "t.ins", tmp_path / "t.res")
    code, out, _ = run([tmp_path / "t.hkl", "--cycles", "0", "--json", tmp_path / "b.json"], capsys)
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["model"].endswith("t.res")
    assert "t.res" in out


def one_line_error(capsys, argv, pattern, json_path):
    code, out, err = run(list(argv) + ["--json", json_path], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.match(pattern, lines[0]), lines[0]
    assert not json_path.exists()
    assert [p.name for p in json_path.parent.iterdir() if p.name.startswith(".smtbx-")] == []


@pytest.mark.parametrize("what, ins, hkl, pattern", [
    ("truncated hkl", INS, HKL[:100], r".*t\.hkl:4: line cut short"),
    ("undefined SFAC element", INS.replace("SFAC C O", "SFAC C Xq"), HKL, r".*t\.ins:6: SFAC: 'Xq' is not an element"),
    ("impossible free variable", INS.replace("O1 2 0.3 0.1 0.6 11", "O1 2 0.3 0.1 0.6 31"), HKL,
     r".*t\.ins:12: atom O1: 31.* free variable 3, but FVAR defines only 2"),
    ("missing hkl", INS, None, r".*t\.hkl: reflection file not found"),
    ("binary garbage", "TITL x\n\x00\x01\x02 garbage\n", HKL, r".*t\.ins:2: not a text file"),
    ("binary hkl", INS, "   1   0   0  120.00    3.00\n\x00\xff", r".*t\.hkl:2: not a text file"),
    ("sigma zero", INS, HKL.replace("  33.00    1.50", "  33.00    0.00"), r".*t\.hkl:3: reflection \[1, 1, 1\]: σ"),
    ("HKLF 5 without BASF", INS.replace("HKLF 4", "HKLF 5"),
     "   1   0   0  120.00    3.00  -2\n   1   1   1  120.00    3.00   1\n",
     r".*t\.ins: HKLF 5: reflection \[1, 0, 0\] belongs to twin component 2, but BASF gives 0"),
    ("HKLF 5 component out of range", INS.replace("HKLF 4", "HKLF 5").replace(
        "WGHT 0.1", "BASF 0.2\nWGHT 0.1"),
     "   1   0   0  120.00    3.00  -3\n   1   1   1  120.00    3.00   1\n",
     r".*t\.ins: HKLF 5: .* belongs to twin component 3, .* components 1\.\.2 only"),
    ("TWIN not integral", INS.replace("WGHT 0.1", "TWIN 0.5 0 0 0 -1 0 0 0 -1\nBASF 0.2\nWGHT 0.1"),
     HKL, r".*t\.ins: TWIN: the twin matrix .* is not integral"),
    ("TWIN not a lattice symmetry", INS.replace("WGHT 0.1", "TWIN 1 0 0 0 -1 0 0 0 -1\nBASF 0.2\n"
                                                "WGHT 0.1"),
     HKL, r".*t\.ins: TWIN: the twin matrix .* is not a symmetry of the lattice"),
    ("BASF count", INS.replace("WGHT 0.1", "TWIN\nBASF 0.2 0.1\nWGHT 0.1"), HKL,
     r".*t\.ins: .*2 twin components need 1 BASF value"),
])
def test_bad_input(tmp_path, capsys, what, ins, hkl, pattern):
    if "\x00" in ins:
        (tmp_path / "t.ins").write_bytes(ins.encode("latin-1"))
        (tmp_path / "t.hkl").write_text(hkl)
        stem = tmp_path / "t"
    elif hkl is not None and "\x00" in hkl:
        stem = make(tmp_path, ins, None)
        (tmp_path / "t.hkl").write_bytes(hkl.encode("latin-1"))
    else:
        stem = make(tmp_path, ins, hkl)
    one_line_error(capsys, [stem], pattern, tmp_path / "out.json")


def test_bad_options_and_outputs(tmp_path, capsys):
    stem = make(tmp_path)
    one_line_error(capsys, [stem, "--cycles", "-1"], r".*t: --cycles -1: expected 0 or more",
                   tmp_path / "out.json")
    one_line_error(capsys, [tmp_path / "none"], r".*none\.ins: file not found", tmp_path / "out.json")
    # --json never replaces an input
    code, out, err = run([stem, "--json", tmp_path / "t.hkl"], capsys)
    assert code == 2 and "would overwrite an input file" in err
    assert (tmp_path / "t.hkl").read_text() == HKL
    # an existing output is replaced whole, or left alone on error
    target = tmp_path / "keep.json"
    target.write_text("old")
    code, *_ = run([stem, "--json", target, "--threads", "0"], capsys)
    assert code == 2 and target.read_text() == "old"
    code, *_ = run([stem, "--json", target, "--quiet", "--cycles", "0"], capsys)
    assert code == 0 and json.loads(target.read_text())["n_reflections"] > 0


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main_cli(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for piece in ("refinetbx", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
                  f"gemmi {gemmi.__version__}"):
        assert piece in out
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    text = parser.format_help()
    for group in ("refinement:", "computation:", "output:"):
        assert group in text

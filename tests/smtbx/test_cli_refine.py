"""smtbx-refine NAME refining: outputs, their names, the per-cycle lines,
--demo, and the exit code of a refinement that diverges."""

import copy
import json
import os
import re
import stat

import numpy as np
import pytest

import smtbx
from smtbx import cli
from smtbx.demo import DEMO_MODEL, perturb, simulate
from smtbx.refine import LeastSquares

JSON_KEYS = ("r1_gt", "r1_all", "wr2", "gof", "restrained_gof", "n_reflections", "n_parameters",
             "n_restraints", "cycles", "converged", "max_shift_su", "osf")


def run(argv, capsys):
    code = cli.main_cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_hkl(path, data):
    lines = [f"{h:4d}{k:4d}{l:4d}{fo:8.2f}{sig:8.2f}" for (h, k, l), fo, sig in
             zip(data.hkl, data.fo_sq, data.sig_fo_sq)]
    path.write_text("\n".join(lines + ["   0   0   0    0.00    0.00"]) + "\n")


def make(tmp_path, ext=".ins", cycles=8):
    """The demo model (FVAR 0.3, so that Fo^2 fits the .hkl columns) as
    t.ins or t.res, shaken, with simulated t.hkl."""
    truth = smtbx.read_ins(DEMO_MODEL)
    truth.free_variables[0] = 0.3
    data = simulate(truth, seed=2)
    write_hkl(tmp_path / "t.hkl", data)
    model = copy.deepcopy(truth)
    perturb(model, seed=3)
    model.instructions.cycles = cycles
    smtbx.write_res(model, tmp_path / ("t" + ext))
    return tmp_path / "t"


def test_refine_ins_writes_res_lst_json(tmp_path, capsys):
    stem = make(tmp_path)
    before = (tmp_path / "t.ins").read_text()
    code, out, err = run([stem, "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(JSON_KEYS) <= set(result)
    assert result["converged"] and result["max_shift_su"] < 0.05 and result["cycles"] <= 8
    assert result["n_parameters"] == 81 and result["n_restraints"] == 0
    # one line per cycle, printed as it ends, then the figures
    cycle_lines = [line for line in out.splitlines() if re.match(r"\s+\d+\s+0\.\d{4}", line)]
    assert len(cycle_lines) == result["cycles"]
    assert f"R1 = {result['r1_gt']:.4f}" in out and "Suggested weights: WGHT" in out
    # NAME.ins -> NAME.res and NAME.lst; the input is untouched
    assert (tmp_path / "t.ins").read_text() == before
    res = (tmp_path / "t.res").read_text()
    lst = (tmp_path / "t.lst").read_text()
    assert "Recommended weighting scheme" in lst and "Analysis of variance" in lst
    head, _, tail = res.partition("\nEND\n")
    # SHELXL's tail: the suggested WGHT, the residual density, the Q peaks (PLAN 20)
    tail = tail.strip().splitlines()
    assert re.fullmatch(r"WGHT\s+\d+\.\d{4}\s+\d+\.\d{4}", tail[0]) and tail[1] == ""
    assert re.fullmatch(r"REM Highest difference peak +\d\.\d{3},  deepest hole +-\d\.\d{3},"
                        r"  1-sigma level +\d\.\d{3}", tail[2])
    assert [line.split()[0] for line in tail[3:]] == [f"Q{k}" for k in range(1, 21)]
    assert "HKLF" in head and not any(line.startswith("Q") for line in head.splitlines())
    assert f"FVAR {result['osf']:.5f}" in head
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smtbx-")] == []
    # the outputs get a new file's permissions (0666 less the umask), not the
    # temporary file's private 0600
    mask = os.umask(0)
    os.umask(mask)
    for suffix in (".res", ".lst", ".cif", ".fcf"):
        assert stat.S_IMODE((tmp_path / ("t" + suffix)).stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~mask
    # the written model, evaluated again, gives the reported figures
    code, out, _ = run([stem, "--cycles", "0", "--json", tmp_path / "again.json"], capsys)
    assert code == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["r1_gt"] != pytest.approx(result["r1_gt"], abs=1e-4)   # t.ins: the start
    written = smtbx.read_ins(tmp_path / "t.res")
    written.observations = smtbx.read_shelx(stem).observations
    final = LeastSquares(written, n_threads=2).run(0)
    assert final.figures.r1_gt == pytest.approx(result["r1_gt"], abs=2e-4)
    assert final.figures.wr2 == pytest.approx(result["wr2"], abs=2e-4)


def test_res_input_goes_to_name_refined_and_out_prefix(tmp_path, capsys):
    stem = make(tmp_path, ext=".res", cycles=2)
    before = (tmp_path / "t.res").read_text()
    code, out, err = run([stem, "--quiet"], capsys)
    assert code == 0 and out == "" and err == ""
    assert (tmp_path / "t.res").read_text() == before
    assert (tmp_path / "t_refined.res").exists() and (tmp_path / "t_refined.lst").exists()
    # L.S. 2 of the file is honoured; --cycles overrides it
    assert len(re.findall(r"^\s+\d+\s+0\.\d{4}", (tmp_path / "t_refined.lst").read_text(),
                          re.M)) <= 2
    code, *_ = run([stem, "--cycles", "1", "--out", tmp_path / "one", "--json",
                    tmp_path / "one.json"], capsys)
    assert code == 0 and json.loads((tmp_path / "one.json").read_text())["cycles"] == 1
    assert (tmp_path / "one.res").exists() and (tmp_path / "one.lst").exists()
    # an output that is an input is refused before anything is written
    code, out, err = run([stem, "--out", stem], capsys)
    assert code == 2 and "would overwrite an input file" in err
    assert (tmp_path / "t.res").read_text() == before


def test_restraints_from_the_file(tmp_path, capsys):
    stem = make(tmp_path)
    text = (tmp_path / "t.ins").read_text().replace("FVAR", "DFIX 1.40 0.01 C1 C2\nFVAR", 1)
    (tmp_path / "t.ins").write_text(text)
    code, out, err = run([stem, "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_restraints"] == 1 and result["restrained_gof"] != result["gof"]
    assert "Restraints furthest from their targets" in out and "C1 C2" in out
    lst = (tmp_path / "t.lst").read_text()
    assert "restraint weights 1/sigma^2" in lst and "DFIX" in lst
    model = smtbx.read_ins(tmp_path / "t.res")
    d = model.cell.distance(model.scatterers[0].site_frac, model.scatterers[1].site_frac)
    assert abs(d - 1.40) < 0.03


def test_refine_on_f(tmp_path, capsys):
    stem = make(tmp_path)
    code, out, err = run([stem, "--target", "F", "--json", tmp_path / "f.json", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "f.json").read_text())["converged"]


def test_npd_atoms_are_flagged_before_and_after(tmp_path, capsys):
    """An atom whose U is not positive definite and fixed (as SHELXL would
    keep it): warned about when read (naming its line), refined with, and
    flagged again at the end in the output, the listing and the JSON."""
    # a Cl held at a wrong U leaves a poor model (R1 0.25) that settles in 12
    # cycles with SHELXL's riding model (6 with exact riding derivatives)
    model = smtbx.read_ins(make(tmp_path, cycles=30).with_suffix(".ins"))
    cl1 = next(s for s in model.scatterers if s.label == "CL1")
    cl1.u_cif = np.array([0.034, 0.031, 0.029, 0.04, 0.005, 0.003])   # U12² > U11 U22
    cl1.u_codes = (smtbx.model.ParameterCode("fixed"),) * 6
    smtbx.write_res(model, tmp_path / "n.ins")
    (tmp_path / "n.hkl").write_text((tmp_path / "t.hkl").read_text())
    code, out, err = run([tmp_path / "n", "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    assert re.search(r"n\.ins:\d+: atom CL1: its U is not positive definite \(NPD\)", err)
    assert "atom CL1: its refined U is not positive definite (NPD)" in err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["converged"]
    assert result["warnings"][-1] == "atom CL1: its refined U is not positive definite (NPD)"
    assert "atom CL1: its refined U is not positive definite (NPD)" in (tmp_path / "n.lst").read_text()


def test_divergence_exits_1_and_writes_nothing(tmp_path, capsys, monkeypatch):
    stem = make(tmp_path)
    move = LeastSquares._move_to
    first = {}

    def broken(self, x):
        move(self, x)
        first.setdefault("x", np.array(x))
        if not np.array_equal(x, first["x"]):
            self.graph.y[self.graph.site_index[0, 0]] = np.nan

    monkeypatch.setattr(LeastSquares, "_move_to", broken)
    code, out, err = run([stem, "--json", tmp_path / "d.json"], capsys)
    assert code == 1
    assert "C1" in err and "diverged" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t.res").exists() and not (tmp_path / "t.lst").exists()
    assert not (tmp_path / "d.json").exists()


def test_demo(capsys):
    code, out, err = run(["--demo"], capsys)
    assert code == 0 and err == ""
    assert "converged" in out
    figures = re.search(r"R1 = (0\.\d+) for", out)
    assert figures and float(figures.group(1)) < 0.06
    rms = re.search(r"non-H sites (0\.\d+) A rms from the truth", out)
    assert rms and float(rms.group(1)) < 0.01


def test_name_required(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and "NAME is required" in err


def test_riding_model_is_stated_and_chosen(tmp_path, capsys):
    # the demo model rides its H atoms; the log and the listing say how
    stem = make(tmp_path)
    code, out, err = run([stem], capsys)
    assert code == 0, err
    assert "SHELXL's riding model" in out and "SHELXL's riding model" in (tmp_path / "t.lst").read_text()
    code, out, err = run([stem, "--riding", "exact", "--out", tmp_path / "e"], capsys)
    assert code == 0, err
    assert "exact derivatives through their geometry" in (tmp_path / "e.lst").read_text()
    # both end close together (measured: 1.0e-4 in x, about 0.001 A); the two
    # fixed points differ by a fraction of an s.u.
    a, b = smtbx.read_ins(tmp_path / "t.res"), smtbx.read_ins(tmp_path / "e.res")
    shift = max(np.abs(sa.site_frac - sb.site_frac).max() for sa, sb in zip(a.scatterers, b.scatterers))
    assert shift < 5e-4

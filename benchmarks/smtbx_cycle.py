"""One least-squares cycle of a small-molecule refinement, ours (smtbx.refine)
side by side with cctbx's smtbx.refinement.least_squares.

Two structures, one thread on both sides, best of --repeats:

* alga_p21c (../shared/data/small): 128 atoms, 945 parameters, 10 786
  reflections as SHELXL merges them; the file's riding H and constraints on
  both sides, restraints on neither (iotbx cannot read the file's ``RESI 0``
  lines and residue-qualified restraints: cctbx reads a copy with
  ``RESI 0 MAIN`` and without the restraint lines, and ours is given none).
  Stock iotbx chains the PART 1/2 occupancies wrongly (cctbx's wR2 differs
  for that reason);
* a synthetic P2₁/c structure of 100 anisotropic atoms (C, N, O; fixed seed),
  900 parameters, with F² simulated from it to 0.75 Å.

Both sides read the same model file (.res/.ins, cctbx with
``smtbx.refinement.model.from_shelx``) and get the same reflections (our
merged Fo², σ and indices).  A cycle is: structure factors and derivatives,
accumulation of the normal equations, their solution.  Ours is split into
the design rows of sftbx ("structure factors"), the rest of the pass (rows J,
weights, lstbx accumulation and finalise) and ``solve``; cctbx's into
``build_up()`` (structure factors and accumulation together) and
``solve()``.  The wR2 of the model the cycle starts from is printed for both
as a check that the same thing is computed.
"""

import copy
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

DATA = pathlib.Path(os.environ.get("CRYSTAL_DATA", pathlib.Path(__file__).resolve().parents[1]
                                   / ".." / "shared" / "data")) / "small"

REFERENCE = """
import json, sys, time
import cctbx  # before anything else that might pull in gemmi
from cctbx import crystal, miller
from cctbx.array_family import flex
from smtbx import refinement
from smtbx.refinement import least_squares
payload = json.loads(sys.stdin.read())
results = {}
for case in payload["cases"]:
    with open(case["reflections"]) as handle:
        reflections = json.load(handle)
    from iotbx.shelx import parse_smtbx_refinement_model
    builder = parse_smtbx_refinement_model(filename=case["model"], strictly_shelxl=False)
    xs = builder.structure
    indices = flex.miller_index([tuple(h) for h in reflections["hkl"]])
    ms = miller.set(crystal_symmetry=xs, indices=indices, anomalous_flag=reflections["anomalous"])
    fo_sq = miller.array(ms, data=flex.double(reflections["fo_sq"]),
                         sigmas=flex.double(reflections["sigma"])).set_observation_type_xray_intensity().as_xray_observations()
    weighting = least_squares.mainstream_shelx_weighting(a=case["a"], b=case["b"])
    xm = refinement.model(fo_sq=fo_sq, xray_structure=xs, constraints=builder.constraints,
                          restraints_manager=None, weighting_scheme=weighting,
                          temperature_in_celsius=builder.temperature_in_celsius,
                          conformer_indices=builder.conformer_indices)
    xs.set_inelastic_form_factors(case["wavelength"], "sasaki")
    for sc in xs.scatterers():
        sc.flags.set_grad_site(True)
        if sc.flags.use_u_iso(): sc.flags.set_grad_u_iso(True)
        if sc.flags.use_u_aniso(): sc.flags.set_grad_u_aniso(True)
    best_build = best_solve = float("inf")
    for _ in range(payload["repeats"]):
        ls = xm.least_squares()
        ls.initial_scale_factor = case["k"]
        start = time.perf_counter()
        ls.build_up()
        best_build = min(best_build, time.perf_counter() - start)
        start = time.perf_counter()
        ls.solve()
        best_solve = min(best_solve, time.perf_counter() - start)
    results[case["name"]] = dict(build=best_build, solve=best_solve, wr2=ls.wR2(),
                                 n_parameters=ls.reparametrisation.n_independents,
                                 n_reflections=len(reflections["fo_sq"]))
print(json.dumps(results))
"""


def synthetic_model(directory, n_atoms=100, seed=20251130):
    """A P2₁/c structure of n anisotropic C/N/O atoms placed at random
    (at least 1.1 Å apart) in a 16 × 17 × 18 Å cell, written as .ins."""
    import numpy as np
    rng = np.random.default_rng(seed)
    sites = []
    cell = (16.0, 17.0, 18.0, 90.0, 101.0, 90.0)
    from sgtbx import UnitCell
    uc = UnitCell(*cell)
    a = np.asarray(uc.orthogonalisation)
    while len(sites) < n_atoms:
        trial = rng.random(3)
        if all(np.linalg.norm(a @ (((trial - s) + 0.5) % 1.0 - 0.5)) > 1.1 for s in sites):
            sites.append(trial)
    lines = ["TITL synthetic 100 anisotropic atoms in P2(1)/c",
             "CELL 0.71073 " + " ".join(f"{v:.4f}" for v in cell),
             "ZERR 4 0.001 0.001 0.001 0 0.01 0", "LATT 1", "SYMM -X, 1/2+Y, 1/2-Z",
             "SFAC C N O", "UNIT 280 60 60", "L.S. 1", "WGHT 0.05 0.5", "FVAR 1.0"]
    for i, site in enumerate(sites):
        kind = 1 + (i % 10 == 3) + 2 * (i % 10 == 7)
        u = 0.02 + 0.03 * rng.random(3)
        off = 0.004 * (rng.random(3) - 0.5)
        name = "CNO"[kind - 1] + str(i + 1)
        lines.append(f"{name:<5s} {kind} {site[0]:10.5f} {site[1]:10.5f} {site[2]:10.5f} 11.00000 "
                     f"{u[0]:8.5f} {u[1]:8.5f} =")
        lines.append(f"      {u[2]:8.5f} {off[0]:8.5f} {off[1]:8.5f} {off[2]:8.5f}")
    lines += ["HKLF 4", "END"]
    path = pathlib.Path(directory) / "synthetic.ins"
    path.write_text("\n".join(lines) + "\n")
    return path


RESTRAINTS = ("DFIX", "DANG", "SADI", "SAME", "FLAT", "CHIV", "DELU", "RIGU", "SIMU", "ISOR",
              "BUMP", "SUMP", "DEFS", "NCSY")


def for_cctbx(source, directory):
    """A copy of a SHELX file that iotbx can read: ``RESI 0`` lines get a
    class (iotbx rejects a RESI without one) and restraints are left out
    (neither side applies them here)."""
    kept, skipping = [], False
    for line in pathlib.Path(source).read_text(errors="replace").splitlines():
        word = line.split()[0].upper() if line.split() else ""
        if skipping:
            skipping = line.rstrip().endswith("=")
            continue
        if word.split("_")[0] in RESTRAINTS:
            skipping = line.rstrip().endswith("=")
            continue
        kept.append("RESI 0 MAIN" if line.split() == ["RESI", "0"] else line)
    path = pathlib.Path(directory) / (pathlib.Path(source).stem + "_cctbx.res")
    path.write_text("\n".join(kept) + "\n")
    return path


def reflections_json(path, data):
    with open(path, "w") as handle:
        json.dump(dict(hkl=data.hkl.tolist(), fo_sq=data.fo_sq.tolist(),
                       sigma=data.sig_fo_sq.tolist(), anomalous=bool(data.anomalous)), handle)


def ours(model, data, repeats):
    """Best times of one cycle's pieces; the equations' wR2."""
    from smtbx.refine import LeastSquares, single_threaded_blas
    least_squares = LeastSquares(model, data=data, n_threads=1)
    least_squares._move_to(least_squares.graph.x)
    best = dict(structure_factors=float("inf"), accumulation=float("inf"), solve=float("inf"))
    with single_threaded_blas():
        for _ in range(repeats):
            equations, _, _ = least_squares.build()
            for key, value in least_squares.timings.items():
                best[key] = min(best[key], value)
            seconds, _ = best_time(lambda: equations.solve(damping=least_squares.base_damping), 1)
            best["solve"] = min(best["solve"], seconds)
    best["wr2"] = equations.figures.wr
    best["n_parameters"] = len(least_squares.graph.x)
    best["n_reflections"] = len(data)
    return best


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    pin_threads(1)
    import smtbx
    from smtbx.data import reduce_observations
    from smtbx.demo import simulate

    work = tempfile.mkdtemp(prefix="smtbx-cycle-")
    cases, mine = [], {}
    alga = smtbx.read_shelx(DATA / "alga_p21c" / "p21c")
    alga.restraints = []
    alga_data = reduce_observations(alga)
    synthetic_path = synthetic_model(work)
    synthetic = smtbx.read_ins(synthetic_path)
    synthetic_data = simulate(synthetic, d_min=0.75, seed=1)
    for name, model, data, path in (
            ("alga_p21c", alga, alga_data, for_cctbx(DATA / "alga_p21c" / "p21c.res", work)),
            ("synthetic, 100 anisotropic atoms", synthetic, synthetic_data, synthetic_path)):
        reflections = pathlib.Path(work) / (path.stem + ".json")
        reflections_json(reflections, data)
        w = model.instructions.weighting
        cases.append(dict(name=name, model=str(path), reflections=str(reflections),
                          a=w.a, b=w.b, wavelength=model.wavelength, k=model.scale ** 2))
        mine[name] = ours(copy.deepcopy(model), data, args.repeats)
    reference = run_reference(args.reference_python, REFERENCE,
                              dict(cases=cases, repeats=args.repeats), threads=1)
    rows = []
    for name, t in mine.items():
        total = t["structure_factors"] + t["accumulation"] + t["solve"]
        row = [name, f"{t['n_parameters']} / {t['n_reflections']}",
               f"{t['structure_factors']:.3f}", f"{t['accumulation']:.3f}", f"{t['solve']:.3f}",
               f"{total:.3f}", f"{t['wr2']:.4f}"]
        if reference is not None:
            r = reference[name]
            ref_total = r["build"] + r["solve"]
            row += [f"{r['n_parameters']} / {r['n_reflections']}", f"{r['build']:.3f}",
                    f"{r['solve']:.3f}", f"{ref_total:.3f}", f"{r['wr2']:.4f}",
                    f"{ref_total / total:.1f}x"]
        rows.append(row)
    headers = ["structure", "ours: parameters / reflections", "structure factors (s)",
               "accumulation (s)", "solve (s)", "cycle (s)", "wR2"]
    if reference is not None:
        headers += ["cctbx: parameters / reflections", "build_up (s)", "solve (s)", "cycle (s)",
                    "wR2", "cctbx / ours"]
    print(ratio_table(rows, headers))


if __name__ == "__main__":
    main()

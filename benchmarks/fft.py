"""FFT structure factors and gradients for large models, side by side with
gemmi and cctbx.

Models: 4iid (14 782 atoms, P 21 21 21, from ../shared/data/macro) and a
synthetic 20 000-atom P 1 model (random C/N/O/S atoms, B 10-60 A^2, seeded),
each at d_min 2.0 and 1.5 A: F_calc for the complete set to d_min, and the
gradient of a least-squares target with respect to sites and B.

* ours: sftbx.FFTStructureFactors with the default and the fine settings;
* gemmi: DensityCalculatorX (rate 1.5, refmac-compatible blur, cut-offs 1e-3,
  1e-4, 1e-5) + FFT + the asymmetric unit, as REFERENCE.md times it;
* cctbx: xray.structure_factors.from_scatterers(algorithm="fft") with its
  defaults and with wing_cutoff 1e-5, and its FFT gradients (sites and
  u_iso), in its own venv.

All on one thread; timings are the best of --repeats runs, wall and CPU
(process) time, ratios from CPU time, which time-slicing on a shared machine
disturbs less.  Accuracy: the amplitude R, sum | |F| - |F_direct| | /
sum |F_direct|, on 2000 random reflections, F_direct from sftbx's direct
summation (exact).  All sides get the same atoms (IT92 form factors).
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import parser, pin_threads, ratio_table, run_reference  # noqa: E402

N_CHECK, SEED = 2000, 20251130
HEADERS = ["case", "method", "CPU (s)", "wall (s)", "R(|F|) vs direct",
           "CPU / ours default (for gradients: cctbx / ours)"]


def timed(function, repeats):
    """Best wall and best CPU time of ``repeats`` calls, and the last value:
    on the shared machine CPU time is the steadier measure of one thread."""
    wall, cpu, value = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = function()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return (wall, cpu), value
DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "macro"

REFERENCE = """
import json, sys, time
import cctbx  # before gemmi
from cctbx import xray, crystal, miller
from cctbx.array_family import flex
p = json.loads(sys.stdin.read())
cs = crystal.symmetry(unit_cell=p["cell"], space_group_symbol=p["space_group"])
scatterers = flex.xray_scatterer()
for el, site, u, occ in zip(p["elements"], p["sites_frac"], p["u_iso"], p["occupancies"]):
    scatterers.append(xray.scatterer(label=el, site=site, u=u, occupancy=occ,
                                     scattering_type=el))
xrs = xray.structure(crystal_symmetry=cs, scatterers=scatterers)
xrs.scattering_type_registry(table="it1992")
ms = miller.build_set(crystal_symmetry=cs, anomalous_flag=False, d_min=p["d_min"])
check = miller.set(cs, flex.miller_index([tuple(h) for h in p["check"]]), anomalous_flag=False)
check_asu = check.map_to_asu()
out = {"n_reflections": ms.size()}
def run(label, **kw):
    best, best_cpu = float("inf"), float("inf")
    for _ in range(p["repeats"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        f = xray.structure_factors.from_scatterers(miller_set=ms, **kw)(
            xray_structure=xrs, miller_set=ms, algorithm="fft").f_calc()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    lookup = miller.match_indices(f.indices(), check_asu.indices())
    amp = flex.abs(f.data()).select(lookup.pairs().column(0))
    order = lookup.pairs().column(1)
    amplitudes = [0.0] * check.size()
    for i, a in zip(order, amp):
        amplitudes[i] = a
    out[label] = {"time": best, "cpu": best_cpu, "amplitudes": amplitudes}
    return f
f = run("defaults")
run("wing_cutoff 1e-5", wing_cutoff=1e-5)
xrs.scatterers().flags_set_grads(state=False)
sel = flex.size_t_range(xrs.scatterers().size())
xrs.scatterers().flags_set_grad_site(iselection=sel)
xrs.scatterers().flags_set_grad_u_iso(iselection=sel)
d_target = f.data() * flex.double(f.size(), 0.01)
best, best_cpu = float("inf"), float("inf")
for _ in range(p["repeats"]):
    start, start_cpu = time.perf_counter(), time.process_time()
    g = xray.structure_factors.gradients(miller_set=ms)(
        xray_structure=xrs, u_iso_refinable_params=None, miller_set=ms,
        d_target_d_f_calc=d_target, n_parameters=0, algorithm="fft")
    g.d_target_d_site_frac(); g.d_target_d_u_iso()
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - start_cpu)
out["gradients"] = {"time": best, "cpu": best_cpu}
print(json.dumps(out))
"""


def synthetic_model(n=20000, seed=SEED):
    """20 000 random atoms in a P 1 cell of protein-like density."""
    import numpy as np
    from sgtbx import SpaceGroup, UnitCell
    from sftbx import Scatterers
    rng = np.random.default_rng(seed)
    uc, sg = UnitCell(62.0, 70.0, 78.0, 90.0, 98.0, 90.0), SpaceGroup("P 1")
    elements = rng.choice(["C", "N", "O", "S"], n, p=[0.63, 0.17, 0.19, 0.01])
    u_iso = rng.uniform(10, 60, n) / (8 * np.pi**2)
    return uc, sg, Scatterers(elements, rng.random((n, 3)), np.ones(n), u_iso)


def gemmi_structure(uc, sg, sc):
    """The same atoms as a gemmi.Structure (for DensityCalculatorX)."""
    import gemmi
    import numpy as np
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*uc.parameters)
    st.spacegroup_hm = sg.xhm
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    cart = sc.sites_frac @ np.asarray(uc.orthogonalisation).T
    for i, el in enumerate(sc.elements):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element = el, gemmi.Element(el)
        atom.pos = gemmi.Position(*cart[i])
        atom.occ, atom.b_iso = float(sc.occupancies[i]), float(sc.u_iso[i] * 8 * np.pi**2)
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_cell_images()
    return st


def gemmi_side(st, d_min, check, cutoff, repeats):
    """Time of density + FFT + asymmetric unit, and |F| at ``check``."""
    import gemmi
    import numpy as np

    def run():
        dc = gemmi.DensityCalculatorX()
        dc.d_min, dc.rate, dc.cutoff = d_min, 1.5, cutoff
        dc.set_refmac_compatible_blur(st[0])
        dc.set_grid_cell_and_spacegroup(st)
        dc.put_model_density_on_grid(st[0])
        grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
        grid.prepare_asu_data(dmin=d_min, unblur=dc.blur)
        return dc

    t, dc = timed(run, repeats)
    full = gemmi.transform_map_to_f_phi(dc.grid, half_l=False)
    cell = st.cell
    amp = np.array([abs(full.get_value(*(int(x) for x in h)))
                    * dc.reciprocal_space_multiplier(cell.calculate_1_d2([int(x) for x in h]))
                    for h in check])
    return t, amp


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cases", default="4iid:2.0,4iid:1.5,synthetic:2.0,synthetic:1.5",
                   help="model:d_min pairs (default: all four)")
    args = p.parse_args()
    pin_threads(1)
    import gemmi
    import numpy as np
    from sgtbx import SiteSymmetryTable, complete_set
    from sftbx import FFTStructureFactors, StructureFactors
    from sftbx.fft import scatterers_from_gemmi

    rows, summary = [], {}
    models = {}
    for case in args.cases.split(","):
        name, d_min = case.split(":")
        d_min = float(d_min)
        if name not in models:
            if name == "4iid":
                st = gemmi.read_structure(str(DATA / "4iid" / "4iid.pdb"))
                uc, sg, sc = scatterers_from_gemmi(st)
            else:
                uc, sg, sc = synthetic_model()
                st = gemmi_structure(uc, sg, sc)
            mult = SiteSymmetryTable(uc, sg, np.mod(sc.sites_frac, 1.0)).multiplicities
            models[name] = (st, uc, sg, sc, mult)
        st, uc, sg, sc, mult = models[name]
        hkl = np.asarray(complete_set(uc, sg, d_min))
        rng = np.random.default_rng(SEED)
        check = hkl[rng.choice(len(hkl), N_CHECK, replace=False)]
        start = time.perf_counter()
        f_direct = StructureFactors(uc, sg, sc, check, multiplicities=mult).f_calc()
        t_direct = time.perf_counter() - start
        a_direct = np.abs(f_direct)

        def r(amp):
            return float(np.abs(amp - a_direct).sum() / a_direct.sum())

        label = f"{name} ({len(sc)} atoms, {sg.xhm}), {d_min} A, {len(hkl)} refl."
        print(f"{label}: direct summation of {N_CHECK} reflections {t_direct:.2f} s", flush=True)
        result = {}
        for accuracy in ("default", "fine"):
            t, f = timed(lambda: FFTStructureFactors(
                uc, sg, sc, hkl, accuracy=accuracy, multiplicities=mult).f_calc(), args.repeats)
            f_check = FFTStructureFactors(uc, sg, sc, check, accuracy=accuracy, d_min=d_min,
                                          multiplicities=mult).f_calc()
            result[f"ours {accuracy}"] = (t, r(np.abs(f_check)))
        fo = np.abs(f) * rng.uniform(0.8, 1.2, len(hkl))
        calc = FFTStructureFactors(uc, sg, sc, hkl, multiplicities=mult)
        f = calc.f_calc()
        c = 2 * (np.abs(f) - fo) / np.abs(f)
        t_grad, _ = timed(lambda: calc.atom_gradients(c * f.real, c * f.imag), args.repeats)
        for cutoff in (1e-3, 1e-4, 1e-5):
            t, amp = gemmi_side(st, d_min, check, cutoff, args.repeats)
            result[f"gemmi cutoff {cutoff:g}"] = (t, r(amp))
        reference = run_reference(args.reference_python, REFERENCE, {
            "cell": list(uc.parameters), "space_group": sg.xhm, "elements": list(sc.elements),
            "sites_frac": sc.sites_frac.tolist(), "u_iso": sc.u_iso.tolist(),
            "occupancies": sc.occupancies.tolist(), "d_min": d_min,
            "check": check.tolist(), "repeats": args.repeats})
        t_ref_grad = None
        if reference is not None:
            for key in ("defaults", "wing_cutoff 1e-5"):
                result[f"cctbx {key}"] = ((reference[key]["time"], reference[key]["cpu"]),
                                          r(np.array(reference[key]["amplitudes"])))
            t_ref_grad = (reference["gradients"]["time"], reference["gradients"]["cpu"])
        ours = result["ours default"][0][1]
        first = len(rows)
        for key, ((wall, cpu), acc) in result.items():
            rows.append([label, key, f"{cpu:.3f}", f"{wall:.3f}", f"{acc:.1e}",
                         "" if key.startswith("ours") else f"{cpu / ours:.2f}"])
        rows.append([label, "ours gradients (sites, u_iso/U*, occupancy)", f"{t_grad[1]:.3f}",
                     f"{t_grad[0]:.3f}", "", ""])
        if t_ref_grad is not None:
            rows.append([label, "cctbx gradients (sites, u_iso)", f"{t_ref_grad[1]:.3f}",
                         f"{t_ref_grad[0]:.3f}", "", f"{t_ref_grad[1] / t_grad[1]:.2f}"])
        summary[label] = {k: {"wall": t[0], "cpu": t[1], "r": acc}
                          for k, (t, acc) in result.items()}
        summary[label]["ours gradients"] = t_grad
        summary[label]["cctbx gradients"] = t_ref_grad
        print(ratio_table(rows[first:], HEADERS), flush=True)
    print(f"\nOne thread, best of {args.repeats}; ratios from CPU times.")
    print(ratio_table(rows, HEADERS))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""sftbx: direct-summation structure factors, and structure factors with all
their derivatives, side by side with cctbx.

    python benchmarks/sf_direct.py --reference-python ref/bin/python

90 atoms (50 C/N/O anisotropic, 40 H isotropic, all on general positions)
in P-1, P2_1/c, C2/c, P2_1 2_1 2_1 and Fm-3m, the unique reflections to
d_min = 0.75 A.

* Fc: cctbx ``xray.structure_factors.from_scatterers(..., algorithm="direct")``
  (IT1992 form factors, like ours) against ``StructureFactors.f_calc()``.
* Fc + derivatives: smtbx's per-reflection linearisation
  (``smtbx.structure_factors.direct.f_calc_modulus_squared(...).linearise(h)``
  for every h, gradients of |Fc|^2 with respect to sites, U (aniso or iso)
  and occupancies: 700 parameters) against ``StructureFactors.design_rows``
  over blocks of 256 reflections, the same 700 columns.

cctbx runs on one thread in its own venv; ours on one and on two threads.
Ratios are reference time / our time (above 1: we are faster), from the best
wall time of --repeats runs, and for one thread also from the best CPU
(process) time, which leaves out time-slicing on a loaded machine.  Object
construction (form-factor tables, site symmetry) is outside the timings on
both sides.  The benchmark also checks that both sides compute the same Fc
and that our results do not depend on the thread count.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

import sftbx  # noqa: E402
from sgtbx import SpaceGroup, UnitCell, complete_set  # noqa: E402

D_MIN = 0.75
BLOCK = 256
CASES = [
    ("P -1", (10.1, 12.2, 14.3, 81.0, 79.0, 85.0)),
    ("P 1 21/c 1", (12.3, 14.1, 21.6, 90.0, 98.0, 90.0)),
    ("C 1 2/c 1", (24.5, 14.1, 21.6, 90.0, 105.0, 90.0)),
    ("P 21 21 21", (12.2, 14.6, 20.3, 90.0, 90.0, 90.0)),
    ("F m -3 m", (41.0, 41.0, 41.0, 90.0, 90.0, 90.0)),
]

REFERENCE = r"""
import json, sys, time
import cctbx
from cctbx import crystal, miller, xray
from cctbx.array_family import flex
import smtbx.structure_factors.direct as smtbx_direct

job = json.load(sys.stdin)

def best(f, n, clock=time.perf_counter):
    t = float("inf")
    for _ in range(n):
        s = clock(); f(); t = min(t, clock() - s)
    return t

out = []
for case in job["cases"]:
    symmetry = crystal.symmetry(unit_cell=case["cell"], space_group_symbol=case["symbol"])
    scatterers = flex.xray_scatterer()
    for label, element, site, u_iso, u_star in zip(case["labels"], case["elements"],
                                                   case["sites"], case["u_iso"], case["u_star"]):
        sc = xray.scatterer(label=label, site=site, u=u_iso, scattering_type=element)
        if u_star is not None:
            sc.u_star = tuple(u_star)
            sc.flags.set_use_u_aniso(True)
            sc.flags.set_use_u_iso(False)
        scatterers.append(sc)
    xs = xray.structure(crystal_symmetry=symmetry, scatterers=scatterers)
    xs.scattering_type_registry(table="it1992")
    indices = flex.miller_index([tuple(h) for h in case["hkl"]])
    ms = miller.set(symmetry, indices, anomalous_flag=False)

    def fc():
        return xray.structure_factors.from_scatterers(miller_set=ms, cos_sin_table=False)(
            xray_structure=xs, miller_set=ms, algorithm="direct").f_calc().data()
    t_fc = best(fc, job["repeats"])
    cpu_fc = best(fc, job["repeats"], time.process_time)
    f = fc()

    for sc in xs.scatterers():
        sc.flags.set_grad_site(True).set_grad_occupancy(True)
        if sc.flags.use_u_aniso():
            sc.flags.set_grad_u_aniso(True)
        else:
            sc.flags.set_grad_u_iso(True)
    linearisation = smtbx_direct.f_calc_modulus_squared(xs)

    def derivatives():
        for h in indices:
            linearisation.linearise(h)
    t_lin = best(derivatives, job["repeats"])
    cpu_lin = best(derivatives, job["repeats"], time.process_time)
    linearisation.linearise(indices[0])
    out.append(dict(fc=t_fc, linearise=t_lin, cpu_fc=cpu_fc, cpu_linearise=cpu_lin,
                    n_grad=len(linearisation.grad_observable),
                    f_real=list(flex.real(f)), f_imag=list(flex.imag(f))))
print(json.dumps(out))
"""


def make_case(symbol, cell_parameters, seed):
    """90 atoms on general positions (clear of their images by 1 A)."""
    rng = np.random.default_rng(seed)
    sg = SpaceGroup(symbol)
    uc = UnitCell(*cell_parameters)
    rotations, translations = sg.rotations[1:], sg.translations[1:]
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    sites = []
    while len(sites) < 90:
        x = rng.random(3)
        d = rotations @ x + translations - x
        d -= np.round(d)
        cart = uc.orthogonalise((d[:, None, :] + shifts[None]).reshape(-1, 3))
        if np.sqrt((cart**2).sum(axis=1)).min() > 1.0:
            sites.append(x)
    elements = [("C", "N", "O")[i % 3] for i in range(50)] + ["H"] * 40
    aniso = np.arange(90) < 50
    u_cart = np.zeros((90, 6))
    for i in range(50):
        a = rng.normal(size=(3, 3)) * 0.05
        m = a @ a.T + 0.015 * np.eye(3)
        u_cart[i] = [m[0, 0], m[1, 1], m[2, 2], m[0, 1], m[0, 2], m[1, 2]]
    u_star = np.where(aniso[:, None], uc.u_cart_as_u_star(u_cart), 0.0)
    u_iso = np.where(aniso, 0.0, rng.uniform(0.02, 0.05, 90))
    scat = sftbx.Scatterers(elements, np.array(sites), np.ones(90), u_iso, u_star=u_star,
                            aniso=aniso, labels=[f"{e}{i}" for i, e in enumerate(elements)])
    hkl = complete_set(uc, sg, D_MIN)
    return sg, uc, scat, hkl


def cpu_time(function, repeats):
    """Best process (CPU) time of ``repeats`` calls: on a loaded machine this
    is the fairer figure for one thread, as it leaves out time-slicing."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def ours(sg, uc, scat, hkl, n_threads, repeats):
    sf = sftbx.StructureFactors(uc, sg, scat, hkl, n_threads=n_threads)
    t_fc, f = best_time(sf.f_calc, repeats)
    pm = sftbx.ParameterMap.for_scatterers(scat, occupancy=True)
    rows = np.empty((BLOCK, pm.n_params))
    y = np.empty(BLOCK)

    def derivatives(check=False):
        sums = np.zeros(pm.n_params)
        for start in range(0, len(hkl), BLOCK):
            stop = min(start + BLOCK, len(hkl))
            sf.design_rows(pm, start, stop, rows=rows[:stop - start], y=y[:stop - start])
            if check:
                sums += rows[:stop - start].sum(axis=0)
        return sums

    t_rows, _ = best_time(derivatives, repeats)
    result = dict(fc=t_fc, rows=t_rows, f=f, sums=derivatives(check=True), n_params=pm.n_params)
    if n_threads == 1:
        result.update(cpu_fc=cpu_time(sf.f_calc, repeats), cpu_rows=cpu_time(derivatives, repeats))
    return result


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    rows_fc, rows_der = [], []
    for seed, (symbol, cell) in enumerate(CASES):
        sg, uc, scat, hkl = make_case(symbol, cell, seed)
        # each case's reference run right before ours, so that both sides see
        # about the same load on a shared machine
        payload = dict(repeats=args.repeats, cases=[dict(
            symbol=symbol, cell=list(cell), labels=scat.labels, elements=scat.elements,
            sites=scat.sites_frac.tolist(), u_iso=scat.u_iso.tolist(),
            u_star=[u.tolist() if a else None for u, a in zip(scat.u_star, scat.aniso)],
            hkl=hkl.tolist())])
        reference = run_reference(args.reference_python, REFERENCE, payload, threads=1)
        one = ours(sg, uc, scat, hkl, 1, args.repeats)
        two = ours(sg, uc, scat, hkl, 2, args.repeats)
        same = np.array_equal(one["f"], two["f"])
        sums_close = np.allclose(one["sums"], two["sums"], rtol=1e-12, atol=0)
        name = f"{symbol} ({len(hkl)} refl.)"
        if reference is None:
            rows_fc.append([name, f"{one['fc'] * 1e3:.1f}", f"{two['fc'] * 1e3:.1f}", "-", "-", "-"])
            rows_der.append([name, f"{one['rows'] * 1e3:.1f}", f"{two['rows'] * 1e3:.1f}",
                             "-", "-", "-"])
            continue
        ref = reference[0]
        f_ref = np.array(ref["f_real"]) + 1j * np.array(ref["f_imag"])
        agreement = np.abs(one["f"] - f_ref).sum() / np.abs(f_ref).sum()
        assert ref["n_grad"] == one["n_params"], (ref["n_grad"], one["n_params"])
        rows_fc.append([name, f"{ref['fc'] * 1e3:.1f}", f"{one['fc'] * 1e3:.1f}",
                        f"{two['fc'] * 1e3:.1f}", f"{ref['fc'] / one['fc']:.1f}",
                        f"{ref['fc'] / two['fc']:.1f}",
                        f"{ref['cpu_fc'] / one['cpu_fc']:.1f}", f"{agreement:.1e}",
                        "yes" if same else "NO"])
        rows_der.append([name, f"{ref['linearise'] * 1e3:.1f}", f"{one['rows'] * 1e3:.1f}",
                         f"{two['rows'] * 1e3:.1f}", f"{ref['linearise'] / one['rows']:.1f}",
                         f"{ref['linearise'] / two['rows']:.1f}",
                         f"{ref['cpu_linearise'] / one['cpu_rows']:.1f}",
                         "yes" if sums_close else "NO"])
    if not args.reference_python:
        print("no --reference-python: our times only (ms)")
        print(ratio_table(rows_fc, ["Fc", "1 thread", "2 threads", "", "", ""]))
        print(ratio_table(rows_der, ["Fc + derivatives", "1 thread", "2 threads", "", "", ""]))
        return
    print(ratio_table(rows_fc, [
        "Fc, 90 atoms, d_min 0.75 A", "cctbx direct (ms)", "ours 1 thread (ms)",
        "ours 2 threads (ms)", "ratio 1 thread", "ratio 2 threads", "ratio 1 thread, CPU time",
        "sum|dF|/sum|F| vs cctbx", "1 = 2 threads"]))
    print()
    print(ratio_table(rows_der, [
        "Fc + 700 derivatives", "smtbx linearise (ms)", "ours 1 thread (ms)",
        "ours 2 threads (ms)", "ratio 1 thread", "ratio 2 threads", "ratio 1 thread, CPU time",
        "1 = 2 threads"]))


if __name__ == "__main__":
    main()

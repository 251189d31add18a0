"""sgtbx: site symmetry of 10^5 sites, and asymmetric-unit mapping plus
merging of 10^6 observations, side by side with cctbx and gemmi.

    python benchmarks/sgtbx_symmetry.py --reference-python ref/bin/python

Ratios are reference time / our time (above 1: we are faster), one thread
on every side.  Conversions between array types are outside the timings.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

pin_threads(1)

import gemmi  # noqa: E402
import numpy as np  # noqa: E402

from sgtbx import SiteSymmetryTable, SpaceGroup, UnitCell, complete_set, merge_equivalents  # noqa: E402

SITE_CASES = [
    ("P 1 21/c 1", (7.1, 9.3, 11.2, 90, 104.5, 90)),
    ("P 43 21 2", (7.1, 7.1, 11.2, 90, 90, 90)),
    ("F m -3 m", (8.3, 8.3, 8.3, 90, 90, 90)),
]
N_SITES = 100_000
MERGE_CASE = ("P 43 21 2", (57.1, 57.1, 151.2, 90, 90, 90), 2.0)
N_OBS = 1_000_000

REFERENCE = r"""
import json, sys, time
import cctbx
from cctbx import sgtbx, uctbx, crystal, miller
from cctbx.array_family import flex
import numpy as np

job = json.load(sys.stdin)
data = np.load(job["inputs"])
out = {}

def best(f, n):
    t = float("inf")
    for _ in range(n):
        s = time.perf_counter(); f(); t = min(t, time.perf_counter() - s)
    return t

for k, (symbol, cell) in enumerate(job["site_cases"]):
    sites = flex.vec3_double(data["sites%d" % k].tolist())
    uc = uctbx.unit_cell(cell)
    sg = sgtbx.space_group_info(symbol).group()
    def run():
        table = sgtbx.site_symmetry_table()
        table.process(uc, sg, sites, min_distance_sym_equiv=0.5)
        return table
    out["cctbx_sites%d" % k] = best(run, job["repeats"])
    out["cctbx_special%d" % k] = run().special_position_indices().size()

symbol, cell, d_min = job["merge_case"]
cs = crystal.symmetry(unit_cell=cell, space_group_symbol=symbol)
indices = flex.miller_index([tuple(map(int, h)) for h in data["hkl"]])
values = flex.double(data["values"]); sigmas = flex.double(data["sigmas"])
ms = miller.set(cs, indices, anomalous_flag=False)
arr = miller.array(ms, data=values, sigmas=sigmas)
def merge():
    return arr.map_to_asu().merge_equivalents().array()
out["cctbx_merge"] = best(merge, job["repeats"])
out["cctbx_unique"] = merge().size()
print(json.dumps(out))
"""


def gemmi_sites(symbol, cell, sites):
    # gemmi finds the symmetry images of a unit cell through a structure
    structure = gemmi.SmallStructure()
    structure.cell = gemmi.UnitCell(*cell)
    structure.spacegroup_hm = symbol
    structure.setup_cell_images()
    uc = structure.cell
    return sum(1 for x in sites if uc.is_special_position(gemmi.Fractional(*x), 0.5) > 0)


def gemmi_merge(symbol, cell, hkl, values, sigmas):
    data = gemmi.Intensities()
    data.set_data(gemmi.UnitCell(*cell), gemmi.SpaceGroup(symbol), hkl, values, sigmas)
    data.type = gemmi.DataType.Unmerged
    data.merge_in_place(gemmi.DataType.Mean)
    return len(data.value_array)


def make_sites(sg, cell, rng):
    """Random sites, a fifth of them moved within 0.1 Å of a special position."""
    sites = rng.random((N_SITES, 3))
    n_special = N_SITES // 5
    # average over a random operation and its inverse images (a 2-fold or
    # mirror of the group, where one exists): lands on a special position
    twofold = [k for k, r in enumerate(sg.rotations)
               if not np.array_equal(r, np.eye(3)) and np.array_equal(r @ r, np.eye(3))]
    for i in range(n_special):
        k = twofold[i % len(twofold)]
        x = sites[i]
        image = sg.rotations[k] @ x + sg.translations[k]
        image -= np.round(image - x)
        sites[i] = 0.5 * (x + image) + rng.normal(0, 0.02, 3) / np.array(cell.parameters[:3])
    return np.ascontiguousarray(sites)


def make_observations(rng):
    symbol, params, d_min = MERGE_CASE
    sg, cell = SpaceGroup(symbol), UnitCell(*params)
    unique = complete_set(cell, sg, d_min)
    pick = rng.integers(0, len(unique), N_OBS)
    ops = rng.integers(0, sg.order_p, N_OBS)
    sign = rng.choice([-1, 1], N_OBS)[:, None]
    hkl = sign * np.einsum("mi,mij->mj", unique[pick], sg.symmetry_rotations[ops])
    truth = rng.uniform(10, 1000, len(unique))
    sigmas = rng.uniform(1, 10, N_OBS)
    values = truth[pick] + rng.normal(0, 1, N_OBS) * sigmas
    return np.ascontiguousarray(hkl, dtype=np.int32), values, sigmas


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(2026)
    inputs = {}
    rows = []
    ours = {}
    for k, (symbol, params) in enumerate(SITE_CASES):
        sg, cell = SpaceGroup(symbol), UnitCell(*params)
        sites = make_sites(sg, cell, rng)
        inputs[f"sites{k}"] = sites

        def run():
            table = SiteSymmetryTable(cell, sg, sites, min_distance=0.5)
            for i in table.special_indices:
                table.adp_matrix(i)
            return table
        t, table = best_time(run, args.repeats)
        t_gemmi, n_gemmi = best_time(lambda: gemmi_sites(symbol, params, sites), 1)
        ours[k] = (t, len(table.special_indices), t_gemmi, n_gemmi)
    hkl, values, sigmas = make_observations(rng)
    inputs.update(hkl=hkl, values=values, sigmas=sigmas)
    symbol, params, d_min = MERGE_CASE
    sg = SpaceGroup(symbol)
    t_merge, merged = best_time(lambda: merge_equivalents(sg, hkl, values, sigmas), args.repeats)
    t_gemmi_merge, n_gemmi_merge = best_time(
        lambda: gemmi_merge(symbol, params, hkl, values, sigmas), args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inputs.npz")
        np.savez(path, **inputs)
        ref = run_reference(args.reference_python, REFERENCE, {
            "inputs": path, "repeats": args.repeats, "site_cases": SITE_CASES,
            "merge_case": MERGE_CASE})

    def ratio(theirs, mine):
        return f"{theirs / mine:.1f}x" if theirs is not None else "n/a"

    for k, (symbol, _) in enumerate(SITE_CASES):
        t, n_special, t_gemmi, n_gemmi = ours[k]
        t_cctbx = ref[f"cctbx_sites{k}"] if ref else None
        if ref and ref[f"cctbx_special{k}"] != n_special:
            print(f"warning: {symbol}: cctbx finds {ref[f'cctbx_special{k}']} special sites, we {n_special}")
        rows.append([f"site symmetry, {N_SITES} sites, {symbol}", f"{t * 1e3:.1f} ms",
                     f"{t_cctbx * 1e3:.1f} ms" if t_cctbx else "n/a", ratio(t_cctbx, t),
                     f"{t_gemmi * 1e3:.0f} ms", ratio(t_gemmi, t)])
    t_cctbx = ref["cctbx_merge"] if ref else None
    if ref and ref["cctbx_unique"] != len(merged.hkl):
        print(f"warning: cctbx merges to {ref['cctbx_unique']} reflections, we to {len(merged.hkl)}")
    if n_gemmi_merge != len(merged.hkl):
        print(f"warning: gemmi merges to {n_gemmi_merge} reflections, we to {len(merged.hkl)}")
    rows.append([f"ASU mapping + merging, {N_OBS} observations, {MERGE_CASE[0]}", f"{t_merge * 1e3:.0f} ms",
                 f"{t_cctbx * 1e3:.0f} ms" if t_cctbx else "n/a", ratio(t_cctbx, t_merge),
                 f"{t_gemmi_merge * 1e3:.0f} ms", ratio(t_gemmi_merge, t_merge)])
    print(ratio_table(rows, ["task", "ours", "cctbx", "cctbx / ours", "gemmi", "gemmi / ours"]))


if __name__ == "__main__":
    main()

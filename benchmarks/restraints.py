"""Geometry restraints: residual sum and gradient, side by side with
cctbx.geometry_restraints, on one thread.

The synthetic, protein-sized set: 300 chains of 102 atoms built with ideal
bond lengths (1.53 A), angles (111 deg) and staggered torsions, placed at
random in a 72 A box (about protein density, so chains interpenetrate), then
jittered by 0.05 A.  On the same coordinates:

    30 300 bonds, 30 000 angles, 10 000 dihedrals, 2 500 chiralities,
    3 000 six-atom planes, 150 000 non-bonded pairs (within 5 A, not 1-2/1-3/1-4)

Both sides evaluate the same restraints with the same functions (harmonic
terms, periodicity 1 dihedrals, cctbx's least-squares plane, prolsq
repulsion with its defaults) and accumulate the gradient; cctbx uses its
simple proxies (no symmetry) through its C++ residual_sum functions.  Times
are the best of --repeats calls; ratios are cctbx time / our time.
"""

import json
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

import restraintstbx as rt  # noqa: E402

N_CHAINS, CHAIN = 300, 102
BOX = 72.0


def chain(rng):
    """One chain by the natural extension reference frame method."""
    b, theta = 1.53, np.radians(111.0)
    x = np.zeros((CHAIN, 3))
    x[1] = [b, 0, 0]
    x[2] = x[1] + b * np.array([-np.cos(theta), np.sin(theta), 0])
    torsions = np.radians(rng.choice([60.0, 180.0, 300.0], CHAIN) + rng.normal(0, 10, CHAIN))
    for i in range(3, CHAIN):
        bc = x[i - 1] - x[i - 2]
        bc /= np.linalg.norm(bc)
        n = np.cross(x[i - 2] - x[i - 3], bc)
        n /= np.linalg.norm(n)
        m = np.column_stack([bc, np.cross(n, bc), n])
        d = b * np.array([-np.cos(theta), np.sin(theta) * np.cos(torsions[i]),
                          np.sin(theta) * np.sin(torsions[i])])
        x[i] = x[i - 1] + m @ d
    return x - x.mean(axis=0)


def synthetic_set(seed=2025):
    rng = np.random.default_rng(seed)
    sites = []
    for _ in range(N_CHAINS):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        sites.append(chain(rng) @ q.T + rng.uniform(0, BOX, 3))
    sites = np.concatenate(sites) + rng.normal(0, 0.05, (N_CHAINS * CHAIN, 3))
    start = np.arange(N_CHAINS) * CHAIN

    def runs(length, step=1):
        first = np.concatenate([s + np.arange(0, CHAIN - length + 1, step) for s in start])
        return first[:, None] + np.arange(length)[None, :]

    bonds = runs(2)
    angles = runs(3)[:30000]
    dihedrals = runs(4, 2)[:10000]
    chirals = runs(4, 4)[:2500]
    planes = runs(6, 6)[:3000]
    exclude = np.concatenate([bonds, runs(3)[:, [0, 2]], runs(4)[:, [0, 3]]])
    pairs = rt.find_pairs(sites, 5.0, exclude=exclude)
    pick = np.sort(rng.choice(len(pairs), 150000, replace=False))
    return {
        "sites": sites,
        "bonds": bonds, "bond_ideal": np.full(len(bonds), 1.53), "bond_sigma": 0.02,
        "angles": angles, "angle_ideal": np.full(len(angles), 111.0), "angle_sigma": 2.0,
        "dihedrals": dihedrals, "dihedral_ideal": np.full(len(dihedrals), 180.0),
        "dihedral_sigma": 15.0,
        "chirals": chirals, "chiral_ideal": np.full(len(chirals), 2.5), "chiral_sigma": 0.2,
        "planes": planes, "plane_sigma": 0.02,
        "nonbonded": pairs.i_seqs[pick], "vdw": np.full(150000, 3.4),
    }


REFERENCE = r"""
import json, sys, time
import cctbx
from cctbx import geometry_restraints as g
from cctbx.array_family import flex

d = json.load(sys.stdin)
repeats = d["repeats"]
sites = flex.vec3_double([tuple(s) for s in d["sites"]])
n = sites.size()
t0 = time.perf_counter()
bonds = g.shared_bond_simple_proxy()
for (i, j), v in zip(d["bonds"], d["bond_ideal"]):
    bonds.append(g.bond_simple_proxy(i_seqs=(i, j), distance_ideal=v,
                                     weight=1 / d["bond_sigma"] ** 2))
angles = g.shared_angle_proxy()
for ii, v in zip(d["angles"], d["angle_ideal"]):
    angles.append(g.angle_proxy(i_seqs=tuple(ii), angle_ideal=v,
                                weight=1 / d["angle_sigma"] ** 2))
dihedrals = g.shared_dihedral_proxy()
for ii, v in zip(d["dihedrals"], d["dihedral_ideal"]):
    dihedrals.append(g.dihedral_proxy(i_seqs=tuple(ii), angle_ideal=v,
                                      weight=1 / d["dihedral_sigma"] ** 2, periodicity=0))
chirals = g.shared_chirality_proxy()
for ii, v in zip(d["chirals"], d["chiral_ideal"]):
    chirals.append(g.chirality_proxy(i_seqs=tuple(ii), volume_ideal=v, both_signs=False,
                                     weight=1 / d["chiral_sigma"] ** 2))
planes = g.shared_planarity_proxy()
for ii in d["planes"]:
    planes.append(g.planarity_proxy(i_seqs=flex.size_t(ii),
                                    weights=flex.double([1 / d["plane_sigma"] ** 2] * len(ii))))
nonbonded = g.shared_nonbonded_simple_proxy()
for (i, j), v in zip(d["nonbonded"], d["vdw"]):
    nonbonded.append(g.nonbonded_simple_proxy(i_seqs=(i, j), vdw_distance=v))
build = time.perf_counter() - t0
function = g.prolsq_repulsion_function()

calls = {
    "bonds": lambda gr: g.bond_residual_sum(sites_cart=sites, proxies=bonds, gradient_array=gr),
    "angles": lambda gr: g.angle_residual_sum(sites_cart=sites, proxies=angles, gradient_array=gr),
    "dihedrals": lambda gr: g.dihedral_residual_sum(sites_cart=sites, proxies=dihedrals,
                                                    gradient_array=gr),
    "chiralities": lambda gr: g.chirality_residual_sum(sites_cart=sites, proxies=chirals,
                                                       gradient_array=gr),
    "planes": lambda gr: g.planarity_residual_sum(sites_cart=sites, proxies=planes,
                                                  gradient_array=gr),
    "nonbonded": lambda gr: g.nonbonded_residual_sum(sites_cart=sites, proxies=nonbonded,
                                                     gradient_array=gr, function=function),
}
out = {"times": {}, "values": {}, "gradient_norms": {}, "build": build}
for name, call in calls.items():
    best = float("inf")
    for _ in range(repeats):
        gr = flex.vec3_double(n, (0, 0, 0))
        t = time.perf_counter()
        value = call(gr)
        best = min(best, time.perf_counter() - t)
    out["times"][name] = best
    out["values"][name] = value
    out["gradient_norms"][name] = gr.norm()
print(json.dumps(out))
"""


def ours(data):
    s = data
    return {
        "bonds": rt.BondProxies(s["bonds"], s["bond_ideal"], s["bond_sigma"]),
        "angles": rt.AngleProxies(s["angles"], s["angle_ideal"], s["angle_sigma"]),
        "dihedrals": rt.DihedralProxies(s["dihedrals"], s["dihedral_ideal"],
                                        s["dihedral_sigma"]),
        "chiralities": rt.ChiralityProxies(s["chirals"], s["chiral_ideal"], s["chiral_sigma"]),
        "planes": rt.PlanarityProxies(s["planes"], s["plane_sigma"]),
        "nonbonded": rt.NonbondedProxies(s["nonbonded"], s["vdw"]),
    }


def main():
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    data = synthetic_set()
    sites = data["sites"]
    proxies = ours(data)
    times, values, norms = {}, {}, {}
    for name, prox in proxies.items():
        # like the reference: a fresh, zero-filled gradient array per call,
        # made (and its pages touched) outside the timed call
        grads = [np.full(sites.shape, 0.0) for _ in range(args.repeats)]
        calls = iter(grads)
        times[name], values[name] = best_time(lambda: prox.residual_sum(sites, next(calls)),
                                              args.repeats)
        norms[name] = float(np.linalg.norm(grads[-1]))
    rows_time, _ = best_time(lambda: [pr.design_rows(sites) for pr in proxies.values()],
                             args.repeats)

    payload = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}
    payload["repeats"] = args.repeats
    ref = run_reference(args.reference_python, REFERENCE, payload, threads=1)

    print(f"{len(sites)} atoms; counts: " + ", ".join(
        f"{k} {len(v)}" for k, v in proxies.items()))
    table = []
    for name in proxies:
        row = [name, f"{times[name] * 1e3:.2f}"]
        if ref:
            t_ref = ref["times"][name]
            agree = abs(ref["values"][name] - values[name]) / max(abs(values[name]), 1e-300)
            row += [f"{t_ref * 1e3:.2f}", f"{t_ref / times[name]:.1f}x",
                    f"{agree:.1e}"]
        table.append(row)
    total = sum(times.values())
    row = ["total", f"{total * 1e3:.2f}"]
    if ref:
        t_ref = sum(ref["times"].values())
        row += [f"{t_ref * 1e3:.2f}", f"{t_ref / total:.1f}x", ""]
        for name in proxies:
            share = ref["times"][name] / t_ref
            print(f"  cctbx share of time, {name}: {share:.0%}")
    table.append(row)
    headers = ["restraints (residual sum + gradient)", "ours (ms)"]
    if ref:
        headers += ["cctbx (ms)", "cctbx / ours", "relative difference of the sums"]
    print(ratio_table(table, headers))
    print(f"our design rows (CSR, all six types): {rows_time * 1e3:.1f} ms")
    if ref:
        for name in proxies:
            gdiff = abs(ref["gradient_norms"][name] - norms[name]) / max(norms[name], 1e-300)
            if gdiff > 1e-8:
                print(f"warning: gradient norms differ for {name}: {gdiff:.2e}")
    print(json.dumps({"ours": times, "reference": ref["times"] if ref else None}))


if __name__ == "__main__":
    main()

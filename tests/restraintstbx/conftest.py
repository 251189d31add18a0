"""Shared builders for the restraintstbx tests: a random structure, symmetry
arrays from gemmi, and one proxies object per restraint type.

Tests get them through the ``cases`` fixture; ``restraint_type`` and
``restraint_case`` (type, symmetry, frame) are parametrised over every type.
"""

import sys
import types

import gemmi
import numpy as np
import pytest

import restraintstbx as rt


def symmetry_p21c():
    cell = gemmi.UnitCell(7.1, 9.3, 11.2, 90, 104.5, 90)
    ops = list(gemmi.SpaceGroup("P 1 21/c 1").operations())
    rot = np.array([np.array(op.rot) // 24 for op in ops], dtype=np.int32)
    tra = np.array([np.array(op.tran) / 24.0 for op in ops])
    return rt.Symmetry(np.array(cell.orth.mat), rot, tra)


def random_u_cart(rng, n):
    out = np.empty((n, 6))
    for i in range(n):
        m = rng.normal(size=(3, 3)) * 0.1
        u = m @ m.T + 0.02 * np.eye(3)
        out[i] = [u[0, 0], u[1, 1], u[2, 2], u[0, 1], u[0, 2], u[1, 2]]
    return out


def structure(seed=1, n=12, symmetry=None):
    """Random sites (n, 3), U_cart (n, 6) and U_iso (n,); with ``symmetry``
    the fractional coordinates lie within 0.1 of the origin, so that mates
    next to them come from across the cell faces."""
    rng = np.random.default_rng(seed)
    if symmetry is None:
        sites = rng.normal(size=(n, 3)) * 1.5
    else:
        sites = rng.uniform(-0.1, 0.1, size=(n, 3)) @ symmetry.orthogonalisation.T
    return sites, random_u_cart(rng, n), rng.uniform(0.01, 0.05, n)


# (proxies factory taking (groups, sym_ops, shifts, symmetry), atoms per proxy
#  for the factory, ADP kind)
def _g(cls, *args, **kw):
    return lambda atoms, ops, shifts, sym: cls(atoms, *args, sym_ops=ops, shifts=shifts,
                                               symmetry=sym, **kw)


TYPES = {
    "bond": (_g(rt.BondProxies, [1.5, 1.4], 0.02), [[0, 1], [2, 3]], None),
    "angle": (_g(rt.AngleProxies, [109.5, 120.0], 2.0), [[0, 1, 2], [3, 4, 5]], None),
    "dihedral": (_g(rt.DihedralProxies, [60.0, 170.0], 5.0, periodicity=[3, 1]),
                 [[0, 1, 2, 3], [3, 4, 5, 6]], None),
    "dihedral sinusoidal": (_g(rt.DihedralProxies, [60.0, 170.0], 5.0, periodicity=[3, 2],
                               form="sinusoidal"), [[0, 1, 2, 3], [3, 4, 5, 6]], None),
    "chirality": (_g(rt.ChiralityProxies, [2.5, -2.5], 0.2, both_signs=[False, True]),
                  [[0, 1, 2, 3], [3, 4, 5, 6]], None),
    "planarity": (_g(rt.PlanarityProxies, [0.02, [0.01, 0.02, 0.03, 0.04]]),
                  [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]], None),
    "flat": (_g(rt.FlatProxies, 0.1), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]], None),
    "bond similarity": (_g(rt.BondSimilarityProxies, [0.02, [0.01, 0.03]]),
                        [[[0, 1], [1, 2], [2, 3]], [[4, 5], [6, 7]]], None),
    "nonbonded": (_g(rt.NonbondedProxies, 5.0), [[0, 1], [2, 3], [4, 5], [1, 7]], None),
    "nonbonded general": (_g(rt.NonbondedProxies, 5.0, irexp=2.0, rexp=3.0),
                          [[0, 1], [2, 3], [4, 5], [1, 7]], None),
    "bump": (_g(rt.BumpProxies, 3.0, 0.02), [[0, 1], [2, 3], [4, 5], [1, 7]], None),
    "rigid bond": (_g(rt.RigidBondProxies), [[0, 1], [2, 3]], "u_cart"),
    "rigu": (_g(rt.RiguProxies), [[0, 1], [2, 3]], "u_cart"),
    "adp similarity": (_g(rt.AdpSimilarityProxies), [[0, 1], [2, 3]], "u_cart"),
    "isotropic adp": (_g(rt.IsotropicAdpProxies), [[0], [5]], "u_cart"),
    "u_eq similarity": (_g(rt.UeqSimilarityProxies, 0.01), [[0, 1, 2], [3, 4]], "u_cart"),
    "fixed u_eq": (lambda atoms, ops, shifts, sym: rt.FixedUeqProxies(
        np.asarray(atoms).reshape(-1), [0.03, 0.02], 0.01), [[0], [5]], "u_cart"),
    "adp volume similarity": (_g(rt.AdpVolumeSimilarityProxies, 0.01),
                              [[0, 1, 2], [3, 4]], "u_cart"),
    "b similarity": (_g(rt.BSimilarityProxies, 0.01), [[0, 1], [2, 3]], "u_iso"),
}


def build(name, symmetry=None, sites_cart=None, rng=None):
    """The proxies of type ``name``; with ``symmetry``, every atom but the
    first of each proxy is a mate (random operation, lattice shift bringing it
    next to the first atom, often across a cell edge); a single-atom proxy's
    atom is a mate with a random shift."""
    factory, atoms, adp = TYPES[name]
    if symmetry is None:
        return factory(atoms, None, None, None), adp
    frac = sites_cart @ symmetry.fractionalisation.T
    groups = [np.asarray(g).reshape(-1) for g in atoms]
    ops, shifts = [], []
    for g in groups:
        o = np.full(g.size, -1)
        s = np.zeros((g.size, 3), dtype=int)
        for a in range(1 if g.size > 1 else 0, g.size):
            o[a] = rng.integers(symmetry.n_operations)
            image = symmetry.rotations[o[a]] @ frac[g[a]] + symmetry.translations[o[a]]
            s[a] = np.rint(frac[g[0]] - image) if a else rng.integers(-1, 2, size=3)
        ops.append(o)
        shifts.append(s)
    if name == "bond similarity":
        ops = [o.reshape(-1, 2) for o in ops]
        shifts = [s.reshape(-1, 2, 3) for s in shifts]
    return factory(atoms, ops, shifts, symmetry), adp


def adp_values(adp, u_cart, u_iso):
    return {None: None, "u_cart": u_cart, "u_iso": u_iso}[adp]


CASES = [(name, sym, frame) for name in TYPES for sym, frame in
         [(False, "cart"), (True, "cart"), (True, "frac")] if not (
             name == "fixed u_eq" and sym)]


def pytest_generate_tests(metafunc):
    if "restraint_type" in metafunc.fixturenames:
        metafunc.parametrize("restraint_type", list(TYPES))
    if "restraint_case" in metafunc.fixturenames:
        metafunc.parametrize("restraint_case", CASES,
                             ids=[f"{n}-{'sym' if s else 'nosym'}-{f}" for n, s, f in CASES])


@pytest.fixture(scope="session")
def cases():
    """This module's builders (symmetry_p21c, structure, build, ...)."""
    return types.SimpleNamespace(**{k: v for k, v in vars(sys.modules[__name__]).items()
                                    if not k.startswith("_")})

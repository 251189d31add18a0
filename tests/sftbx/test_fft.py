"""FFT structure factors and gradients on synthetic structures: against a
NumPy sum over all operations, against the direct path, against finite
differences, and bad input."""

import numpy as np
import pytest

import sftbx
from sgtbx import CrystallographyError, SpaceGroup, UnitCell, complete_set
from sftbx import FFTError, FFTStructureFactors, ParameterMap, Scatterers, StructureFactors

CELLS = {
    "P 1": (11.0, 12.5, 13.0, 80.0, 95.0, 102.0),
    "P -1": (11.0, 12.5, 13.0, 80.0, 95.0, 102.0),
    "P 1 21/c 1": (12.0, 9.0, 14.0, 90.0, 104.0, 90.0),
    "C 1 2/c 1": (18.0, 9.0, 14.0, 90.0, 110.0, 90.0),
    "P 21 21 21": (10.0, 12.0, 15.0, 90.0, 90.0, 90.0),
    "P 43": (12.0, 12.0, 15.0, 90.0, 90.0, 90.0),
    "P 42": (12.0, 12.0, 15.0, 90.0, 90.0, 90.0),
    "P 65 2 2": (11.0, 11.0, 20.0, 90.0, 90.0, 120.0),
    "R -3 :H": (14.0, 14.0, 12.0, 90.0, 90.0, 120.0),
    "F d -3 m :1": (16.0, 16.0, 16.0, 90.0, 90.0, 90.0),
}


def random_structure(symbol, n=12, seed=0, fp=False):
    """Random atoms (C, N, O, S), half anisotropic, occupancies 0.5-1."""
    rng = np.random.default_rng(seed)
    uc, sg = UnitCell(*CELLS[symbol]), SpaceGroup(symbol)
    el = rng.choice(["C", "N", "O", "S"], n)
    sites = rng.random((n, 3))
    u_iso = rng.uniform(0.05, 0.5, n)
    u_cart = np.tile([0.08, 0.06, 0.1, 0.01, -0.005, 0.015], (n, 1)) * rng.uniform(1, 3, (n, 1))
    aniso = np.arange(n) % 2 == 1
    sc = Scatterers(el, sites, rng.uniform(0.5, 1.0, n), u_iso, u_star=uc.u_cart_as_u_star(u_cart),
                    aniso=aniso, fp=rng.uniform(-0.5, 0.5, n) if fp else None)
    return uc, sg, sc


def general_hkl(uc, sg, d_min, seed=0, m=None):
    """A complete set with each reflection moved by a random operation and
    half of them negated: most lie outside the asymmetric unit."""
    rng = np.random.default_rng(seed)
    hkl = np.asarray(complete_set(uc, sg, d_min))
    if m is not None and m < len(hkl):
        hkl = hkl[rng.choice(len(hkl), m, replace=False)]
    ops = np.asarray(sg.rotations)[rng.integers(0, sg.order_z, len(hkl))]
    hkl = np.einsum("mi,mij->mj", hkl, ops)
    hkl[rng.random(len(hkl)) < 0.5] *= -1
    return np.ascontiguousarray(hkl, dtype=np.int32)


def r_amplitude(f, ref):
    return np.abs(np.abs(f) - np.abs(ref)).sum() / np.abs(ref).sum()


def numpy_f_calc(uc, sg, sc, hkl, mult):
    """F(h) by a plain sum over atoms and all operations (occupancy *
    multiplicity / order_z)."""
    types, index = sc.types()
    a, b, c = sftbx.form_factor_table(types)
    h = hkl.astype(float)
    s_sq = np.einsum("mi,ij,mj->m", h, uc.reciprocal_metric, h)
    f0 = (a[None] * np.exp(-s_sq[:, None, None] * b[None] / 4)).sum(-1) + c[None]
    u_star = np.where(sc.aniso[:, None], sc.u_star,
                      sc.u_iso[:, None] * uc.reciprocal_metric[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]])
    f = np.zeros(len(h), complex)
    w = sc.occupancies * mult / sg.order_z
    for rot, tra in zip(sg.rotations, sg.translations):
        hr = h @ rot
        ph = 2j * np.pi * (hr @ sc.sites_frac.T + (h @ tra)[:, None])
        q = (hr[:, None, :] ** 2 * u_star[None, :, :3]).sum(-1) \
            + 2 * (hr[:, None, 0] * hr[:, None, 1] * u_star[None, :, 3]
                   + hr[:, None, 0] * hr[:, None, 2] * u_star[None, :, 4]
                   + hr[:, None, 1] * hr[:, None, 2] * u_star[None, :, 5])
        f += ((f0[:, index] + sc.fp) * w * np.exp(-2 * np.pi**2 * q) * np.exp(ph)).sum(1)
    return f


def test_p1_against_numpy_sum():
    uc, sg, sc = random_structure("P 1", n=15, seed=3, fp=True)
    hkl = general_hkl(uc, sg, 1.2)
    ref = numpy_f_calc(uc, sg, sc, hkl, np.ones(len(sc)))
    fine = FFTStructureFactors(uc, sg, sc, hkl, accuracy="fine").f_calc()
    default = FFTStructureFactors(uc, sg, sc, hkl).f_calc()
    assert np.abs(fine - ref).sum() / np.abs(ref).sum() < 1e-5
    assert r_amplitude(fine, ref) < 1e-5
    assert r_amplitude(default, ref) < 1e-3


@pytest.mark.parametrize("symbol", list(CELLS))
def test_against_direct_summation(symbol):
    uc, sg, sc = random_structure(symbol, seed=len(symbol))
    hkl = general_hkl(uc, sg, 1.3, m=1500)
    direct = StructureFactors(uc, sg, sc, hkl)
    ref = direct.f_calc()
    mult = direct.site_weights * sg.order_z
    fine = FFTStructureFactors(uc, sg, sc, hkl, accuracy="fine", multiplicities=mult).f_calc()
    default = FFTStructureFactors(uc, sg, sc, hkl, multiplicities=mult).f_calc()
    assert r_amplitude(fine, ref) < 1e-5
    assert np.abs(fine - ref).sum() / np.abs(ref).sum() < 1e-5
    assert r_amplitude(default, ref) < 1e-3


def test_special_positions_and_numpy_sum():
    """Atoms on special positions of P 42 and F d -3 m: the default site
    multiplicities, and the all-operation NumPy sum."""
    for symbol, special in (("P 42", [0.0, 0.5, 0.3]), ("F d -3 m :1", [0.125, 0.125, 0.125])):
        uc, sg, sc = random_structure(symbol, n=6, seed=11)
        sc.sites_frac[0] = special
        hkl = general_hkl(uc, sg, 1.4, m=800)
        fft = FFTStructureFactors(uc, sg, sc, hkl, accuracy="fine")
        mult = fft.site_weights * sg.order_z
        assert mult[0] < sg.order_z
        ref = numpy_f_calc(uc, sg, sc, hkl, mult)
        assert np.abs(fft.f_calc() - ref).sum() / np.abs(ref).sum() < 1e-5
        direct = StructureFactors(uc, sg, sc, hkl).f_calc()
        assert np.abs(direct - ref).sum() / np.abs(ref).sum() < 1e-9


def test_thread_count_does_not_change_results():
    uc, sg, sc = random_structure("P 1 21/c 1", n=30, seed=5)
    hkl = general_hkl(uc, sg, 1.5)
    one = FFTStructureFactors(uc, sg, sc, hkl, n_threads=1)
    two = FFTStructureFactors(uc, sg, sc, hkl, n_threads=2)
    f1, f2 = one.f_calc(), two.f_calc()
    assert np.abs(f1 - f2).max() < 1e-10 * np.abs(f1).max()
    rng = np.random.default_rng(0)
    da, db = rng.normal(size=len(hkl)), rng.normal(size=len(hkl))
    pm = ParameterMap.for_scatterers(sc, occupancy=True)
    g1, g2 = one.gradients(da, db, pm), two.gradients(da, db, pm)
    assert np.abs(g1 - g2).max() < 1e-10 * np.abs(g1).max()


def _target(f, fo, w):
    """T = sum w (|F| - Fo)^2 and (dT/dA, dT/dB)."""
    amp = np.abs(f)
    t = (w * (amp - fo) ** 2).sum()
    c = 2 * w * (amp - fo) / amp
    return t, c * f.real, c * f.imag


@pytest.mark.parametrize("symbol", ["P 1", "P 1 21/c 1", "C 1 2/c 1", "P 65 2 2", "R -3 :H"])
def test_gradients_against_direct_and_finite_differences(symbol):
    uc, sg, sc = random_structure(symbol, n=8, seed=7)
    hkl = general_hkl(uc, sg, 1.5, m=600)
    rng = np.random.default_rng(1)
    direct = StructureFactors(uc, sg, sc, hkl)
    fo = np.abs(direct.f_calc()) * rng.uniform(0.7, 1.3, len(hkl))
    w = rng.uniform(0.5, 1.5, len(hkl))
    pm = ParameterMap.for_scatterers(sc, occupancy=True)
    _, da, db = _target(direct.f_calc(), fo, w)
    ref = direct.gradients(da, db, pm)
    fine = FFTStructureFactors(uc, sg, sc, hkl, accuracy="fine",
                               multiplicities=direct.site_weights * sg.order_z)
    _, da, db = _target(fine.f_calc(), fo, w)
    g = fine.gradients(da, db, pm)
    scale = np.abs(ref).max()
    assert np.linalg.norm(g - ref) < 1e-4 * np.linalg.norm(ref)
    default = FFTStructureFactors(uc, sg, sc, hkl, multiplicities=direct.site_weights * sg.order_z)
    _, da, db = _target(default.f_calc(), fo, w)
    assert np.abs(default.gradients(da, db, pm) - ref).max() < 1e-2 * scale
    # the FFT gradient is the derivative of the FFT F (same grid and blur)
    grad = g
    arrays = {"x": (sc.sites_frac, 0), "y": (sc.sites_frac, 1), "z": (sc.sites_frac, 2),
              "u_iso": (sc.u_iso, None), "occupancy": (sc.occupancies, None)}
    arrays.update({name: (sc.u_star, k) for k, name in
                   enumerate(["u11", "u22", "u33", "u12", "u13", "u23"])})
    names = pm.names(sc.labels)
    for col in rng.choice(pm.n_params, 12, replace=False):
        label, slot = names[col].split(".")
        atom = sc.labels.index(label)
        arr, k = arrays[slot]
        # The discrete model jumps by ~cutoff when a grid point enters an atom's
        # sphere (radii follow the ADPs): steps large enough that this is noise,
        # and a tolerance of 5e-4 for what remains (the comparison with the
        # direct path's analytic gradient above is the tight one).
        step = 1e-3 * np.abs(sc.u_star[atom, :3]).max() if slot[:2] == "u1" or \
            slot[:2] == "u2" or slot == "u33" else 1e-4
        values = []
        for sign in (1, -1):
            saved = arr[atom].copy() if k is not None else arr[atom]
            if k is None:
                arr[atom] = saved + sign * step
            else:
                arr[atom, k] += sign * step
            calc = FFTStructureFactors(uc, sg, sc, hkl, accuracy="fine", b_add=fine.b_add,
                                       multiplicities=direct.site_weights * sg.order_z)
            values.append(_target(calc.f_calc(), fo, w)[0])
            arr[atom] = saved
        fd = (values[0] - values[1]) / (2 * step)
        assert abs(fd - grad[col]) < 5e-4 * (abs(fd) + 1e-2 * np.abs(grad).max()), names[col]


def test_sharp_atoms_sampled_point_by_point():
    """Atoms with B + B_add below ~2 A^2, whose exponentials could leave the
    range of a double across their box, are evaluated point by point instead
    of by recurrence: F and the gradients still match the direct path (a
    fine grid keeps the aliasing of such sharp atoms small)."""
    uc, sg, sc = random_structure("P 1 21/c 1", n=8, seed=9)
    sc.u_iso[::2] = 0.004
    sc.aniso[::2] = False
    hkl = general_hkl(uc, sg, 1.5, m=600)
    direct = StructureFactors(uc, sg, sc, hkl)
    mult = direct.site_weights * sg.order_z
    fft = FFTStructureFactors(uc, sg, sc, hkl, rate=6, b_add=0.5, cutoff=1e-5,
                              multiplicities=mult)
    ref = direct.f_calc()
    # measured: 2.1e-6 (F), 3.3e-5 (the sharp atoms' gradients)
    assert np.abs(fft.f_calc() - ref).sum() / np.abs(ref).sum() < 1e-5
    rng = np.random.default_rng(3)
    da, db = rng.normal(size=len(hkl)), rng.normal(size=len(hkl))
    pm = ParameterMap.for_scatterers(sc, occupancy=True)
    g, g_ref = fft.gradients(da, db, pm), direct.gradients(da, db, pm)
    sharp = [i for i, name in enumerate(pm.names(sc.labels))
             if name.split(".")[0] in sc.labels[::2]]
    assert np.linalg.norm((g - g_ref)[sharp]) < 1e-4 * np.linalg.norm(g_ref[sharp])


def test_atom_gradients_match_parameter_map():
    uc, sg, sc = random_structure("P 21 21 21", n=6, seed=2)
    hkl = general_hkl(uc, sg, 1.6)
    calc = FFTStructureFactors(uc, sg, sc, hkl)
    rng = np.random.default_rng(4)
    da, db = rng.normal(size=len(hkl)), rng.normal(size=len(hkl))
    per_atom = calc.atom_gradients(da, db)
    pm = ParameterMap.for_scatterers(sc, occupancy=True)
    g = calc.gradients(da, db, pm)
    cols = pm.columns
    assert np.allclose(g[cols[:, 0]], per_atom["sites_frac"][:, 0])
    iso = ~sc.aniso
    assert np.allclose(g[cols[iso, 3]], per_atom["u_iso"][iso])
    assert np.allclose(g[cols[sc.aniso, 9]], per_atom["u_star"][sc.aniso, 5])
    assert np.allclose(g[cols[:, 10]], per_atom["occupancies"])


# -- bad input --------------------------------------------------------------------------------

def test_errors_are_typed():
    assert issubclass(FFTError, CrystallographyError)
    assert issubclass(FFTError, sftbx.ScatteringError)


def test_grid_too_coarse():
    uc, sg, sc = random_structure("P 1 21/c 1")
    hkl = general_hkl(uc, sg, 1.5)
    with pytest.raises(FFTError, match="too coarse"):
        FFTStructureFactors(uc, sg, sc, hkl, shape=(8, 8, 8))
    with pytest.raises(FFTError, match="below 1"):
        FFTStructureFactors(uc, sg, sc, hkl, rate=0.8)
    with pytest.raises(FFTError, match="outside the grid"):
        FFTStructureFactors(uc, sg, sc, hkl, d_min=3.0).f_calc()


def test_nan_site_and_negative_b():
    uc, sg, sc = random_structure("P 1 21/c 1")
    hkl = general_hkl(uc, sg, 2.0)
    sc.sites_frac[3, 1] = np.nan
    with pytest.raises(FFTError, match="atom 3.*site is not finite"):
        FFTStructureFactors(uc, sg, sc, hkl).f_calc()
    uc, sg, sc = random_structure("P 1 21/c 1")
    sc.u_iso[2] = -0.01
    with pytest.raises(FFTError, match="atom 2.*u_iso must be finite and >= 0"):
        FFTStructureFactors(uc, sg, sc, hkl).f_calc()
    uc, sg, sc = random_structure("P 1 21/c 1")
    sc.u_star[1] = [0.001, 0.001, 0.001, 0.0, 0.0, 0.003]
    with pytest.raises(FFTError, match="atom 1.*not positive"):
        FFTStructureFactors(uc, sg, sc, hkl).atom_gradients(np.ones(len(hkl)), np.ones(len(hkl)))


def test_other_bad_input():
    uc, sg, sc = random_structure("P 1")
    hkl = general_hkl(uc, sg, 2.0)
    with pytest.raises(FFTError, match="accuracy"):
        FFTStructureFactors(uc, sg, sc, hkl, accuracy="best")
    with pytest.raises(FFTError, match="b_add"):
        FFTStructureFactors(uc, sg, sc, hkl, b_add=-1)
    with pytest.raises(FFTError, match="hkl"):
        FFTStructureFactors(uc, sg, sc, hkl[:, :2])
    sc.fdp[0] = 0.3
    with pytest.raises(FFTError, match="f''"):
        FFTStructureFactors(uc, sg, sc, hkl).f_calc()
    sc.fdp[0] = 0
    calc = FFTStructureFactors(uc, sg, sc, hkl)
    with pytest.raises(FFTError, match="fp"):
        calc.gradients(np.ones(len(hkl)), np.ones(len(hkl)), ParameterMap.for_scatterers(sc, fp=True))
    with pytest.raises(FFTError, match="finite"):
        calc.atom_gradients(np.full(len(hkl), np.nan), np.ones(len(hkl)))
    sc.u_iso[:] = 0
    sc.aniso[:] = False
    with pytest.raises(FFTError, match="zero ADP"):
        FFTStructureFactors(uc, sg, sc, hkl, b_add=0).f_calc()


def test_calculator_chosen_by_size_or_caller():
    uc, sg, sc = random_structure("P 1 21/c 1", n=10)
    small = general_hkl(uc, sg, 2.0)
    assert isinstance(sftbx.structure_factor_calculator(uc, sg, sc, small), StructureFactors)
    assert isinstance(sftbx.structure_factor_calculator(uc, sg, sc, small, algorithm="fft"),
                      FFTStructureFactors)
    uc, sg, sc = random_structure("P 1 21/c 1", n=1500, seed=1)
    large = general_hkl(uc, sg, 0.8)
    assert len(sc) * len(large) * sg.order_z > sftbx.fft.AUTO_FFT_TERMS
    calc = sftbx.structure_factor_calculator(uc, sg, sc, large, accuracy="fine")
    assert isinstance(calc, FFTStructureFactors)
    sc.fdp[0] = 1.0
    assert isinstance(sftbx.structure_factor_calculator(uc, sg, sc, large), StructureFactors)
    with pytest.raises(FFTError, match="FFT path only"):
        sftbx.structure_factor_calculator(uc, sg, sc, small, algorithm="direct", accuracy="fine")
    with pytest.raises(FFTError, match="algorithm"):
        sftbx.structure_factor_calculator(uc, sg, sc, small, algorithm="best")

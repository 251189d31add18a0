"""smtbx.restraints: SHELXL's restraints as rows in the graph's x.

Every design row is checked against central finite differences of Δ in x
(the whole chain: graph y(x), then the restraint), on real sets and on small
files that exercise what the real sets lack (EQIV mates, DANG, ISOR, CHIV,
SUMP, BUMP, isotropic SIMU).
"""

import os

import numpy as np
import pytest

import restraintstbx as rt
import smtbx
from restraintstbx import RestraintError
from smtbx.reparametrisation import Reparametrisation
from smtbx.restraints import WEIGHT_RULE, ShelxRestraints, restraint_weight_scale

# the model file of each of the 19 sets
RES = {
    "alga_p21c": "p21c.res", "bjk_p21212": "bjk.res", "caf2_fm3m": "caf2.res",
    "cc_invtwin": "disorder.res", "ed_cinch_p21": "shelxl.res", "exti_c2m": "exti.res",
    "fecl_r3c": "2240189.res", "gabipy_c2c": "C2c_a.res", "hmamg_p21c": "hma_mg.res",
    "musc_c2c": "muscovite.res", "nacl_fm3m": "NaCl.res", "ni_i43d": "i43d.res",
    "p31c_sad": "sad.res", "ru_p21c": "05srv085.ins", "sh2185_p212121": "sh2185.res",
    "sucrose_p21": "zucker2.res", "thpp_p21n": "thpp.ins",
    "twin5_p21n": "NO_PF-F-PF_twin4_XPREP_a.res", "twin5_p4": "P-4_NotDetwinned_12.res",
}


def load(small_data, name):
    model = smtbx.read_ins(small_data / name / RES[name])
    graph = Reparametrisation(model)
    return model, graph, ShelxRestraints(model, graph)


def check_fd(restraints, columns, h=1e-6):
    """Design columns against central differences of -Δ (value = target − Δ)."""
    graph = restraints.graph
    rows = restraints.evaluate()
    design = rows.design.toarray()
    x0 = graph.x.copy()
    for c in columns:
        xp, xm = x0.copy(), x0.copy()
        xp[c] += h
        xm[c] -= h
        fd = -(restraints.evaluate(xp).deltas - restraints.evaluate(xm).deltas) / (2 * h)
        scale = max(1.0, np.abs(design[:, c]).max())
        np.testing.assert_allclose(design[:, c], fd, rtol=1e-5, atol=2e-5 * scale,
                                   err_msg=f"column {c} ({graph.x_names[c]})")
    return rows


def used_columns(restraints, n, seed=1):
    design = restraints.evaluate().design.tocsc()
    used = np.flatnonzero(np.diff(design.indptr))
    rng = np.random.default_rng(seed)
    return rng.choice(used, size=min(n, used.size), replace=False)


# SHELXL's counts (REM line of the .res / _refine_ls_number_restraints).
EXACT = {"twin5_p21n": 7497, "bjk_p21212": 5, "sh2185_p212121": 114, "ni_i43d": 194, "twin5_p4": 126,
         "sucrose_p21": 1, "ed_cinch_p21": 1, "musc_c2c": 0, "caf2_fm3m": 0, "hmamg_p21c": 0,
         "exti_c2m": 0, "fecl_r3c": 0, "nacl_fm3m": 0, "ru_p21c": 0, "thpp_p21n": 0}
# Within 2 %, the difference not identified: gabipy 10324 (SHELXL 10335),
# cc_invtwin 1674 (1644; its 45 SADI sets are SHELXL's own, see
# test_sadi_sets_are_shelxl_listing, so the 30 extra are among its 1242 SIMU,
# RIGU and FLAT restraints), p31c_sad 361 (365; atoms on the 3-fold axis).
NEAR = {"gabipy_c2c": 10335, "cc_invtwin": 1644, "p31c_sad": 365}
# bjk_p21212's two BUMP restraints are what smtbx.restraints.BUMP_MARGIN was
# fitted to (not an independent check).
# Not reproduced: alga_p21c 1842 (ours 2357, its SADI_CCF3 sets pooled over
# residues as the reader does).  The file is a parser-test resource whose
# instructions do not look like the ones SHELXL ran (a DEFS line of
# 0.0234 0.123 0.0123 0.0456 1.23; the README gives 1924 restraints, the REM
# line 1842).
UNRESOLVED = {"alga_p21c"}


@pytest.mark.parametrize("name", sorted(RES))
def test_every_set_builds_and_counts(small_data, name):
    model, graph, restraints = load(small_data, name)
    rows = restraints.evaluate()
    assert rows.design.shape == (rows.deltas.size, len(graph.x))
    assert np.all(np.isfinite(rows.deltas)) and np.all(rows.weights > 0)
    assert np.isfinite(rows.chi2) and rows.chi2 >= 0
    assert rows.chi2 == pytest.approx(np.sum(rows.weights * rows.deltas ** 2))
    if name in EXACT:
        assert rows.n_restraints == EXACT[name]
    elif name in NEAR:
        assert abs(rows.n_restraints - NEAR[name]) <= 0.02 * NEAR[name]
    else:
        assert name in UNRESOLVED and rows.n_restraints > 0


def test_sadi_sets_are_shelxl_listing(small_data):
    # After END SHELXL listed every SADI set it used, "including those derived
    # from SAME" (names with ^a/^b PART suffixes): the same 45 sets, sigmas
    # included, from cc_invtwin's SADI, SAME (with FREE/BIND) instructions.
    import re
    text = (small_data / "cc_invtwin" / RES["cc_invtwin"]).read_text()
    tail = re.sub(r"=\s*\n\s+", " ", text[text.index("REM SADI restraints, including"):])
    listed = set()
    for line in tail.splitlines()[1:]:
        words = line.split()
        if words and words[0] == "SADI":
            names = [w.split("^")[0].upper() for w in words[2:]]
            listed.add((float(words[1]), frozenset(frozenset(names[k:k + 2])
                                                   for k in range(0, len(names), 2))))
    _, _, restraints = load(small_data, "cc_invtwin")
    labels = [label.upper() for label in restraints.labels]
    sadi = [t for t in restraints.terms if t.kind == "SADI"][0].proxies
    sigmas = sadi.sigmas
    ours = {(round(float(sig), 4), frozenset(frozenset((labels[a[0]], labels[b[0]])) for a, b in g))
            for sig, g in zip(sigmas, sadi.groups)}
    assert len(listed) == 45 and ours == listed


@pytest.mark.parametrize("name, n_columns", [
    ("cc_invtwin", 40),      # SAME (pooled), SADI, FLAT, RIGU, SIMU across PARTs, Cc origin (2)
    ("ni_i43d", 30),         # DELU, FLAT, SAME, DFIX, PART -n on special positions
    ("p31c_sad", 30),        # DELU, RIGU, SIMU, FLAT, EADP, P31c origin
    ("bjk_p21212", 20),      # RIGU; PART -1 about a 2-fold axis
])
def test_design_rows_by_finite_differences(small_data, name, n_columns):
    _, _, restraints = load(small_data, name)
    check_fd(restraints, used_columns(restraints, n_columns))


def test_refine_hook(small_data):
    _, graph, restraints = load(small_data, "sucrose_p21")
    design, deltas, weights = restraints(graph)
    assert design.shape == (1, len(graph.x)) and deltas.shape == weights.shape == (1,)
    other = Reparametrisation(load(small_data, "ni_i43d")[0])
    with pytest.raises(RestraintError, match="built for a graph"):
        restraints(other)


def test_floating_origin_rows(small_data):
    model, graph, restraints = load(small_data, "cc_invtwin")
    assert len(restraints._origin) == 2          # Cc: polar along x and z
    rows = restraints.evaluate()
    origin = rows.design[-2:].toarray()
    # a shift of every site along the polar direction moves the centre of
    # gravity by the same amount: the rows see it, Δ starts at zero
    np.testing.assert_allclose(rows.deltas[-2:], 0, atol=1e-12)
    assert np.all(np.abs(origin).sum(axis=1) > 0)


HEADER = """TITL t in {sg}
CELL 0.71073 10.0 11.0 12.0 90 {beta} 90
ZERR 2 0.001 0.001 0.001 0 0.01 0
LATT {latt}
{symm}SFAC C H O
UNIT 8 8 4
"""

RING = [(0.1000, 0.2000, 0.3000), (0.2209, 0.2638, 0.3000), (0.3409, 0.2000, 0.3000),
        (0.3409, 0.0727, 0.3000), (0.2209, 0.0089, 0.3000), (0.1000, 0.0727, 0.3000)]


def ring_ins(sg="P1", latt=-1, symm="", beta=90, extra="", atoms_extra=""):
    lines = [HEADER.format(sg=sg, latt=latt, symm=symm, beta=beta)]
    lines.append(extra)
    lines.append("FVAR 1.0 0.6\n")
    u = [(0.030, 0.040, 0.050, 0.002, 0.003, -0.004), (0.035, 0.030, 0.045, -0.003, 0.001, 0.002)]
    for k, (x, y, z) in enumerate(RING):
        a = u[k % 2]
        lines.append(f"C{k + 1} 1 {x:.4f} {y:.4f} {z:.4f} 11.0 {a[0]} {a[1]} =\n"
                     f"   {a[2]} {a[3]} {a[4]} {a[5]}\n")
    lines.append(atoms_extra)
    lines.append("HKLF 4\nEND\n")
    return "".join(lines)


def build(tmp_path, text):
    path = tmp_path / "t.ins"
    path.write_text(text)
    model = smtbx.read_ins(path)
    graph = Reparametrisation(model)
    return model, graph, ShelxRestraints(model, graph)


def test_ideal_geometry_gives_zero(tmp_path):
    # a regular planar hexagon (the cell is not cubic: built in Cartesian)
    model, graph, _ = build(tmp_path, ring_ins())
    a = model.cell.orthogonalisation
    angles = np.arange(6) * np.pi / 3
    cart = np.column_stack([1.39 * np.cos(angles), 1.39 * np.sin(angles), np.zeros(6)]) + 3.0
    frac = cart @ np.linalg.inv(a).T
    body = "".join(f"C{k + 1} 1 {x:.6f} {y:.6f} {z:.6f} 11.0 0.04\n" for k, (x, y, z) in enumerate(frac))
    text = (HEADER.format(sg="P1", latt=-1, symm="", beta=90)
            + "FLAT C1 > C6\nSADI C1 C2 C2 C3 C3 C4 C4 C5 C5 C6 C6 C1\n"
            + "DFIX 1.39 C1 C2\nDANG 2.4075 C1 C3\nSIMU C1 > C6\n"
            + "FVAR 1.0\n" + body + "HKLF 4\nEND\n")
    model, graph, restraints = build(tmp_path, text)
    rows = restraints.evaluate()
    kinds = {t.kind for t in restraints.terms}
    assert kinds == {"FLAT", "SADI", "DFIX", "DANG", "SIMU"}
    np.testing.assert_allclose(rows.deltas, 0, atol=5e-5)   # 6-decimal fractional sites
    assert rows.chi2 < 1e-4
    # 3 FLAT volumes, 15 SADI differences, 1 DFIX, 1 DANG, 6 isotropic SIMU
    # pairs, and P1's floating origin along x, y and z
    assert rows.n_restraints == 3 + 15 + 1 + 1 + 6 + 3


def simu_pairs(restraints):
    labels = restraints.labels
    return {(labels[i], labels[j]) for t in restraints.terms if t.kind == "SIMU"
            for i, j in (t.proxies.proxy_atoms(k) for k in range(len(t.proxies)))}


def test_simu_pairs_parts_and_terminal_sigma(tmp_path):
    extra = "SIMU 0.04 0.08 2.0 C1 > O2\n"
    atoms = ("PART 1 21\nO1 3 0.4200 0.2600 0.3000 21.0 0.05\n"
             "PART 2 -21\nO2 3 0.4300 0.2700 0.3100 -21.0 0.05\nPART 0\n")
    model, graph, restraints = build(tmp_path, ring_ins(extra=extra, atoms_extra=atoms))
    pairs = simu_pairs(restraints)
    # SHELXL restrains overlapping alternative components too
    assert {("O1", "O2"), ("C3", "O1"), ("C3", "O2"), ("C1", "C2")} <= pairs
    assert ("C1", "C3") not in pairs                       # 2.4 A > dmax
    iso = [t for t in restraints.terms if t.kind == "SIMU" and t.adp == "u_eq"][0]
    # O1 and O2 are terminal (one neighbour, C3): sigma st = 0.08
    np.testing.assert_allclose(iso.proxies.weights, 1 / 0.08 ** 2)
    check_fd(restraints, range(len(graph.x)))
    # st = 0 switches the terminal pairs off
    _, _, off = build(tmp_path, ring_ins(extra="SIMU 0.04 0 2.0 C1 > O2\n", atoms_extra=atoms))
    assert simu_pairs(off) == {p for p in pairs if "O1" not in p and "O2" not in p}
    apart = ShelxRestraints(model, graph, simu_across_parts=False)
    assert simu_pairs(apart) == pairs - {("O1", "O2")}
    assert apart.n_restraints == restraints.n_restraints - 1


def test_mates_isor_chiv_sump_bump_by_finite_differences(tmp_path):
    symm = "SYMM -X, 1/2+Y, 1/2-Z\n"
    extra = ("EQIV $1 -x+1, y+1/2, -z+1/2\nDFIX 4.0 C1 C4_$1\nDANG 5.0 C2 C5_$1\n"
             "ISOR 0.05 C1 C2\nCHIV 0.5 C1\nSUMP 1.0 0.01 1.0 2 1.0 3\nDELU C1 > C6\n"
             "RIGU C1 > C6\nFLAT C1 C3 C5 C2 C4 C6\nBUMP\n")
    model, graph, restraints = build(
        tmp_path, ring_ins(sg="P2(1)/c", latt=1, symm=symm, beta=100, extra=extra).replace(
            "FVAR 1.0 0.6\n", "FVAR 1.0 0.6 0.3\nO1 3 -0.0211 0.2637 0.30 21.0 0.05\n"
                              "O2 3 0.2209 0.3911 0.30 31.0 0.05\n"
                              "O3 3 -0.0211 0.2637 0.4917 11.0 0.05\n"))
    kinds = {t.kind for t in restraints.terms}
    assert kinds == {"DFIX", "DANG", "ISOR", "CHIV", "DELU", "RIGU", "FLAT", "BUMP"}
    bump = [t for t in restraints.terms if t.kind == "BUMP"][0].proxies
    labels = restraints.labels
    assert ("O1", "O3") in {tuple(labels[i] for i in bump.proxy_atoms(k)) for k in range(len(bump))}
    assert len(restraints._sump) == 1
    rows = check_fd(restraints, range(len(graph.x)))
    # SUMP: fv(2) + fv(3) = 1 with sigma 0.01 is the last row
    assert rows.deltas[-1] == pytest.approx(1.0 - 0.6 - 0.3)
    assert rows.weights[-1] == pytest.approx(1e4)


def test_weight_rule_is_stated():
    assert "not scaled" in WEIGHT_RULE
    assert restraint_weight_scale(200.0, 110, 10) == pytest.approx(2.0)
    assert restraint_weight_scale(200.0, 10, 10) == 1.0


def test_statistics_name_atoms(small_data):
    _, _, restraints = load(small_data, "sh2185_p212121")
    stats = restraints.statistics(n_worst=2)
    assert {s.name for s in stats} == {"FLAT", "DELU", "RIGU", "SIMU"}
    text = restraints.format_statistics(n_worst=1)
    assert "114 (SHELXL's count)" in text and "C1" in text


@pytest.mark.parametrize("name", ["sh2185_p212121", "cc_invtwin"])
def test_gauss_newton_on_restraints_alone(small_data, name):
    # With lstbx's sign convention (rows d value / dx, Δ = target - value) the
    # step s minimising Σ w (Δ - D s)² satisfies the restraints: χ² falls
    # quadratically through the graph (riding H, EADP, special positions).
    from scipy.sparse import diags
    from scipy.sparse.linalg import lsqr
    _, graph, restraints = load(small_data, name)
    rows = restraints.evaluate()
    chi2 = [rows.chi2]
    x = graph.x.copy()
    for _ in range(3):
        sw = np.sqrt(rows.weights)
        x = x + lsqr(diags(sw) @ rows.design, sw * rows.deltas, damp=1e-3)[0]
        rows = restraints.evaluate(x)
        chi2.append(rows.chi2)
    assert chi2[0] > 150 and chi2[1] < 0.06 * chi2[0] and chi2[3] < 1e-3


def test_rigu_weight_factor_hand_worked():
    # p = 0.35: 0.1225 / ((0.1225 + 0.05 + 0.05) * 1.5^2) = 0.1225 / 0.500625
    from smtbx.restraints import RIGU_P, rigu_weight_factor
    assert RIGU_P == 0.35
    f = rigu_weight_factor([1.5, 2.0], [[0.05, 0.05], [0.0, 0.0]])
    np.testing.assert_allclose(f, [0.1225 / 0.500625, 0.25], rtol=1e-14)


def test_rigu_rows_carry_the_weight_factor(small_data):
    # RIGU's weights are 1/sigma^2 times rigu_weight_factor of the model as
    # read, three rows per pair, and stay fixed as the model moves.
    from smtbx.restraints import rigu_weight_factor
    _, graph, restraints = load(small_data, "sh2185_p212121")
    _, sites_cart, _, u_eq = restraints._arrays(graph.y)
    (term,) = [t for t in restraints.terms if t.kind == "RIGU"]
    idx = term.proxies.atom_index.reshape(-1, 2)
    assert (term.proxies.atom_op == -1).all()         # no symmetry mates in sh2185
    d = np.linalg.norm(sites_cart[idx[:, 0]] - sites_cart[idx[:, 1]], axis=1)
    expected = np.repeat(rigu_weight_factor(d, u_eq[idx]) / 0.004 ** 2, 3)
    np.testing.assert_allclose(term.proxies.weights, expected, rtol=1e-12)
    before = restraints.evaluate().weights
    x = graph.x + 1e-3
    np.testing.assert_array_equal(restraints.evaluate(x).weights, before)


def _stationarity(small_data, name, flat=None):
    """At the model as read: the decrease of data + restraint chi2 a
    Gauss-Newton step predicts, g^T N^-1 g (zero at a minimum of our
    objective), and the same with the restraints left out.  ``flat(proxies,
    symmetry)``, if given, replaces the FLAT proxies (another definition of
    FLAT on the same atoms)."""
    from smtbx.refine import LeastSquares
    from smtbx.shelx import read_shelx
    model = read_shelx(str(small_data / name / RES[name]).rsplit(".", 1)[0])
    least_squares = LeastSquares(model, restraints=None, n_threads=1)
    equations, _, _ = least_squares.build()
    normal, g = equations.normal_matrix(), equations.right_hand_side()
    data_only = g @ np.linalg.solve(normal, g)
    restraints = ShelxRestraints(model, least_squares.graph)
    if flat is not None:
        for term in restraints.terms:
            if term.kind == "FLAT":
                term.proxies = flat(term.proxies, restraints.symmetry)
    rows = restraints.evaluate()
    design = rows.design.toarray()
    n = design.shape[1]
    normal[:n, :n] += design.T @ (rows.weights[:, None] * design)
    g[:n] += design.T @ (rows.weights * rows.deltas)
    return g @ np.linalg.solve(normal, g), data_only, normal.shape[0]


@pytest.mark.parametrize("name, bound", [("ni_i43d", 15.0), ("p31c_sad", 8.0),
                                         ("sh2185_p212121", 15.0), ("gabipy_c2c", 40.0)])
def test_shelxl_model_is_near_a_minimum_of_our_objective(small_data, name, bound):
    # SHELXL's deposited models are converged (CIF shift/su 0.000), so with
    # SHELXL's restraint weights they should be close to a minimum of data +
    # restraint chi2.  The predicted Gauss-Newton decrease there, measured:
    # ni_i43d 10.4, p31c_sad 4.6, sh2185 9.2, gabipy_c2c 19.3 (without the
    # restraints 585, 99, 225, 1571).  With SADI's pairs weighted 1/sigma^2
    # each and RIGU's plain 1/sigma^2 it was 63, 13.6, 86 and 25851; with
    # RIGU's weight factor (p = 0.5) alone gabipy's is 9647, and 172 with
    # SADI's 2/(n sigma^2) too.  So these weights are (near) what SHELXL
    # minimised.
    decrease, data_only, _ = _stationarity(small_data, name)
    assert decrease < bound < data_only


def _flat_groups(proxies):
    """Atoms, sigma, operations and shifts of each FLAT group."""
    ptr = proxies.proxy_ptr
    cut = [slice(ptr[k], ptr[k + 1]) for k in range(len(proxies))]
    sigma = 1 / np.sqrt(proxies.weights[proxies.row_ptr[:-1]])
    return ([proxies.atom_index[c] for c in cut], sigma, [proxies.atom_op[c] for c in cut],
            [proxies.atom_shift[c] for c in cut])


def _flat_as_planes(proxies, symmetry):
    """The same FLAT groups as distances from the least-squares plane, sigma in A."""
    groups, sigma, ops, shifts = _flat_groups(proxies)
    return rt.PlanarityProxies(groups, [np.full(len(a), s) for a, s in zip(groups, sigma)],
                               ops, shifts, symmetry)


def _flat_sixth(proxies, symmetry):
    """The same FLAT volumes taken as the tetrahedron's volume, triple product / 6."""
    groups, sigma, ops, shifts = _flat_groups(proxies)
    return rt.FlatProxies(groups, 6 * sigma, ops, shifts, symmetry)


@pytest.mark.parametrize("name, factor", [("p31c_sad", 8.0), ("sh2185_p212121", 10.0)])
def test_flat_is_shelxl_triple_product_in_cubic_angstrom(small_data, name, factor):
    # At SHELXL's converged p31c_sad, FLAT 0.1 P1 N1 C3 H1 (an amine N with a
    # free H) is 0.89 A^3 from zero (|Z| 8.9): the data pull H1 out of the
    # plane and SHELXL's own FLAT holds it there.  Other readings of FLAT
    # (sigma on the tetrahedron's volume, triple product / 6, or on each
    # atom's distance from the least-squares plane in A) leave that model
    # far from a minimum; the triple product with sigma in A^3 (SHELXL
    # manual: "the units of s are A^3", the CHIV algebra) leaves it at one.
    # Predicted Gauss-Newton decrease, measured: p31c_sad 4.6 against 52
    # (/6) and 50 (planes); sh2185 9.2 against 198 and 138 (ni_i43d 10.4
    # against 20 and 18, gabipy_c2c 19.3 against 29 and 20).  The multiplier
    # on FLAT's 1/sigma^2 that fits these models best is 0.99, 1.11, 0.97
    # and 0.75 (p31c, sh2185, ni, gabipy); 1/36 would mean triple / 6.
    ours, _, _ = _stationarity(small_data, name)
    for other in (_flat_sixth, _flat_as_planes):
        assert _stationarity(small_data, name, flat=other)[0] > factor * ours


@pytest.mark.skipif(os.environ.get("SMTBX_SLOW") != "1",
                    reason="full refinement of gabipy_c2c: set SMTBX_SLOW=1")
def test_gabipy_refines_near_shelxl(small_data):
    # 1101 parameters, 10335 restraints.  SHELXL: R1 0.0752 (the issue asks
    # +-0.003).  Measured: 0.116 with RIGU's plain 1/sigma^2 and SADI's pairs
    # at 1/sigma^2 each; 0.0844 with RIGU's weight factor at cctbx's p = 0.5;
    # 0.0787 with SADI's 2/(n sigma^2) as well; 0.0756 (9 cycles) with
    # p = 0.35.  wR2: 0.2072 against SHELXL's 0.2063, with merged Fo² below
    # -σ raised to -σ as SHELXL does (smtbx.data).
    from smtbx.refine import LeastSquares
    from smtbx.shelx import read_shelx
    model = read_shelx(str(small_data / "gabipy_c2c" / RES["gabipy_c2c"]).rsplit(".", 1)[0])
    refinement = LeastSquares(model, n_threads=2).run(30)
    assert refinement.converged
    assert abs(refinement.figures.r1_gt - 0.0752) < 0.003
    assert abs(refinement.figures.wr2 - 0.2063) < 0.002

"""Reciprocal-space symmetry: asymmetric unit, multiplicities, phases,
merging, complete sets."""

import itertools

import gemmi
import numpy as np
import pytest

from sgtbx import (ReflectionError, SpaceGroup, UnitCell, complete_set, completeness, map_to_asu,
                   merge_equivalents)

SETTINGS = [entry.xhm() for entry in gemmi.spacegroup_table()]
HKL4 = np.array(list(itertools.product(range(-4, 5), repeat=3)), dtype=np.int32)


def _equivalents(sg, hkl, friedel=True):
    """All h R (and -h R) as (k, m, 3)."""
    images = np.einsum("mi,kij->kmj", hkl, sg.symmetry_rotations)
    return np.concatenate([images, -images]) if friedel else images


@pytest.mark.parametrize("xhm", SETTINGS)
def test_asu_matches_gemmi_and_is_unique(xhm):
    sg = SpaceGroup(xhm)
    entry = gemmi.find_spacegroup_by_name(xhm)
    asu = gemmi.ReciprocalAsu(entry)
    mapped = sg.map_to_asu(HKL4)
    ops = entry.operations()
    expected = np.array([asu.to_asu(h, ops)[0] for h in HKL4.tolist()], dtype=np.int32)
    np.testing.assert_array_equal(mapped.hkl, expected)
    # every equivalent of every index maps to the same representative
    images = _equivalents(sg, HKL4).reshape(-1, 3)
    again = sg.map_to_asu(images).hkl.reshape(-1, len(HKL4), 3)
    assert np.all(again == mapped.hkl[None, :, :])
    # the representative is one of the equivalents, as isym says
    s = (mapped.isym - 1) // 2
    sign = np.where(mapped.isym % 2 == 1, 1, -1)
    rebuilt = sign[:, None] * np.einsum("mi,mij->mj", HKL4, sg.symmetry_rotations[s])
    np.testing.assert_array_equal(rebuilt, mapped.hkl)


@pytest.mark.parametrize("xhm", ["P 1", "P 1 21 1", "P 43 21 2", "R 3 :H", "P 61 2 2", "I 41 3 2",
                                 "P -1", "C 1 2/c 1", "F d -3 m :1"])
def test_anomalous_mapping_and_multiplicities(xhm):
    sg = SpaceGroup(xhm)
    plus = sg.map_to_asu(HKL4, anomalous=True).hkl
    friedel = sg.map_to_asu(HKL4).hkl
    centric = sg.centric_flags(HKL4)
    # h and -h separate unless centric, and each maps to the Friedel ASU up to sign
    minus = sg.map_to_asu(-HKL4, anomalous=True).hkl
    same = np.all(plus == minus, axis=1)
    nonzero = np.any(HKL4 != 0, axis=1)
    np.testing.assert_array_equal(same[nonzero], centric[nonzero])
    assert np.all(np.all(plus == friedel, axis=1) | np.all(plus == -friedel, axis=1))
    # multiplicities equal the number of distinct equivalents
    for anomalous in (False, True):
        images = _equivalents(sg, HKL4, friedel=not anomalous)
        counts = [len({tuple(v) for v in images[:, i]}) for i in range(len(HKL4))]
        np.testing.assert_array_equal(sg.multiplicities(HKL4, anomalous=anomalous), counts)


def test_phase_shift_relation():
    # F(h_asu) from F(h) through the returned phase shift, on a random P1
    # structure expanded by the space-group operations
    sg = SpaceGroup("P 43 21 2")
    rng = np.random.default_rng(1)
    x = rng.random((5, 3))
    sites = np.concatenate([x @ r.T + t for r, t in zip(sg.rotations, sg.translations)])

    def fcalc(h):
        return np.exp(2j * np.pi * h @ sites.T).sum(axis=1)

    hkl = HKL4[np.any(HKL4 != 0, axis=1)]
    hkl = hkl[~sg.absent_flags(hkl)]
    mapped = sg.map_to_asu(hkl)
    f_h, f_asu = fcalc(hkl), fcalc(mapped.hkl)
    shifted = f_h * np.exp(-1j * mapped.phase_shift)
    expected = np.where(mapped.friedel_flipped, np.conj(shifted), shifted)
    np.testing.assert_allclose(f_asu, expected, atol=1e-9)


def test_restricted_phases():
    sg = SpaceGroup("P 1 21/c 1")
    rng = np.random.default_rng(2)
    x = rng.random((4, 3))
    sites = np.concatenate([x @ r.T + t for r, t in zip(sg.rotations, sg.translations)])
    hkl = HKL4[np.any(HKL4 != 0, axis=1)]
    hkl = hkl[~sg.absent_flags(hkl)]
    f = np.exp(2j * np.pi * hkl @ sites.T).sum(axis=1)
    phi = sg.restricted_phases(hkl)
    assert not np.any(np.isnan(phi))  # P21/c: every reflection is centric
    # the phase is phi or phi + pi
    residual = np.angle(f * np.exp(-1j * phi))
    strong = np.abs(f) > 1e-6
    assert np.all(np.minimum(np.abs(residual), np.pi - np.abs(residual))[strong] < 1e-8)
    acentric = SpaceGroup("P 21 21 21").restricted_phases([[1, 2, 3]])
    assert np.isnan(acentric[0])
    np.testing.assert_allclose(SpaceGroup("P 21 21 21").restricted_phases([[1, 0, 0]]), [np.pi / 2])


def test_centring_condition_is_evaluated():
    sg = SpaceGroup("I 41/a m d :2")
    flags = sg.absent_flags([[1, 0, 0], [2, 2, 0], [2, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(flags, [True, False, False, True])


def test_merge_equivalents():
    sg = SpaceGroup("P 1 21/c 1")
    cell = UnitCell(6, 7, 8, 90, 100, 90)
    unique = complete_set(cell, sg, 1.5)
    rng = np.random.default_rng(3)
    truth = rng.uniform(10, 100, len(unique))
    # three observations of each, as random equivalents, with known sigmas
    obs_hkl, obs_i, obs_s = [], [], []
    for k in range(3):
        r = sg.symmetry_rotations[rng.integers(0, 4, len(unique))]
        sign = rng.choice([-1, 1], len(unique))[:, None]
        obs_hkl.append(sign * np.einsum("mi,mij->mj", unique, r))
        sigma = rng.uniform(1, 3, len(unique))
        obs_i.append(truth + rng.normal(0, sigma))
        obs_s.append(sigma)
    hkl, values, sigmas = np.concatenate(obs_hkl), np.concatenate(obs_i), np.concatenate(obs_s)
    merged = merge_equivalents(sg, hkl, values, sigmas)
    np.testing.assert_array_equal(merged.hkl, unique)
    assert np.all(merged.multiplicity == 3)
    w = 1 / np.stack(obs_s) ** 2
    expected = (w * np.stack(obs_i)).sum(axis=0) / w.sum(axis=0)
    np.testing.assert_allclose(merged.values, expected, rtol=1e-12)
    np.testing.assert_allclose(merged.sigmas, 1 / np.sqrt(w.sum(axis=0)), rtol=1e-12)
    r_int = np.abs(np.stack(obs_i) - expected).sum() / np.stack(obs_i).sum()
    assert merged.r_int == pytest.approx(r_int, rel=1e-12)
    assert merged.r_sigma == pytest.approx(merged.sigmas.sum() / merged.values.sum(), rel=1e-12)


def test_merge_shelxl_rule_by_hand():
    sg = SpaceGroup("P 1")
    hkl = [[1, 2, 3], [-1, -2, -3], [1, 2, 3]]
    values = np.array([100.0, 90.0, 2.0])
    sigmas = np.array([5.0, 5.0, 1.0])
    merged = merge_equivalents(sg, hkl, values, sigmas, rule="shelxl")
    w = np.array([100 / 25, 90 / 25, 3 / 1])  # I > 3 sigma: I/sigma^2; else 3/sigma
    mean = (w * values).sum() / w.sum()
    internal = 1 / np.sqrt((1 / sigmas ** 2).sum())
    spread = np.abs(values - mean).sum() / (3 * np.sqrt(2))
    assert merged.values[0] == pytest.approx(mean, rel=1e-12)
    assert merged.sigmas[0] == pytest.approx(max(internal, spread), rel=1e-12)
    # anomalous: Friedel mates kept apart in P1
    apart = merge_equivalents(sg, hkl, values, sigmas, anomalous=True)
    assert len(apart.hkl) == 2


def test_merge_bad_input():
    sg = SpaceGroup("P 1")
    with pytest.raises(ReflectionError, match="observation 1"):
        merge_equivalents(sg, [[1, 0, 0], [0, 1, 0]], [1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ReflectionError, match="shape"):
        merge_equivalents(sg, [[1, 0, 0]], [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ReflectionError, match="rule"):
        merge_equivalents(sg, [[1, 0, 0]], [1.0], [1.0], rule="mean")
    with pytest.raises(ReflectionError, match=r"shape \(m, 3\)"):
        sg.absent_flags([[1, 2]])
    with pytest.raises(ReflectionError, match="integers"):
        sg.centric_flags([[1.5, 0, 0]])


@pytest.mark.parametrize("xhm,cell", [
    ("P 1 21/c 1", (7, 8, 9, 90, 105, 90)),
    ("C 1 2/c 1", (12, 8, 9, 90, 115, 90)),
    ("R -3 :H", (9, 9, 12, 90, 90, 120)),
    ("F d -3 m :2", (10, 10, 10, 90, 90, 90)),
    ("P 43 21 2", (7, 7, 11, 90, 90, 90)),
])
def test_complete_set_against_gemmi(xhm, cell):
    uc = UnitCell(*cell)
    sg = SpaceGroup(xhm)
    ours = complete_set(uc, sg, 1.2)
    theirs = gemmi.make_miller_array(uc.as_gemmi(), sg.gemmi_space_group, 1.2, unique=True)
    key = lambda a: {tuple(map(int, h)) for h in a}
    assert key(ours) == key(theirs)
    anomalous = complete_set(uc, sg, 1.2, anomalous=True)
    n_acentric = int((~sg.centric_flags(ours)).sum())
    assert len(anomalous) == len(ours) + n_acentric
    assert completeness(uc, sg, ours) == pytest.approx(1.0)
    assert completeness(uc, sg, ours[::2], d_min=1.2) == pytest.approx(len(ours[::2]) / len(ours))
    shell = complete_set(uc, sg, 1.2, d_max=2.0)
    d = uc.d_spacings(shell)
    assert np.all((d >= 1.2 - 1e-9) & (d <= 2.0 + 1e-9))


def test_merge_groups_sparse_indices_the_same_way():
    # indices spread over a box too large for the counting sort take the
    # sorting path; both give the same merged data
    sg = SpaceGroup("P 2 2 2")
    rng = np.random.default_rng(4)
    base = np.array([[1, 2, 3], [4, 0, 1], [2, 2, 2]])
    hkl = np.concatenate([base, base * [-1, 1, -1], base * [1, -1, -1]])
    values = rng.uniform(10, 20, len(hkl))
    sigmas = rng.uniform(1, 2, len(hkl))
    compact = merge_equivalents(sg, hkl, values, sigmas)
    far = np.array([[900, 900, 900]])
    sparse = merge_equivalents(sg, np.concatenate([hkl, far]), np.r_[values, 5.0], np.r_[sigmas, 1.0])
    np.testing.assert_array_equal(sparse.hkl[:-1], compact.hkl)
    np.testing.assert_allclose(sparse.values[:-1], compact.values, rtol=1e-15)
    np.testing.assert_array_equal(sparse.hkl[-1], [900, 900, 900])


def test_merge_shelxl_rule_with_friedel_pairs():
    sg = SpaceGroup("P 1 21 1")
    hkl = np.array([[1, 2, 3], [-1, 2, -3], [1, 2, 3],      # equivalent in P21
                    [2, 0, 1], [2, 0, 1],                    # weak
                    [1, 1, 1], [-1, -1, -1]])                # Friedel mates
    fo = np.array([100.0, 110.0, 90.0, 1.0, 2.0, 50.0, 60.0])
    sig = np.array([5.0, 5.0, 5.0, 1.0, 1.0, 2.0, 2.0])
    merged = merge_equivalents(sg, hkl, fo, sig, anomalous=True, rule="shelxl")
    out_hkl, mean, sigma, r_int = merged.hkl, merged.values, merged.sigmas, merged.r_int
    rows = {tuple(h): i for i, h in enumerate(out_hkl.tolist())}
    assert len(rows) == 4
    strong = rows[tuple(map_to_asu(sg, [[1, 2, 3]], True).hkl[0])]
    expected = (100**2 + 110**2 + 90**2) / 300.0          # weights I/σ²
    assert mean[strong] == pytest.approx(expected)
    spread = (abs(100 - expected) + abs(110 - expected) + abs(90 - expected)) / (3 * np.sqrt(2))
    assert spread > 5 / np.sqrt(3)
    assert sigma[strong] == pytest.approx(spread)
    weak = rows[tuple(map_to_asu(sg, [[2, 0, 1]], True).hkl[0])]
    assert mean[weak] == pytest.approx(1.5)                # weights 3/σ, equal
    assert sigma[weak] == pytest.approx(1 / np.sqrt(2))    # internal > spread 0.5
    merged_friedel = merge_equivalents(sg, hkl, fo, sig, anomalous=False, rule="shelxl").values
    assert len(merged_friedel) == 3
    deviations = sum(abs(v - expected) for v in (100, 110, 90)) + 1.0
    assert r_int == pytest.approx(deviations / (300 + 3))

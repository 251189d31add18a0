"""find_pairs against a brute-force search over every operation and lattice
shift, with and without symmetry."""

import itertools

import numpy as np
import pytest

import restraintstbx as rt


def brute_force(sites, cutoff, symmetry):
    """Every (i, j, op, shift) with 0 < |x_i - mate| < cutoff, as a set of
    canonical interactions: frozenset of the two ends' images, each end given
    by (atom, op, shift) and the pair by the smaller of the two orientations."""
    a = symmetry.orthogonalisation
    frac = sites @ symmetry.fractionalisation.T
    found = {}
    for i in range(len(sites)):
        for j in range(len(sites)):
            for k in range(symmetry.n_operations):
                image = symmetry.rotations[k] @ frac[j] + symmetry.translations[k]
                for shift in itertools.product(range(-3, 4), repeat=3):
                    d = np.linalg.norm((image + shift - frac[i]) @ a.T)
                    if 1e-6 < d < cutoff:
                        found.setdefault((min(i, j), max(i, j), round(d, 8)), 0)
                        found[(min(i, j), max(i, j), round(d, 8))] += 1
    return found


def canonical(pairs):
    out = {}
    for (i, j), d in zip(pairs.i_seqs, pairs.distances):
        key = (min(i, j), max(i, j), round(d, 8))
        out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_pairs_with_symmetry_match_brute_force(cases, seed):
    symmetry = cases.symmetry_p21c()
    rng = np.random.default_rng(seed)
    frac = rng.uniform(-0.2, 1.2, size=(7, 3))
    sites = frac @ symmetry.orthogonalisation.T
    cutoff = 4.5
    pairs = rt.find_pairs(sites, cutoff, symmetry)
    brute = brute_force(sites, cutoff, symmetry)
    ours = canonical(pairs)
    # every interaction once: a pair (i, g j) with i != j is seen twice by the
    # brute force (from i and from j), a self pair (i, g i) twice unless g is
    # its own inverse (then once); ours keeps one of each
    assert set(ours) == set(brute)
    for key, count in ours.items():
        i, j, _ = key
        assert brute[key] == 2 * count or (i == j and brute[key] in (count, 2 * count))
    # the reported operations and shifts reproduce the distances
    a = symmetry.orthogonalisation
    f = sites @ symmetry.fractionalisation.T
    for (i, j), (oi, oj), (si, sj), d in zip(pairs.i_seqs, pairs.sym_ops, pairs.shifts,
                                             pairs.distances):
        assert oi == -1 and not si.any()
        mate = f[j] + sj if oj < 0 else (symmetry.rotations[oj] @ f[j]
                                         + symmetry.translations[oj] + sj)
        assert np.linalg.norm((mate - f[i]) @ a.T) == pytest.approx(d, abs=1e-9)
    # and restraints built from them evaluate at those distances
    bump = rt.BumpProxies(pairs.i_seqs, cutoff, 1.0, pairs.sym_ops, pairs.shifts, symmetry)
    np.testing.assert_allclose(cutoff - bump.deltas(sites), pairs.distances, rtol=1e-12)


def test_pairs_without_symmetry_and_exclusions():
    rng = np.random.default_rng(3)
    sites = rng.uniform(0, 12, size=(300, 3))
    pairs = rt.find_pairs(sites, 3.0)
    d = np.linalg.norm(sites[:, None] - sites[None], axis=2)
    i, j = np.nonzero(np.triu(d < 3.0, 1))
    assert sorted(map(tuple, pairs.i_seqs)) == sorted(zip(i, j))
    exclude = pairs.i_seqs[:10][:, ::-1]
    fewer = rt.find_pairs(sites, 3.0, exclude=exclude)
    assert len(fewer) == len(pairs) - 10
    nb = rt.NonbondedProxies.from_pairs(fewer, 3.4)
    assert len(nb) == len(fewer)


def test_atom_on_a_special_position_is_not_its_own_neighbour(cases):
    symmetry = cases.symmetry_p21c()
    # the origin is an inversion centre of P 1 21/c 1
    sites = np.array([[0.0, 0.0, 0.0], [1.0, 1.2, 0.3]])
    pairs = rt.find_pairs(sites, 3.0, symmetry)
    assert not np.any((pairs.i_seqs[:, 0] == 0) & (pairs.i_seqs[:, 1] == 0)
                      & (pairs.distances < 1e-3))

"""Bad input: a typed error naming the proxy and what was expected."""

import numpy as np
import pytest

import restraintstbx as rt
from restraintstbx import RestraintError


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(6, 3)) * 2


def test_error_is_a_value_error():
    assert issubclass(RestraintError, ValueError)


def test_index_out_of_range(x):
    bonds = rt.BondProxies([[0, 1], [2, 9]], 1.5, 0.02)
    with pytest.raises(RestraintError, match=r"bond proxy 1: atom index 9 is out of range"):
        bonds.residual_sum(x)
    with pytest.raises(RestraintError, match=r"bond proxy 1: atom index 9"):
        bonds.design_rows(x)
    with pytest.raises(RestraintError, match=r"angle proxy 0: atom index -1 is negative"):
        rt.AngleProxies([[0, -1, 2]], 109.5, 2.0)


def test_too_few_atoms_in_a_plane():
    with pytest.raises(RestraintError, match=r"planarity proxy 1: needs at least 4 atoms, got 3"):
        rt.PlanarityProxies([[0, 1, 2, 3], [0, 1, 2]], 0.02)
    with pytest.raises(RestraintError, match=r"flat proxy 0: needs at least 4 atoms"):
        rt.FlatProxies([[0, 1, 2]])


@pytest.mark.parametrize("sigma", [0.0, -0.1, np.nan])
def test_sigma_not_positive(sigma):
    with pytest.raises(RestraintError, match=r"bond proxy 1: sigma must be positive"):
        rt.BondProxies([[0, 1], [1, 2]], 1.5, [0.02, sigma])
    with pytest.raises(RestraintError, match=r"planarity proxy 0: sigma must be positive"):
        rt.PlanarityProxies([[0, 1, 2, 3]], [[0.1, 0.1, sigma, 0.1]])
    with pytest.raises(RestraintError, match=r"rigu proxy 0: sigma must be positive"):
        rt.RiguProxies([[0, 1]], sigma)


def test_non_finite_coordinates_and_adps(x):
    x[4, 1] = np.nan
    bonds = rt.BondProxies([[0, 1], [2, 3], [3, 4]], 1.5, 0.02)
    with pytest.raises(RestraintError, match=r"bond proxy 2: atom 4 has non-finite sites_cart"):
        bonds.residual_sum(x)
    with pytest.raises(RestraintError, match=r"bond proxy 2: atom 4 has non-finite"):
        bonds.design_rows(x)
    dihedrals = rt.DihedralProxies([[0, 1, 2, 3], [1, 2, 3, 4]], 180.0, 10.0)
    with pytest.raises(RestraintError, match=r"dihedral proxy 1: atom 4 has non-finite"):
        dihedrals.residual_sum(x)
    planes = rt.PlanarityProxies([[0, 1, 2, 3], [1, 2, 4, 5]], 0.02)
    with pytest.raises(RestraintError, match=r"planarity proxy 1: atom 4 has non-finite"):
        planes.residual_sum(x)
    # an unused atom may be anything
    assert rt.BondProxies([[0, 1]], 1.5, 0.02).residual_sum(x) > 0
    u = np.tile([0.02, 0.02, 0.02, 0, 0, 0], (6, 1))
    u[1, 3] = np.inf
    with pytest.raises(RestraintError, match=r"adp similarity proxy 0: atom 1 has non-finite u_cart"):
        rt.AdpSimilarityProxies([[0, 1]]).residual_sum(np.zeros((6, 3)), u)


def test_degenerate_geometry_names_the_proxy(x):
    x[3] = x[2]
    with pytest.raises(RestraintError, match=r"bond proxy 1 \(atoms 2 3\): degenerate"):
        rt.BondProxies([[0, 1], [2, 3]], 1.5, 0.02).residual_sum(x)
    u = np.tile([0.02, 0.02, 0.02, 0, 0, 0], (6, 1))
    u[2] = [0.02, 0.02, -0.01, 0, 0, 0]
    with pytest.raises(RestraintError, match=r"adp volume similarity proxy 0 .*positive definite"):
        rt.AdpVolumeSimilarityProxies([[1, 2]], 0.1).residual_sum(x, u)


def test_symmetry_input_checks():
    with pytest.raises(RestraintError, match=r"bond proxy 0: a symmetry mate needs a Symmetry"):
        rt.BondProxies([[0, 1]], 1.5, 0.02, sym_ops=[[-1, 1]])
    symmetry = rt.Symmetry(np.eye(3) * 10, [np.eye(3, dtype=int)], [[0, 0, 0]])
    with pytest.raises(RestraintError, match=r"bond proxy 1: operation index 3 is not in 0..0"):
        rt.BondProxies([[0, 1], [1, 2]], 1.5, 0.02, sym_ops=[[-1, 0], [-1, 3]],
                       symmetry=symmetry)
    with pytest.raises(RestraintError, match=r"orthogonalisation"):
        rt.Symmetry(np.zeros((3, 3)), [np.eye(3, dtype=int)], [[0, 0, 0]])
    with pytest.raises(RestraintError, match=r"frame='frac' needs a Symmetry"):
        rt.BondProxies([[0, 1]], 1.5, 0.02).design_rows(np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]],
                                                        frame="frac")


def test_shape_checks(x):
    with pytest.raises(RestraintError, match=r"bond: atom indices must be an \(m, 2\) array"):
        rt.BondProxies([[0, 1, 2]], 1.5, 0.02)
    with pytest.raises(RestraintError, match=r"bond: sites_cart must have shape \(n, 3\)"):
        rt.BondProxies([[0, 1]], 1.5, 0.02).residual_sum(x[:, :2])
    with pytest.raises(RestraintError, match=r"gradients_out must be a float64 array"):
        rt.BondProxies([[0, 1]], 1.5, 0.02).residual_sum(x, np.zeros((5, 3)))
    with pytest.raises(RestraintError, match=r"rigid bond: needs u_cart"):
        rt.RigidBondProxies([[0, 1]]).residual_sum(x, None)
    with pytest.raises(RestraintError, match=r"bond similarity proxy 0: expected \(k, 2\) atom pairs"):
        rt.BondSimilarityProxies([[[0, 1]]], 0.02)
    with pytest.raises(RestraintError, match=r"dihedral proxy 0: periodicity must be a positive integer"):
        rt.DihedralProxies([[0, 1, 2, 3]], 60.0, 5.0, periodicity=1.5)

"""Restraints of a deposited protein (1byz) from gemmi's monomer-library
topology: every value agrees with gemmi's own calculation, and the model is
close to ideal."""

import gemmi
import numpy as np
import pytest

import restraintstbx as rt


@pytest.fixture(scope="module")
def model(macro_data, monomer_data):
    st = gemmi.read_structure(str(macro_data / "1byz" / "1byz.pdb"))
    st.setup_entities()
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    st.assign_serial_numbers()
    monlib = gemmi.read_monomer_lib(str(monomer_data), st[0].get_all_residue_names())
    topo = gemmi.prepare_topology(st, monlib, h_change=gemmi.HydrogenChange.NoChange,
                                  warnings=None, ignore_unknown_links=True)
    sites = np.array([[c.atom.pos.x, c.atom.pos.y, c.atom.pos.z] for c in st[0].all()])
    labels = [f"{c.residue.name}{c.residue.seqid.num}/{c.atom.name}" for c in st[0].all()]
    # the topology points into the structure and into the monomer library's
    # restraint values: keep all three alive (a freed monomer library left
    # the bond targets reading garbage once other tests had run)
    return (st, monlib), topo, sites, labels


def index(restraint):
    return [a.serial - 1 for a in restraint.atoms]


def test_values_match_gemmi_topology(model):
    _, topo, sites, labels = model
    bonds = rt.BondProxies([index(b) for b in topo.bonds], [b.restr.value for b in topo.bonds],
                           [b.restr.esd for b in topo.bonds])
    expected = [b.restr.value - b.calculate() for b in topo.bonds]
    np.testing.assert_allclose(bonds.deltas(sites), expected, rtol=0, atol=1e-12)

    angles = rt.AngleProxies([index(a) for a in topo.angles],
                             [a.restr.value for a in topo.angles],
                             [a.restr.esd for a in topo.angles])
    expected = [a.restr.value - np.degrees(a.calculate()) for a in topo.angles]
    np.testing.assert_allclose(angles.deltas(sites), expected, rtol=0, atol=1e-9)

    tors = [t for t in topo.torsions if t.restr.period > 0]
    dihedrals = rt.DihedralProxies([index(t) for t in tors], [t.restr.value for t in tors],
                                   [t.restr.esd for t in tors],
                                   periodicity=[t.restr.period for t in tors])
    period = np.array([360.0 / t.restr.period for t in tors])
    d = np.array([t.restr.value - np.degrees(t.calculate()) for t in tors])
    expected = d - period * np.floor(d / period + 0.5)
    np.testing.assert_allclose(dihedrals.deltas(sites), expected, rtol=0, atol=1e-9)

    chir = rt.ChiralityProxies([[c.atoms[i].serial - 1 for i in range(4)] for c in topo.chirs],
                               0.0, 0.2)
    np.testing.assert_allclose(-chir.deltas(sites), [c.calculate() for c in topo.chirs],
                               rtol=1e-12, atol=1e-12)

    planes = rt.PlanarityProxies([index(p) for p in topo.planes], 0.02)
    expected = []
    for p in topo.planes:
        coeff = gemmi.find_best_plane(p.atoms)
        expected += [gemmi.get_distance_from_plane(a.pos, coeff) for a in p.atoms]
    np.testing.assert_allclose(np.abs(planes.deltas(sites)), np.abs(expected), atol=1e-9)

    # a refined structure is close to ideal
    stats = bonds.statistics(sites, labels)
    assert stats.rmsd < 0.05 and stats.rms_z < 3.0
    assert stats.worst[0].atoms[0] in labels
    rset = rt.RestraintSet([bonds, angles, dihedrals, chir, planes])
    g = np.zeros_like(sites)
    total = rset.residual_sum(sites, gradients_out=g)
    rows = rset.design_rows(sites)
    assert total == pytest.approx(np.sum(rows.weights * rows.deltas ** 2), rel=1e-12)
    np.testing.assert_allclose(-2 * rows.sites.T @ (rows.weights * rows.deltas), g.reshape(-1),
                               rtol=1e-9, atol=1e-9 * np.abs(g).max())

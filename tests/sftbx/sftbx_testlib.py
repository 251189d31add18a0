"""Shared helpers of the sftbx tests: space groups and cells as the kernels want
them (taken from gemmi, independently of sgtbx), random structures with atoms
on special positions, and gemmi's structure-factor calculators as oracles."""

import itertools

import gemmi
import numpy as np
import sftbx


class GemmiSymmetry:
    """A space group with the attributes sftbx reads from sgtbx.SpaceGroup,
    built from gemmi's operations (numerators over 24)."""

    def __init__(self, name):
        sg = gemmi.SpaceGroup(name)
        ops = sg.operations()
        self.name = name
        self.centring_vectors = np.array(ops.cen_ops, dtype=np.float64) / 24.0
        sym = [(np.array(op.rot) // 24, np.array(op.tran) / 24.0) for op in ops.sym_ops]
        self.rotations = np.array([r for r, _ in sym for _ in self.centring_vectors], np.int64)
        self.translations = np.array([(t + c) % 1.0 for _, t in sym
                                      for c in self.centring_vectors])
        self.order_z = len(self.rotations)
        self.is_centric = bool(ops.is_centrosymmetric())
        self.inversion_translation = None
        if self.is_centric:
            for r, t in zip(self.rotations, self.translations):
                if (r == -np.eye(3, dtype=int)).all():
                    self.inversion_translation = t
                    break
            proper = [(r, t) for r, t in sym if round(np.linalg.det(r)) == 1]
        else:
            proper = sym
        self.primitive_rotations = np.array([r for r, _ in proper], np.int32)
        self.primitive_translations = np.array([t for _, t in proper])

    def all_operations(self):
        return self.rotations, self.translations


class Cell:
    """A unit cell with the attributes sftbx reads from sgtbx.UnitCell."""

    def __init__(self, *parameters):
        self.gemmi = gemmi.UnitCell(*parameters)
        self.parameters = parameters
        frac = np.array(self.gemmi.frac.mat.tolist())
        self.reciprocal_metric = frac @ frac.T
        self.reciprocal_lengths = np.sqrt(np.diag(self.reciprocal_metric))


# Space groups of the acceptance list, with a cell that fits each.
GROUPS = {
    "P1": ("P 1", (7.1, 8.3, 9.2, 78.0, 85.0, 96.0)),
    "P-1": ("P -1", (7.1, 8.3, 9.2, 78.0, 85.0, 96.0)),
    "P21/c": ("P 1 21/c 1", (7.4, 9.1, 10.3, 90, 104.5, 90)),
    "C2/c": ("C 1 2/c 1", (12.1, 7.3, 10.6, 90, 111.0, 90)),
    "P212121": ("P 21 21 21", (6.3, 8.9, 11.2, 90, 90, 90)),
    "I41/amd": ("I 41/a m d:1", (8.1, 8.1, 12.9, 90, 90, 90)),
    "R-3": ("R -3:H", (11.2, 11.2, 7.9, 90, 90, 120)),
    "Fm-3m": ("F m -3 m", (9.3, 9.3, 9.3, 90, 90, 90)),
    "P63/mmc": ("P 63/m m c", (6.2, 6.2, 9.8, 90, 90, 120)),
    "Fd-3m:1": ("F d -3 m:1", (10.2, 10.2, 10.2, 90, 90, 90)),
    "Fd-3m:2": ("F d -3 m:2", (10.2, 10.2, 10.2, 90, 90, 90)),
}


def site_group(group, site, tol=1e-6):
    """Rotations of the operations mapping ``site`` onto itself (mod 1)."""
    rots, trans = group.all_operations()
    d = rots @ site + trans - site
    return rots[np.abs(d - np.round(d)).max(axis=1) < tol]


def multiplicity(group, site):
    return group.order_z // len(site_group(group, site))


_SPECIAL = {}


def special_sites(group):
    """One fixed point per site-group order > 1: orbit averages of a random
    point under operations (with lattice shifts) whose powers close on the
    identity without a translation."""
    if group.name in _SPECIAL:
        return _SPECIAL[group.name]
    rng = np.random.default_rng(7)
    found = {}
    identity = np.eye(3, dtype=int)
    seen = set()
    for r, t in zip(*group.all_operations()):
        if (r == identity).all() or r.tobytes() in seen:
            continue
        seen.add(r.tobytes())
        # all operations with this rotation, each with every lattice shift
        same = [tt for rr, tt in zip(*group.all_operations()) if (rr == r).all()]
        for t0, e in itertools.product(same, itertools.product((-1, 0, 1), repeat=3)):
            tt = t0 + e
            n, rn, tn = 1, r.copy(), tt.copy()
            while not (rn == identity).all():
                tn = r @ tn + tt
                rn = r @ rn
                n += 1
            if np.abs(tn).max() > 1e-9:
                continue
            orbit, y = [], rng.random(3)
            for _ in range(n):
                orbit.append(y)
                y = r @ y + tt
            site = np.mean(orbit, axis=0) % 1.0
            order = len(site_group(group, site))
            if order > 1 and order not in found:
                found[order] = site
    _SPECIAL[group.name] = [found[k] for k in sorted(found)]
    return _SPECIAL[group.name]


def image_distance(group, cell, site):
    """Shortest distance (Angstrom) from ``site`` to a symmetry image of
    itself other than by the identity."""
    rots, trans = group.all_operations()
    images = rots[1:] @ site + trans[1:]
    d = images - site
    d -= np.round(d)
    orth = np.array(cell.gemmi.orth.mat.tolist())
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    if len(d) == 0:
        return np.inf
    cart = ((d[:, None, :] + shifts[None]) @ orth.T)
    return float(np.sqrt((cart**2).sum(-1)).min())


def random_structure(group, cell, n_atoms=7, aniso=True, seed=0, special=True,
                     elements=("C", "N", "O", "S", "Fe", "Cl", "H")):
    """Random atoms (some on special positions) with ADPs obeying the site
    symmetry; returns (Scatterers, multiplicities)."""
    rng = np.random.default_rng(seed)
    sites = []
    for _ in range(10000):  # general positions clear of sgtbx's 0.5 A special-site tolerance
        site = rng.random(3)
        if image_distance(group, cell, site) > 0.6:
            sites.append(site)
        if len(sites) == n_atoms:
            break
    else:
        raise RuntimeError(f"cannot place {n_atoms} general atoms in {group.name}")
    if special:
        sp = special_sites(group)
        for i, s in enumerate(sp[:max(1, n_atoms // 2)]):
            sites[i] = s
    sites = np.array(sites)
    n = len(sites)
    els = [elements[i % len(elements)] for i in range(n)]
    occ = rng.uniform(0.5, 1.0, n)
    u_iso = rng.uniform(0.01, 0.04, n)
    u_star = np.zeros((n, 6))
    flags = np.zeros(n, bool)
    inv_n = np.diag(cell.reciprocal_lengths)
    for i in range(n):
        if aniso and (i % 3 != 2):
            flags[i] = True
            a = rng.normal(size=(3, 3)) * 0.07
            u_cif = a @ a.T + 0.012 * np.eye(3)
            u = inv_n @ u_cif @ inv_n
            rots = site_group(group, sites[i])
            u = sum(r @ u @ r.T for r in rots) / len(rots)
            u_star[i] = [u[0, 0], u[1, 1], u[2, 2], u[0, 1], u[0, 2], u[1, 2]]
    fp = rng.uniform(-0.5, 0.3, n)
    scat = sftbx.Scatterers(els, sites, occ, u_iso, u_star=u_star, aniso=flags, fp=fp,
                            labels=[f"{e}{i}" for i, e in enumerate(els)])
    mult = np.array([multiplicity(group, s) for s in sites], dtype=np.float64)
    return scat, mult


def random_hkl(cell, d_min=1.0, n=None, seed=0, hmax=None):
    """Miller indices with d >= d_min (a random subset of n when given)."""
    g = cell.reciprocal_metric
    hmax = hmax or [int(1 / (d_min * np.sqrt(1 / np.linalg.inv(g)[i, i]))) + 1 for i in range(3)]
    rng = np.random.default_rng(seed)
    grid = np.array(list(itertools.product(*[range(-k, k + 1) for k in hmax])), dtype=np.int32)
    s2 = np.einsum("mi,ij,mj->m", grid, g, grid)
    hkl = grid[(s2 > 0) & (s2 <= 1 / d_min**2)]
    if n is not None and n < len(hkl):
        hkl = hkl[rng.choice(len(hkl), n, replace=False)]
    return hkl


def gemmi_small_structure(group, cell, scat, mult):
    """The structure as a gemmi.SmallStructure, occupancies divided by
    |G_site| since gemmi sums over all operations."""
    small = gemmi.SmallStructure()
    small.cell = cell.gemmi
    small.spacegroup_hall = gemmi.SpaceGroup(group.name).hall
    small.determine_and_set_spacegroup("H")
    n_mat = np.diag(1 / cell.reciprocal_lengths)
    for i in range(len(scat)):
        site = gemmi.SmallStructure.Site()
        site.label = scat.labels[i]
        site.element = gemmi.Element(scat.elements[i])
        site.fract = gemmi.Fractional(*scat.sites_frac[i])
        site.occ = scat.occupancies[i] * mult[i] / group.order_z
        if scat.aniso[i]:
            u = scat.u_star[i]
            m = np.array([[u[0], u[3], u[4]], [u[3], u[1], u[5]], [u[4], u[5], u[2]]])
            c = n_mat @ m @ n_mat
            site.aniso = gemmi.SMat33d(c[0, 0], c[1, 1], c[2, 2], c[0, 1], c[0, 2], c[1, 2])
            site.u_iso = np.trace(c) / 3
        else:
            site.u_iso = scat.u_iso[i]
        small.sites.append(site)
    small.setup_cell_images()
    return small

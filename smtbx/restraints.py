"""SHELXL's restraints through restraintstbx, as rows in the graph's x.

:class:`ShelxRestraints` turns every :class:`smtbx.model.Restraint` the
reader expanded (and every SUMP, and the floating origin of a polar space
group) into restraintstbx proxies, built once from the model as read, and
evaluates them at the graph's current y: design rows in x (D_y J, CSR),
Δ = target − value and weights 1/σ² for ``lstbx.NormalEquations.add_restraints``.

SHELXL's conventions (SHELXL manual, the restraint instructions; σ's with
the defaults and DEFS already applied by the reader):

* DFIX d, DANG d: one distance per pair; a negative d restrains the
  distance to be at least |d| (one-sided, as BUMP).
* SADI (and SADI_class / SADI_* pooled by the reader): the distances of a set
  restrained to be equal, as the n(n − 1)/2 differences d_l − d_m = 0, each
  with weight 2/(n σ²), so that Σ w Δ² = 2 Σ (d_l − mean)² / σ² (σ/√2 on each
  distance's deviation from the mean); a distance between atoms in
  different non-zero PARTs is left out.  The count is SHELXL's n(n − 1)/2
  (ni_i43d's 194 and gabipy_c2c's 10335 restraints).  The weights are fitted
  to SHELXL's converged models, not documented: at gabipy_c2c and ni_i43d the
  multipliers on 1/σ² per pair that make the deposited model stationary
  (data + restraints) come out close to 2/n for every set (n from 2 to 72;
  e.g. 0.018-0.025 for the three n = 72 sets, 0.68 for ni_i43d's n = 3), and
  DFIX, DELU and FLAT, whose weights are not in doubt, at 0.95-1.1.  The
  restraint χ² SHELXL's CIF implies for ni_i43d (393.6) matches 1/σ² per
  pair (393.2) instead, and 271 with 2/n: SHELXL's printed restrained GoF
  apparently counts each pair with 1/σ², its least squares does not.
* SAME: the 1,2 and 1,3 distances among the reference atoms (from the
  connectivity with FREE and BIND applied, hydrogen atoms ignored) are made
  equal to the corresponding distances of each following group.  As SHELXL
  lists them after END ("SADI restraints, including those derived from
  SAME"), distances linked by a SADI or by any chain of SAME correspondences
  form one set (σ of its first distance: the SADI's, s1 for 1,2 and s2 for
  1,3 distances); cc_invtwin's 45 listed sets are reproduced exactly.
* FLAT: the p − 3 chiral volumes of (a1, a2, a3, ak) restrained to zero:
  the triple product (the CHIV algebra, not the tetrahedron's volume, which
  is a sixth of it), σ in Å³.  SHELXL's converged models are stationary with
  this and not with σ on a sixth of it or on distances from the
  least-squares plane (tests/smtbx/test_restraints.py): p31c_sad's
  FLAT 0.1 P1 N1 C3 H1 stays 0.89 Å³ from zero (|Z| 8.9) there, the data
  holding the amine H out of the plane against it.
* CHIV V: the chiral volume of each named atom with its three non-hydrogen
  neighbours (in connectivity order, nearest first).
* DELU s1 s2 (Hirshfeld rigid bond) and RIGU s1 s2: the bonds (1,2, σ s1)
  and 1,3 pairs (σ s2) from the connectivity between anisotropic atoms named
  on the instruction; symmetry mates included.
* A zero σ switches the restraints it applies to off (SIMU, ISOR, DELU,
  RIGU), as the SHELXL manual says for SIMU.
* SIMU s st dmax: every pair of named non-hydrogen atoms closer than dmax
  (from the coordinates, not the connectivity); σ st when either atom is
  terminal or unbonded (at most one non-hydrogen neighbour).  Pairs across
  alternative components (different non-zero PARTs) are included, as the
  SHELXL manual says ("the use of a distance criterion ... enables the
  restraints to be applied automatically to partially overlapping disordered
  atoms") and SHELXL's counts confirm: twin5_p21n's 7497 restraints are
  reproduced exactly with them and miss 846 (141 pairs) without;
  ``simu_across_parts=False`` leaves them out.
  Two anisotropic atoms: their six U_ij made equal; otherwise U_iso (U_eq of
  an anisotropic atom) made equal.
* ISOR s st: the U_ij of each named anisotropic atom restrained towards
  isotropy; σ st for a terminal or unbonded atom.
* BUMP s: the one-sided anti-bump restraint d ≥ d_min for close pairs of
  non-hydrogen atoms not joined by up to three bonds (see :func:`bump_pairs`
  for the pair and distance rule, which is this module's).
* SUMP c σ c1 m1 ...: Σ c_i fv(m_i) = c, a row in x directly.
* Polar space groups: the origin along each polar direction is held by a
  restraint on the centre of gravity weighted by Z² times the atom's share
  of the cell (occupancy / |site group|) (Flack & Schwarzenbach 1988),
  target its starting value; one restraint per direction.  Its σ
  (:data:`ORIGIN_SIGMA`) is small beside the coordinates' s.u.'s, so the
  origin adds next to nothing to the s.u.'s along the polar axis, as in
  SHELXL's.

Restraint weights and the goodness of fit (DESIGN.md §6): SHELXL minimises
Σ w (Fo² − Fc²)² + Σ (1/σ²) Δ² with the restraint weights 1/σ² as given; the
X-ray weights are meant to be on an absolute scale (a converged weighting
scheme gives GoF ≈ 1), so no factor is applied between the two sums.  SHELXL's
restrained GoF, [Σ w r² + Σ Δ²/σ²] / (m + n_r − p), uses these unscaled weights
(DESIGN.md §5).  This is :data:`WEIGHT_RULE` and what
:meth:`ShelxRestraints.evaluate` returns by default (``weight_scale=1``).  cctbx's
smtbx instead multiplies the restraint weights by Σ w r² / (m − p) of the data,
computed once at the first cycle (its least_squares.py, citing the SHELX
manual); :func:`restraint_weight_scale` gives that factor and
``evaluate(weight_scale=...)`` applies it, for a driver that wants that rule
(it then states it in the log instead of :data:`WEIGHT_RULE`).

Counting (the "n restraints" SHELXL prints): one per restraint row except
RIGU (three rows, counted three) and SIMU/ISOR on anisotropic atoms (six
rows, counted six), i.e. one per DFIX and DANG distance, n(n − 1)/2 per
SADI/SAME set of n distances, one per volume of FLAT and CHIV, per DELU
pair, three per RIGU pair, six per SIMU pair of anisotropic atoms (one
otherwise), six per ISOR atom, one per BUMP pair, per SUMP and per
floating-origin direction.  A pair named by several instructions of one kind
(sh2185's two overlapping RIGU lists) is restrained once.  Where the counts
still differ from SHELXL's tests/smtbx/test_restraints.py says by how much.

RIGU weights: the three rows of a pair (the bond-frame ΔU13, ΔU23, ΔU33,
Thorn, Dittrich & Sheldrick 2012) carry 1/σ² times
:func:`rigu_weight_factor`, p² / ((p² + U_eq,i + U_eq,j) d²), the form
cctbx's adp_restraints/rigu.h applies citing that paper (with p = 0.5 Å).
The factor is taken from the model as read and then held fixed (a weight
that follows the model is not a least-squares weight: the Gauss-Newton step
is then no descent direction and the refinement stalls).  p =
:data:`RIGU_P` = 0.35 Å is fitted, not documented: with the stationarity fit
described under SADI, cctbx's p = 0.5 leaves the RIGU multiplier at 0.64 for
gabipy_c2c (1,2 and 1,3 pairs alike, so the 1/d² is right), p = 0.35 gives
0.93 and 0.95 (p31c_sad 1.25 and 1.02, poorly determined there), and the
Gauss-Newton decrease predicted at the deposited gabipy model falls from 172
to 19 (p31c_sad 4.6 either way, sh2185 12.1 to 9.2); forms without the 1/d²,
with 1/d, or squared fit far worse.  With plain 1/σ² our RIGU χ² at SHELXL's
deposited models was 25-29 times the share SHELXL's CIF figures leave to it,
and gabipy_c2c refined to R1 0.116 (now 0.0756; SHELXL 0.0752).
"""

from dataclasses import dataclass

import gemmi
import numpy as np
import scipy.sparse as sp

import restraintstbx as rt

from .connectivity import Connectivity, Neighbour
from . import model as m

#: How restraint weights relate to the data weights (stated in the log).
WEIGHT_RULE = ("restraint weights 1/sigma^2 as given, not scaled by the goodness of fit "
               "(SHELXL: the data weights are on an absolute scale)")

#: BUMP: d_min = r_vdW(i) + r_vdW(j) - BUMP_MARGIN (Angstrom); see bump_pairs.
BUMP_MARGIN = 0.36

#: sigma (Angstrom) of the floating-origin restraint on the weighted centre of gravity.
#: 1e-3 left the centre's own uncertainty in every polar coordinate: sucrose's y
#: s.u.'s were 4.5 times SHELXL's (x and z 1.0); with 1e-4 they are 1.04 (the limit,
#: 0.95, from 1e-5 down).  Smaller is not better: the riding H move the centre
#: non-linearly, and with 1e-5 that term decides the trial steps (p31c_sad then
#: stalls on a methyl torsion, max shift/s.u. 0.35 for 30 cycles).
ORIGIN_SIGMA = 1e-4

#: RIGU: p (Angstrom) of the weight factor p^2 / ((p^2 + Ueq_i + Ueq_j) d^2), fitted to
#: SHELXL's converged models (cctbx uses 0.5); see the module notes and rigu_weight_factor.
RIGU_P = 0.35


def rigu_weight_factor(distances, u_eq_pairs):
    """The factor on 1/σ² of a RIGU pair's three rows: p² / ((p² + U_eq,i +
    U_eq,j) d²) with p = :data:`RIGU_P`, d the pair's distance (Å) and the
    U_eq's (Å²) (the form of Thorn, Dittrich & Sheldrick 2012 as cctbx's
    adp_restraints/rigu.h applies it; p fitted, see the module notes).  Larger
    and more distant displacements are restrained more loosely.

    Parameters
    ----------
    distances : float64 (m,)
    u_eq_pairs : float64 (m, 2)

    Returns
    -------
    float64 (m,)
    """
    d = np.asarray(distances, dtype=np.float64)
    u = np.asarray(u_eq_pairs, dtype=np.float64)
    return RIGU_P ** 2 / ((RIGU_P ** 2 + u[:, 0] + u[:, 1]) * d ** 2)


def restraint_weight_scale(chi2_data, n_data, n_parameters):
    """cctbx smtbx's alternative rule: the factor Σ w r² / (m − p) by which it
    multiplies restraint weights (1.0 when m ≤ p)."""
    dof = n_data - n_parameters
    return float(chi2_data) / dof if dof > 0 else 1.0


@dataclass
class RestraintRows:
    """Restraints at the current model, for lstbx.

    Attributes
    ----------
    design : scipy.sparse.csr_matrix, float64 (n_rows, n_x)
        d value / d x (the graph's independent parameters).
    deltas : float64 (n_rows,)
        target − value.
    weights : float64 (n_rows,)
        1/σ².
    chi2 : float
        Σ w Δ².
    n_restraints : int
        As SHELXL counts them.
    """
    design: sp.csr_matrix
    deltas: np.ndarray
    weights: np.ndarray
    chi2: float
    n_restraints: int


@dataclass
class _Term:
    kind: str            # SHELXL name
    proxies: object      # restraintstbx proxies (or _DistanceSets for SADI)
    count: int           # restraints as SHELXL counts them
    adp: str = None      # None, "u_cart" or "u_eq"


class _Bonding:
    """The connectivity with SHELXL's FREE (remove a bond) and BIND (add a
    bond between two atoms as given) applied, by atom name."""

    def __init__(self, model, connectivity):
        self.conn = connectivity
        self.model = model
        self.freed, self.bound = set(), {}
        for ins in model.instructions.other:
            if ins.name not in ("FREE", "BIND") or len(ins.args) != 2:
                continue
            try:
                i, j = (self._index(a) for a in ins.args)
            except KeyError:
                continue
            if ins.name == "FREE":
                self.freed |= {(i, j), (j, i)}
            else:
                self.bound.setdefault(i, set()).add(j)
                self.bound.setdefault(j, set()).add(i)
        self._cache = {}

    def _index(self, name):
        label, _, residue = name.partition("_")
        return self.model.index(label, int(residue) if residue.isdigit() else 0)

    def neighbours(self, i):
        if i not in self._cache:
            found = [nb for nb in self.conn.neighbours(i) if (i, nb.index) not in self.freed]
            x = self.model.sites_frac
            for j in sorted(self.bound.get(i, ())):
                if any(nb.index == j and nb.is_identity for nb in found):
                    continue
                d = x[j] - x[i]
                found.append(Neighbour(j, np.eye(3, dtype=np.int32), np.zeros(3),
                                       float(np.sqrt(d @ self.model.cell.metric @ d))))
            self._cache[i] = sorted(found, key=lambda nb: nb.distance)
        return self._cache[i]


class _DistanceSets:
    """SADI sets as SHELXL restrains them: every pair (l, m) of distances of
    a set gives the row d_l − d_m (target 0) with weight 2/(n σ²), n(n − 1)/2
    rows for n distances, so that Σ w Δ² = (2/σ²) Σ (d_l − mean)² (twice the
    weighted variance restraintstbx's BondSimilarityProxies would give).
    Built from bond rows and the difference map C (one +1 and one −1 per
    row): D = C D_bond."""

    adp = None
    has_sites = True

    def __init__(self, groups, sigmas, symmetry, pairs_arrays):
        flat = [p for g in groups for p in g]
        idx, ops, shifts = pairs_arrays(flat)
        self.bonds = rt.BondProxies(idx, 0.0, 1.0, ops, shifts, symmetry)
        self.groups = groups
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
        first, second, set_of = [], [], []
        for k, g in enumerate(groups):
            lo, hi = np.triu_indices(len(g), 1)
            first.append(starts[k] + lo)
            second.append(starts[k] + hi)
            set_of.append(np.full(lo.size, k))
        self.first, self.second = np.concatenate(first), np.concatenate(second)
        self.set_of = np.concatenate(set_of)
        m = self.first.size
        rows = np.repeat(np.arange(m), 2)
        cols = np.column_stack([self.first, self.second]).reshape(-1)
        vals = np.tile([1.0, -1.0], m)
        self.difference = sp.csr_matrix((vals, (rows, cols)), shape=(m, len(flat)))
        sizes = np.array([len(g) for g in groups], dtype=np.float64)
        self.weights = 2.0 / (sizes[self.set_of] * self.sigmas[self.set_of] ** 2)

    def __len__(self):
        return len(self.groups)

    def design_rows(self, sites_cart, frame="cart"):
        r = self.bonds.design_rows(sites_cart, frame=frame)
        # bond deltas are 0 - d, so C (0 - d) = d_m - d_l = 0 - (d_l - d_m)
        return rt.DesignRows(sites=(self.difference @ r.sites).tocsr(),
                             deltas=self.difference @ r.deltas, weights=self.weights.copy())

    def statistics(self, sites_cart, labels=None, n_worst=5):
        deltas = self.design_rows(sites_cart).deltas
        z = np.abs(deltas) * np.sqrt(self.weights)
        worst = []
        for k in np.argsort(-z, kind="stable")[:n_worst]:
            atoms = tuple(self.bonds.proxy_atoms(self.first[k])) + tuple(
                self.bonds.proxy_atoms(self.second[k]))
            worst.append(rt.proxies.WorstProxy(int(self.set_of[k]),
                                               tuple(labels[i] if labels else int(i) for i in atoms),
                                               deltas[k:k + 1].copy(), float(z[k])))
        return rt.Statistics("SADI", len(self), deltas.size,
                             float(np.sqrt(np.mean(deltas ** 2))) if deltas.size else 0.0,
                             float(np.sqrt(np.mean(z ** 2))) if deltas.size else 0.0, worst)


class ShelxRestraints:
    """Every restraint of a model as restraintstbx proxies, evaluated in x.

    Parameters
    ----------
    model : smtbx.model.Model
    graph : smtbx.reparametrisation.Reparametrisation
    connectivity : smtbx.connectivity.Connectivity, optional
        Default: built from the model's sites.  FREE and BIND instructions
        are applied on top of it.
    simu_across_parts : bool
        SIMU pairs between atoms of different non-zero PARTs (alternative
        components) are restrained, as SHELXL does (default); False leaves
        them out.

    Attributes
    ----------
    terms : list
        (kind, proxies, SHELXL count) per restraintstbx term.
    n_restraints : int

    Notes
    -----
    The pairs (DELU, RIGU, SIMU, SAME, BUMP) are found once, from the model
    as read.  The object is smtbx.refine's ``restraints`` hook
    (``restraints(graph) -> (design, deltas, weights)``, with
    ``n_restraints=restraints.n_restraints``; build it for every model, since
    it also holds the floating origin of polar groups).  Spelt out, every
    cycle after ``graph.apply_shifts``::

        rows = restraints.evaluate()
        equations.add_restraints(rows.design, rows.deltas, rows.weights)
        # restrained GoF² = (Σ w r² + rows.chi2) / (m + rows.n_restraints - p)

    and at the end logs ``restraints.format_statistics()`` (the weighting
    rule, then rmsd and the worst restraints per kind, with atom labels).
    """

    def __init__(self, model, graph, connectivity=None, simu_across_parts=True):
        self.model = model
        self.simu_across_parts = simu_across_parts
        self.graph = graph
        self.conn = _Bonding(model, connectivity or Connectivity(model))
        self.cell = model.cell
        self.symmetry = rt.Symmetry.from_sgtbx(model.cell, model.space_group)
        self.labels = list(graph.labels)
        n = len(model.scatterers)
        self.n_atoms = n
        self.aniso = model.anisotropic
        self.hydrogen = np.array([model.is_hydrogen(i) for i in range(n)], dtype=bool)
        self.parts = np.array([s.part for s in model.scatterers], dtype=int)
        self.terms = []
        self._sump = []
        self._origin = []
        sites_cart = model.sites_frac @ self.cell.orthogonalisation.T
        self._build(sites_cart)
        self._column_maps()
        self._origin_rows()
        self.n_restraints = (sum(t.count for t in self.terms) + len(self._sump)
                             + len(self._origin))

    # ------------------------------------------------------------- helpers
    def _image(self, index, rotation, translation):
        """(op, shift) of the image R x + t of an atom: op −1 for none."""
        r = np.asarray(rotation)
        t = np.asarray(translation, dtype=np.float64)
        if np.array_equal(r, np.eye(3)) and not np.any(np.abs(t) > 1e-9):
            return -1, (0, 0, 0)
        sym = self.symmetry
        for k in range(sym.n_operations):
            if np.array_equal(sym.rotations[k], r):
                shift = t - sym.translations[k]
                if np.allclose(shift, np.round(shift), atol=1e-6):
                    return k, tuple(int(v) for v in np.round(shift))
        raise rt.RestraintError(f"atom {self.labels[index]}: the symmetry operation "
                                f"{r.tolist()} + {t.tolist()} is not in the space group")

    def _ref(self, ref):
        if ref.symop is None:
            return ref.index, -1, (0, 0, 0)
        op, shift = self._image(ref.index, ref.symop.rotation, ref.symop.translation)
        return ref.index, op, shift

    def _compatible(self, i, j):
        """Not the same atom, and not in two different non-zero PARTs."""
        pi, pj = self.parts[i], self.parts[j]
        return i != j and not (pi and pj and pi != pj)

    def _terminal(self, i):
        return len(self.conn.neighbours(i)) <= 1

    def _bonded_pairs(self, atoms):
        """1,2 and 1,3 pairs (from the connectivity) whose two atoms are both
        in ``atoms``: lists of ((i, op, shift), (j, op, shift)), each pair once."""
        atoms = set(atoms)
        seen, pairs12, pairs13 = set(), [], []
        sites = self.model.sites_frac

        def key(a, b):
            (i, ri, ti), (j, rj, tj) = a, b
            xi = ri @ sites[i] + ti
            xj = rj @ sites[j] + tj
            d = xj - xi
            dist = float(np.sqrt(d @ self.cell.metric @ d))
            return (min(i, j), max(i, j), round(dist, 4))

        eye, zero = np.eye(3, dtype=np.int32), np.zeros(3)
        for i in sorted(atoms):
            for nb in self.conn.neighbours(i):
                if nb.index not in atoms or nb.index == i:
                    continue
                a, b = (i, eye, zero), (nb.index, nb.rotation, nb.translation)
                k = key(a, b)
                if k in seen:
                    continue
                seen.add(k)
                pairs12.append((a, b))
        for mid in range(self.n_atoms):
            if self.hydrogen[mid]:
                continue
            nbs = [nb for nb in self.conn.neighbours(mid) if nb.index in atoms]
            for p in range(len(nbs)):
                for q in range(p + 1, len(nbs)):
                    a = (nbs[p].index, nbs[p].rotation, nbs[p].translation)
                    b = (nbs[q].index, nbs[q].rotation, nbs[q].translation)
                    if not self._compatible(a[0], b[0]):
                        continue
                    k = key(a, b)
                    if k in seen or k[2] < 1e-3:
                        continue
                    seen.add(k)
                    pairs13.append((a, b))
        return [self._as_proxy_pair(p) for p in pairs12], [self._as_proxy_pair(p) for p in pairs13]

    def _as_proxy_pair(self, pair):
        out = []
        for i, r, t in pair:
            op, shift = self._image(i, r, t)
            out.append((i, op, shift))
        return tuple(out)

    def _pairs_arrays(self, pairs):
        idx = np.array([[a[0], b[0]] for a, b in pairs], dtype=np.int64).reshape(-1, 2)
        ops = np.array([[a[1], b[1]] for a, b in pairs], dtype=np.int32).reshape(-1, 2)
        shifts = np.array([[a[2], b[2]] for a, b in pairs], dtype=np.int32).reshape(-1, 2, 3)
        return idx, ops, shifts

    def _add(self, kind, proxies, count, adp=None):
        if len(proxies):
            self.terms.append(_Term(kind, proxies, count, adp))

    # ------------------------------------------------------------- building
    def _build(self, sites_cart):
        by_kind = {}
        for r in self.model.restraints:
            by_kind.setdefault(r.kind, []).append(r)
        self._distances(by_kind.get("DFIX", []) + by_kind.get("DANG", []))
        self._sadi(by_kind.get("SADI", []), by_kind.get("SAME", []))
        self._flat(by_kind.get("FLAT", []))
        self._chiv(by_kind.get("CHIV", []))
        u_eq = self._arrays(self.graph.y)[3]
        self._rigid_bond(by_kind.get("DELU", []), "DELU", sites_cart, u_eq)
        self._rigid_bond(by_kind.get("RIGU", []), "RIGU", sites_cart, u_eq)
        self._simu(by_kind.get("SIMU", []), sites_cart)
        self._isor(by_kind.get("ISOR", []))
        self._bump(by_kind.get("BUMP", []), sites_cart)
        for c in self.model.constraints_of_type(m.FreeVariableSum):
            self._sump.append(c)

    def _distances(self, restraints):
        pairs, targets, sigmas, kinds, lower = [], [], [], [], []
        for r in restraints:
            for a, b in r.groups:
                pairs.append((self._ref(a), self._ref(b)))
                targets.append(abs(r.target))
                sigmas.append(r.sigmas[0])
                lower.append(r.target < 0)
                kinds.append(r.kind)
        if not pairs:
            return
        lower = np.array(lower)
        for kind in ("DFIX", "DANG"):
            for one_sided in (False, True):
                sel = [k for k in range(len(pairs)) if kinds[k] == kind and lower[k] == one_sided]
                if not sel:
                    continue
                idx, ops, shifts = self._pairs_arrays([pairs[k] for k in sel])
                cls = rt.BumpProxies if one_sided else rt.BondProxies
                proxies = cls(idx, np.array(targets)[sel], np.array(sigmas)[sel], ops, shifts,
                              self.symmetry)
                self._add(kind, proxies, len(sel))

    def _sadi(self, sadis, sames):
        """SADI and SAME as SHELXL lists them after END ("SADI restraints,
        including those derived from SAME"): distances linked by a SADI or by
        a chain of SAME correspondences form one set; a distance between
        atoms in different non-zero PARTs is never part of one (cc_invtwin's
        listing)."""
        parent, sigma_of, order = {}, {}, []

        def find(k):
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        def add(pair, sigma):
            k = tuple(sorted(pair))
            if k not in parent:
                parent[k] = k
                sigma_of[k] = sigma
                order.append(k)
            return k

        def join(k1, k2):
            parent[find(k1)] = find(k2)

        identity = (-1, (0, 0, 0))
        for r in sadis:
            keys = [add((self._ref(a), self._ref(b)), r.sigmas[0]) for a, b in r.groups
                    if self._compatible(a.index, b.index) or a.index == b.index]
            for k in keys[1:]:
                join(keys[0], k)
        for r in sames:
            ref, target = r.groups[0], r.groups[1]
            mapping = {a.index: b.index for a, b in zip(ref, target)}
            p12, p13 = self._bonded_pairs([a.index for a in ref])
            for pairs, sigma in ((p12, r.sigmas[0]), (p13, r.sigmas[1])):
                for a, b in pairs:
                    if a[1:] != identity or b[1:] != identity:
                        continue      # a bond to a symmetry mate has no SAME image
                    ta, tb = mapping[a[0]], mapping[b[0]]
                    if not (self._compatible(a[0], b[0]) and self._compatible(ta, tb)):
                        continue
                    join(add(((a[0],) + identity, (b[0],) + identity), sigma),
                         add(((ta,) + identity, (tb,) + identity), sigma))
        classes = {}
        for k in order:
            classes.setdefault(find(k), []).append(k)
        groups = [members for members in classes.values() if len(members) >= 2]
        if groups:
            self._add("SADI", _DistanceSets(groups, [sigma_of[g[0]] for g in groups],
                                            self.symmetry, self._pairs_arrays),
                      sum(len(g) * (len(g) - 1) // 2 for g in groups))

    def _flat(self, restraints):
        groups, ops, shifts, sigmas, count = [], [], [], [], 0
        for r in restraints:
            refs = [self._ref(a) for a in r.groups[0]]
            if len(refs) < 4:
                continue
            groups.append([a[0] for a in refs])
            ops.append([a[1] for a in refs])
            shifts.append([a[2] for a in refs])
            sigmas.append(r.sigmas[0])
            count += len(refs) - 3
        if groups:
            self._add("FLAT", rt.FlatProxies(groups, np.array(sigmas), ops, shifts,
                                             self.symmetry), count)

    def _chiv(self, restraints):
        quads, targets, sigmas = [], [], []
        for r in restraints:
            for a in r.groups[0]:
                nbs = self.conn.neighbours(a.index)
                if len(nbs) != 3:
                    continue
                centre = (a.index, -1, (0, 0, 0))
                quads.append((centre,) + tuple(
                    (nb.index,) + self._image(nb.index, nb.rotation, nb.translation)
                    for nb in nbs))
                targets.append(r.target)
                sigmas.append(r.sigmas[0])
        if quads:
            idx = np.array([[q[0] for q in quad] for quad in quads])
            ops = np.array([[q[1] for q in quad] for quad in quads])
            shifts = np.array([[q[2] for q in quad] for quad in quads])
            self._add("CHIV", rt.ChiralityProxies(idx, np.array(targets), np.array(sigmas),
                                                  sym_ops=ops, shifts=shifts,
                                                  symmetry=self.symmetry), len(quads))

    def _rigid_bond(self, restraints, kind, sites_cart, u_eq):
        all_pairs, sigmas = [], []
        seen = set()
        for r in restraints:
            atoms = [a.index for a in r.groups[0]
                     if self.aniso[a.index] and not self.hydrogen[a.index]]
            p12, p13 = self._bonded_pairs(atoms)
            for pairs, s in ((p12, r.sigmas[0]), (p13, r.sigmas[1])):
                for p in pairs:
                    if p in seen or s <= 0:       # a zero sigma switches them off
                        continue
                    seen.add(p)
                    all_pairs.append(p)
                    sigmas.append(s)
        if not all_pairs:
            return
        idx, ops, shifts = self._pairs_arrays(all_pairs)
        sigmas = np.array(sigmas)
        if kind == "DELU":
            self._add(kind, rt.RigidBondProxies(idx, sigmas, ops, shifts, self.symmetry),
                      len(all_pairs), "u_cart")
            return
        # the weight factor from the model as read, then fixed (see the module notes)
        lengths = -rt.BondProxies(idx, 0.0, 1.0, ops, shifts,
                                  self.symmetry).design_rows(sites_cart).deltas
        sigmas = sigmas / np.sqrt(rigu_weight_factor(lengths, u_eq[idx]))
        self._add(kind, rt.RiguProxies(idx, sigmas, ops, shifts, self.symmetry),
                  3 * len(all_pairs), "u_cart")

    def _simu(self, restraints, sites_cart):
        aniso_pairs, aniso_sig, iso_pairs, iso_sig = [], [], [], []
        seen = set()
        for r in restraints:
            atoms = sorted({a.index for a in r.groups[0] if not self.hydrogen[a.index]})
            if len(atoms) < 2:
                continue
            atoms = np.array(atoms)
            d = np.linalg.norm(sites_cart[atoms][:, None] - sites_cart[atoms][None, :], axis=2)
            for p, q in zip(*np.nonzero(np.triu(d < r.dmax, 1))):
                i, j = int(atoms[p]), int(atoms[q])
                if (i, j) in seen or not (self.simu_across_parts or self._compatible(i, j)):
                    continue
                seen.add((i, j))
                s = r.sigmas[1] if (self._terminal(i) or self._terminal(j)) else r.sigmas[0]
                if s <= 0:                        # a zero sigma switches them off
                    continue
                if self.aniso[i] and self.aniso[j]:
                    aniso_pairs.append((i, j))
                    aniso_sig.append(s)
                else:
                    iso_pairs.append((i, j))
                    iso_sig.append(s)
        if aniso_pairs:
            self._add("SIMU", rt.AdpSimilarityProxies(np.array(aniso_pairs), np.array(aniso_sig),
                                                          symmetry=self.symmetry),
                      6 * len(aniso_pairs), "u_cart")
        if iso_pairs:
            self._add("SIMU", rt.BSimilarityProxies(np.array(iso_pairs), np.array(iso_sig),
                                                        symmetry=self.symmetry),
                      len(iso_pairs), "u_eq")

    def _isor(self, restraints):
        atoms, sigmas, seen = [], [], set()
        for r in restraints:
            for a in r.groups[0]:
                i = a.index
                s = r.sigmas[1] if self._terminal(i) else r.sigmas[0]
                if i in seen or not self.aniso[i] or self.hydrogen[i] or s <= 0:
                    continue
                seen.add(i)
                atoms.append(i)
                sigmas.append(s)
        if atoms:
            self._add("ISOR", rt.IsotropicAdpProxies(np.array(atoms), np.array(sigmas),
                                                       symmetry=self.symmetry),
                      6 * len(atoms), "u_cart")

    def _bump(self, restraints, sites_cart):
        if not restraints:
            return
        r = restraints[0]
        atoms = sorted({a.index for rr in restraints for a in rr.groups[0]
                        if not self.hydrogen[a.index]})
        pairs, dmin = bump_pairs(self, atoms, sites_cart)
        if len(pairs):
            idx, ops, shifts = pairs
            self._add("BUMP", rt.BumpProxies(idx, dmin, r.sigmas[0], ops, shifts, self.symmetry),
                      len(dmin))

    # ------------------------------------------------------------- columns
    def _column_maps(self):
        """Sparse maps from restraintstbx's columns (fractional sites, U*,
        U_iso/U_eq) to the graph's y."""
        g, n = self.graph, self.n_atoms
        n_y = len(g.y)
        rows = np.arange(3 * n)
        self._p_site = sp.csr_matrix((np.ones(3 * n), (rows, g.site_index.reshape(-1))),
                                     shape=(3 * n, n_y))
        gstar = self.cell.reciprocal_metric
        gstar6 = np.array([gstar[a, b] for a, b in rt.symmetry.U_PAIRS])
        metric = self.cell.metric
        ueq6 = np.array([metric[a, b] * (1 if a == b else 2) for a, b in rt.symmetry.U_PAIRS]) / 3
        r_u, c_u, v_u, r_e, c_e, v_e = [], [], [], [], [], []
        for i in range(n):
            if self.aniso[i]:
                r_u += list(range(6 * i, 6 * i + 6))
                c_u += list(g.u_index[i])
                v_u += [1.0] * 6
                r_e += [i] * 6
                c_e += list(g.u_index[i])
                v_e += list(ueq6)
            else:
                r_u += list(range(6 * i, 6 * i + 6))
                c_u += [g.u_index[i, 0]] * 6
                v_u += list(gstar6)
                r_e.append(i)
                c_e.append(g.u_index[i, 0])
                v_e.append(1.0)
        self._p_u = sp.csr_matrix((v_u, (r_u, c_u)), shape=(6 * n, n_y))
        self._p_ueq = sp.csr_matrix((v_e, (r_e, c_e)), shape=(n, n_y))

    def _origin_rows(self):
        """One row per polar direction in y: the centre of gravity weighted by
        Z² occupancy / |site group| (what each atom puts in the cell)
        projected on the (Cartesian) direction; target its starting value.
        Without the site and occupancy factors p31c_sad's z s.u.'s (atoms on
        the threefold axes) were 1.18 times SHELXL's; with them 1.01."""
        directions = self.model.space_group.polar_directions
        if not len(directions):
            return
        a = self.cell.orthogonalisation
        z = np.array([max(gemmi.Element(self.model.scattering_types[s.type_index].element)
                          .atomic_number, 1) for s in self.model.scatterers], dtype=np.float64)
        w = z ** 2 * self.model.occupancies / self.model.site_orders
        w /= np.sum(w)
        n_y = len(self.graph.y)
        for v in directions:
            e = a @ v
            e = e / np.linalg.norm(e)
            per_atom = w[:, None] * (a.T @ e)[None, :]          # d c / d x_frac
            row = np.zeros(n_y)
            np.add.at(row, self.graph.site_index.reshape(-1), per_atom.reshape(-1))
            self._origin.append((sp.csr_matrix(row), float(row @ self.graph.y)))

    # ------------------------------------------------------------- evaluation
    def _arrays(self, y):
        g = self.graph
        a = self.cell.orthogonalisation
        sites_frac = y[g.site_index]
        sites_cart = sites_frac @ a.T
        u_cart = np.zeros((self.n_atoms, 6))
        u_eq = np.zeros(self.n_atoms)
        aniso = self.aniso
        if aniso.any():
            u_cart[aniso] = y[g.u_index[aniso]] @ rt.u_transform(a).T
            u_eq[aniso] = u_cart[aniso, :3].mean(axis=1)
        iso = ~aniso
        u_iso = y[g.u_index[iso, 0]]
        u_cart[iso, :3] = u_iso[:, None]
        u_eq[iso] = u_iso
        return sites_frac, sites_cart, u_cart, u_eq

    def _u(self, term, u_cart, u_eq):
        return u_cart if term.adp == "u_cart" else u_eq

    def rows_y(self, y=None):
        """Design rows in y (CSR (n_rows, n_y)), deltas and weights."""
        y = self.graph.y if y is None else np.asarray(y, dtype=np.float64)
        sites_frac, sites_cart, u_cart, u_eq = self._arrays(y)
        blocks, deltas, weights = [], [], []
        for t in self.terms:
            if t.adp is None:
                r = t.proxies.design_rows(sites_cart, frame="frac")
            else:
                r = t.proxies.design_rows(sites_cart, self._u(t, u_cart, u_eq), frame="frac")
            d = r.sites @ self._p_site if t.proxies.has_sites else None
            if r.u_cart is not None:
                du = r.u_cart @ self._p_u
                d = du if d is None else d + du
            if r.u_iso is not None:
                du = r.u_iso @ self._p_ueq
                d = du if d is None else d + du
            blocks.append(d.tocsr())
            deltas.append(r.deltas)
            weights.append(r.weights)
        for row, target in self._origin:
            value = float((row @ y)[0])
            blocks.append(row)
            deltas.append(np.array([target - value]))
            weights.append(np.array([1.0 / ORIGIN_SIGMA ** 2]))
        n_y = len(y)
        if not blocks:
            return sp.csr_matrix((0, n_y)), np.zeros(0), np.zeros(0)
        return (sp.vstack(blocks, format="csr"), np.concatenate(deltas),
                np.concatenate(weights))

    def _sump_rows(self, x):
        g = self.graph
        n_x = len(x)
        rows, deltas, weights = [], [], []
        for c in self._sump:
            row = np.zeros(n_x)
            for coef, k in c.terms:
                col = g.free_variable_column(k)
                row[col] += coef
            value = float(row @ x)
            rows.append(row)
            deltas.append(c.target - value)
            weights.append(1.0 / c.sigma ** 2)
        return sp.csr_matrix(np.array(rows).reshape(-1, n_x)), np.array(deltas), np.array(weights)

    def evaluate(self, x=None, weight_scale=1.0):
        """The restraints at the graph's current x (y and J), or at another x.

        Parameters
        ----------
        x : float64 (n_x,), optional
        weight_scale : float
            Multiplies every weight (and so chi2); 1 is SHELXL's rule
            (:data:`WEIGHT_RULE`).

        Returns
        -------
        RestraintRows
        """
        if x is None:
            x, y, jac = self.graph.x, self.graph.y, self.graph.jacobian
        else:
            x = np.asarray(x, dtype=np.float64)
            y, jac = self.graph.evaluate(x)
        d_y, deltas, weights = self.rows_y(y)
        design = (d_y @ jac).tocsr()
        if self._sump:
            d_s, delta_s, w_s = self._sump_rows(x)
            design = sp.vstack([design, d_s], format="csr")
            deltas = np.concatenate([deltas, delta_s])
            weights = np.concatenate([weights, w_s])
        if not weight_scale > 0:
            raise rt.RestraintError(f"weight_scale must be positive; got {weight_scale}")
        weights = weights * weight_scale
        return RestraintRows(design, deltas, weights, float(np.sum(weights * deltas ** 2)),
                             self.n_restraints)

    def __call__(self, graph=None):
        """(design, deltas, weights) at the graph's current parameters: the
        ``restraints`` hook of smtbx.refine.  ``graph`` must be the graph (or
        one with the same layout) the restraints were built for."""
        if graph is not None and graph is not self.graph:
            if len(graph.y) != len(self.graph.y) or len(graph.x) != len(self.graph.x):
                raise rt.RestraintError(
                    f"restraints were built for a graph with {len(self.graph.x)} x and "
                    f"{len(self.graph.y)} y parameters; got {len(graph.x)} and {len(graph.y)}")
            self.graph = graph
        rows = self.evaluate()
        return rows.design, rows.deltas, rows.weights

    def statistics(self, n_worst=5):
        """rmsd per restraint kind and the worst restraints with atom labels.

        Returns
        -------
        list of restraintstbx.Statistics, named by SHELXL kind.
        """
        _, sites_cart, u_cart, u_eq = self._arrays(self.graph.y)
        out = []
        for t in self.terms:
            if t.adp is None:
                s = t.proxies.statistics(sites_cart, self.labels, n_worst)
            else:
                s = t.proxies.statistics(sites_cart, self._u(t, u_cart, u_eq), self.labels,
                                         n_worst)
            s.name = t.kind
            out.append(s)
        return out

    def format_statistics(self, n_worst=5):
        """Lines for the log: the weighting rule, then rmsd and worst per kind."""
        lines = [f"restraints: {self.n_restraints} (SHELXL's count); {WEIGHT_RULE}"]
        lines += [s.format() for s in self.statistics(n_worst)]
        return "\n".join(lines)


def bump_pairs(restraints, atoms, sites_cart):
    """Anti-bump pairs: non-hydrogen atoms (with symmetry mates) closer than
    d_min = r_vdW(i) + r_vdW(j) − BUMP_MARGIN (gemmi's van der Waals radii), not
    joined by a path of at most three bonds (which keeps the para atoms of a
    six-membered ring, 2.8 Å apart, out), not in different non-zero PARTs, not an atom of a
    negative PART and its own image, and (SHELXL manual, BUMP) with a sum of
    occupancies of at least 1.1.  The d_min rule is fitted, not SHELXL's
    documented one (the manual available here gives none for small
    molecules): :data:`BUMP_MARGIN` reproduces bjk_p21212's count, two O...O
    contacts (2.628 and 2.653 Å) restrained and nothing else, which any margin
    from 0.34 to 0.39 Å does.

    Returns
    -------
    ((idx, ops, shifts), d_min) or ((), empty)
    """
    model = restraints.model
    elements = [model.scattering_types[s.type_index].element for s in model.scatterers]
    vdw = np.array([gemmi.Element(e).vdw_r for e in elements])
    occupancy = model.occupancies
    atoms = np.asarray(atoms, dtype=np.int64)
    if atoms.size == 0:
        return (), np.zeros(0)
    cutoff = 2 * vdw[atoms].max() - BUMP_MARGIN
    found = rt.find_pairs(sites_cart[atoms], cutoff, restraints.symmetry)
    p12, p13 = restraints._bonded_pairs(list(atoms))
    bonded = {(min(a[0], b[0]), max(a[0], b[0]), round(_dist(restraints, a, b), 3))
              for a, b in p12 + p13}
    conn = restraints.conn

    def within_three_bonds(i, j):
        reach = {i}
        for _ in range(3):
            reach |= {nb.index for k in reach for nb in conn.neighbours(k)}
        return i != j and j in reach

    keep, dmin = [], []
    parts = restraints.parts
    for k in range(len(found)):
        i, j = atoms[found.i_seqs[k, 0]], atoms[found.i_seqs[k, 1]]
        d0 = vdw[i] + vdw[j] - BUMP_MARGIN
        if found.distances[k] >= d0 or occupancy[i] + occupancy[j] < 1.1:
            continue
        if not restraints._compatible(i, j) and not (i == j and parts[i] >= 0):
            continue
        if ((min(i, j), max(i, j), round(float(found.distances[k]), 3)) in bonded
                or within_three_bonds(i, j)):
            continue
        keep.append(k)
        dmin.append(d0)
    if not keep:
        return (), np.zeros(0)
    keep = np.array(keep)
    idx = atoms[found.i_seqs[keep]]
    return (idx, found.sym_ops[keep], found.shifts[keep]), np.array(dmin)


def _dist(restraints, a, b):
    sym = restraints.symmetry
    x = restraints.model.sites_frac

    def image(i, op, shift):
        if op < 0:
            return x[i] + np.asarray(shift)
        return sym.rotations[op] @ x[i] + sym.translations[op] + np.asarray(shift)
    d = image(*b) - image(*a)
    return float(np.sqrt(d @ restraints.cell.metric @ d))

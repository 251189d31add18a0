"""Covalent connectivity of a small-molecule model, with symmetry and PART.

Two atoms are bonded when their distance is below r1 + r2 + 0.5 Å (the
covalent radii from gemmi), the rule SHELXL's connectivity table uses
(CONN).  Symmetry images count: an atom may be bonded to an image of
another atom, or of itself, under any operation of the space group and any
lattice translation (the nearest image per operation is taken).  PART rules
(SHELXL, PART):

* atoms in different non-zero PARTs are never bonded;
* an atom in a negative PART is not bonded to symmetry images (operation
  other than a pure lattice translation) of atoms in a non-zero PART,
  itself included.

Only bonds to non-hydrogen atoms are listed: the riding-hydrogen
geometries are built on the non-hydrogen skeleton.
"""

from dataclasses import dataclass

import gemmi
import numpy as np

#: Added to the sum of covalent radii (Å).
BOND_TOLERANCE = 0.5


@dataclass(frozen=True)
class Neighbour:
    """A bonded atom, possibly a symmetry image.

    Attributes
    ----------
    index : int
        The atom in the model.
    rotation : ndarray, int32 (3, 3)
    translation : ndarray, float64 (3,)
        The image is ``rotation @ site_frac[index] + translation`` (the
        lattice shift included).
    distance : float
        Å, at the sites the table was built from.
    """

    index: int
    rotation: np.ndarray
    translation: np.ndarray
    distance: float

    @property
    def is_identity(self):
        return bool(np.array_equal(self.rotation, np.eye(3, dtype=np.int32))
                    and not np.any(self.translation))

    def image(self, site_frac):
        """The image of ``site_frac`` (3,) (float or complex) under this operation."""
        return self.rotation @ site_frac + self.translation


class Connectivity:
    """Bonds of a model, found on demand per atom.

    Parameters
    ----------
    model : smtbx.model.Model
    sites_frac : float64 (n, 3), optional
        Sites to use instead of the model's.
    """

    def __init__(self, model, sites_frac=None):
        self.model = model
        self.cell = model.cell
        self.sites = np.asarray(model.sites_frac if sites_frac is None else sites_frac, dtype=np.float64)
        sg = model.space_group
        self.rotations = np.asarray(sg.rotations, dtype=np.int32)
        self.translations = np.asarray(sg.translations, dtype=np.float64)
        elements = [model.scattering_types[s.type_index].element for s in model.scatterers]
        self.hydrogen = np.array([e in ("H", "D") for e in elements], dtype=bool)
        self.radii = np.array([gemmi.Element(e).covalent_r if gemmi.Element(e).atomic_number else 0.77
                               for e in elements])
        self.parts = np.array([s.part for s in model.scatterers], dtype=int)
        self.labels = [s.label for s in model.scatterers]
        # images[k, j] = R_k x_j + t_k
        self.images = (np.einsum("kab,jb->kja", self.rotations, self.sites)
                       + self.translations[:, None, :])
        self.identity_op = np.array([np.array_equal(r, np.eye(3)) and not np.any(t % 1.0)
                                     for r, t in zip(self.rotations, self.translations)])
        self._cache = {}

    def neighbours(self, i):
        """Non-hydrogen atoms bonded to atom ``i``, nearest first.

        Parameters
        ----------
        i : int

        Returns
        -------
        list of Neighbour
        """
        if i not in self._cache:
            self._cache[i] = self._search(i)
        return self._cache[i]

    def _close(self, a, b, tolerance=0.05):
        delta = a - b
        return delta @ self.cell.metric @ delta < tolerance ** 2

    def _search(self, i):
        x = self.sites[i]
        delta = self.images - x
        shift = -np.round(delta)
        delta = delta + shift
        d2 = np.einsum("kja,ab,kjb->kj", delta, self.cell.metric, delta)
        cutoff = self.radii[i] + self.radii + BOND_TOLERANCE
        ok = (d2 < cutoff[None, :] ** 2) & (d2 > 1e-4)
        ok &= ~self.hydrogen[None, :]
        pi = self.parts[i]
        if pi != 0:
            ok &= ((self.parts == 0) | (self.parts == pi))[None, :]
        symmetric = ~self.identity_op
        neg_j = self.parts < 0
        if pi < 0:
            ok[symmetric, :] &= (self.parts == 0)[None, :]
        ok[np.ix_(symmetric, neg_j)] &= (pi == 0)
        found = []
        for k, j in zip(*np.nonzero(ok)):
            t = self.translations[k] + shift[k, j]
            site = self.images[k, j] + shift[k, j]
            # an atom on a symmetry element has coinciding images: keep one
            if any(n.index == j and self._close(n.image(self.sites[j]), site) for n in found):
                continue
            found.append(Neighbour(int(j), self.rotations[k].copy(), t, float(np.sqrt(d2[k, j]))))
        found.sort(key=lambda n: n.distance)
        return found

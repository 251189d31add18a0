"""Close pairs for non-bonded and anti-bump restraints, with symmetry mates."""

from dataclasses import dataclass

import numpy as np

from . import _kernels
from .errors import RestraintError


@dataclass
class Pairs:
    """Close pairs: atom i_seqs[:, 0] (as is) and a mate of atom i_seqs[:, 1].

    i_seqs int64 (q, 2); sym_ops int32 (q, 2) (-1: no operation);
    shifts int32 (q, 2, 3); distances float64 (q,).
    """
    i_seqs: np.ndarray
    sym_ops: np.ndarray
    shifts: np.ndarray
    distances: np.ndarray

    def __len__(self):
        return self.distances.size


def find_pairs(sites_cart, cutoff, symmetry=None, exclude=None, self_tolerance=1e-6):
    """Every interacting pair closer than ``cutoff``, each once.

    Parameters
    ----------
    sites_cart : float64 (n, 3)
    cutoff : float, Angstrom
    symmetry : Symmetry, optional
        With it, every image of every atom under the operations and lattice
        shifts is considered (a cell list over the images reduced into the
        unit cell, padded by the cutoff); without it, the sites as given.
    exclude : int (q, 2), optional
        Atom pairs (e.g. 1-2 and 1-3 neighbours) left out when the second atom
        is not a symmetry mate.
    self_tolerance : float
        An atom's image closer than this to the atom itself (a special
        position) is not a pair.

    Returns
    -------
    Pairs
        A pair (i, g j) is the same interaction as (j, g^-1 i): only the one
        with i < j is kept, and for i == j the one of g, g^-1 with the smaller
        (operation, shift) key.
    """
    sites = np.ascontiguousarray(sites_cart, dtype=np.float64)
    if sites.ndim != 2 or sites.shape[1] != 3 or not np.all(np.isfinite(sites)):
        raise RestraintError("find_pairs: sites_cart must be a finite (n, 3) array")
    if not cutoff > 0:
        raise RestraintError(f"find_pairs: cutoff must be positive; got {cutoff}")
    n = sites.shape[0]
    if symmetry is None:
        ci, ii, dist = _kernels.close_pairs(sites, sites, float(cutoff))
        keep = ii > ci
        ci, jj, dist = ci[keep], ii[keep], dist[keep]
        ops = np.full(ci.size, -1, dtype=np.int32)
        shifts = np.zeros((ci.size, 3), dtype=np.int32)
    else:
        a = symmetry.orthogonalisation
        frac = sites @ symmetry.fractionalisation.T
        margin = cutoff * np.linalg.norm(symmetry.fractionalisation, axis=1)
        k = symmetry.n_operations
        images = np.einsum("kab,nb->kna", symmetry.rotations, frac) + symmetry.translations[:, None]
        images = images.reshape(-1, 3)
        image_atom = np.tile(np.arange(n), k)
        image_op = np.repeat(np.arange(k, dtype=np.int32), n)
        base_shift = -np.floor(images)
        images = images + base_shift
        reach = np.ceil(margin).astype(int)
        offsets = np.array([(x, y, z) for x in range(-reach[0], reach[0] + 1)
                            for y in range(-reach[1], reach[1] + 1)
                            for z in range(-reach[2], reach[2] + 1)], dtype=np.float64)
        rep = images[None, :, :] + offsets[:, None, :]
        inside = np.all((rep >= -margin) & (rep <= 1 + margin), axis=2)
        o_idx, i_idx = np.nonzero(inside)
        rep_frac = rep[o_idx, i_idx]
        rep_shift = base_shift[i_idx] + offsets[o_idx]
        centre_shift = np.floor(frac)
        centres = (frac - centre_shift) @ a.T
        ci, ri, dist = _kernels.close_pairs(np.ascontiguousarray(centres),
                                            np.ascontiguousarray(rep_frac @ a.T),
                                            float(cutoff))
        jj = image_atom[i_idx][ri]
        ops = image_op[i_idx][ri]
        shifts = np.rint(rep_shift[ri] + centre_shift[ci]).astype(np.int32)
        keep = (jj > ci) | ((jj == ci) & (dist > self_tolerance))
        ci, jj, ops, shifts, dist = ci[keep], jj[keep], ops[keep], shifts[keep], dist[keep]
        # the same interaction seen from both ends of a self pair: keep one
        same = np.flatnonzero(jj == ci)
        if same.size:
            inverse = symmetry.inverse_operations()
            drop = np.zeros(ci.size, dtype=bool)
            for p in same:
                op = ops[p]
                r_inv = symmetry.rotations[inverse[op]]
                t = symmetry.translations[op] + shifts[p]
                inv_shift = np.rint(-r_inv @ t - symmetry.translations[inverse[op]])
                drop[p] = (op, *shifts[p]) > (inverse[op], *inv_shift)
            keep = ~drop
            ci, jj, ops, shifts, dist = ci[keep], jj[keep], ops[keep], shifts[keep], dist[keep]
        # a mate that is the atom itself (identity, no translation) is no mate
        ident = np.flatnonzero(np.all(symmetry.rotations == np.eye(3, dtype=np.int32),
                                      axis=(1, 2)))
        direct = np.zeros(ci.size, dtype=bool)
        for op in ident:
            t = symmetry.translations[op][None, :] + shifts
            direct |= (ops == op) & np.all(np.abs(t) < 1e-9, axis=1)
        ops = np.where(direct, -1, ops).astype(np.int32)
        shifts[direct] = 0
    if exclude is not None and ci.size:
        ex = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
        lo, hi = np.minimum(ex[:, 0], ex[:, 1]), np.maximum(ex[:, 0], ex[:, 1])
        keys = lo * n + hi
        pair_keys = np.minimum(ci, jj) * n + np.maximum(ci, jj)
        drop = (ops < 0) & np.isin(pair_keys, keys)
        ci, jj, ops, shifts, dist = ci[~drop], jj[~drop], ops[~drop], shifts[~drop], dist[~drop]
    order = np.lexsort((ops, jj, ci))
    q = ci.size
    i_seqs = np.column_stack([ci, jj])[order]
    sym_ops = np.column_stack([np.full(q, -1, dtype=np.int32), ops])[order]
    all_shifts = np.zeros((q, 2, 3), dtype=np.int32)
    all_shifts[:, 1] = shifts
    return Pairs(i_seqs.astype(np.int64), sym_ops.astype(np.int32), all_shifts[order],
                 dist[order])

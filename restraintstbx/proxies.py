"""Restraint proxies: one small class per restraint type, and RestraintSet.

Every type stores its proxies in one layout (the kernels' input):

* ``proxy_ptr`` int64 (m+1): the atoms of proxy k are ``proxy_ptr[k]:proxy_ptr[k+1]``
  of the flat per-atom arrays ``atom_index`` (int64), ``atom_op`` (int32, -1 for
  no symmetry operation) and ``atom_shift`` (int32 (N, 3) lattice shift);
* ``row_ptr`` int64 (m+1): the rows (residuals) of proxy k, with ``row_weight``
  (1/sigma^2 per row);
* ``params`` float64 (m, P): the target and type-specific parameters.

Residuals are Delta = target - value; the residual sum is sum w Delta^2.
Design rows are d value / d parameter (= -d Delta / d parameter), so that they
enter least squares with the same sign as data rows (DESIGN.md §2 and §5).

Column layout of design rows: ``sites`` has 3 columns per atom (x, y, z of
atom i at 3i..3i+2), ``u_cart`` 6 per atom (11, 22, 33, 12, 13, 23 at
6i..6i+5), ``u_iso`` one per atom.  A derivative with respect to an
off-diagonal U_ij is with respect to the parameter that stands for both U_ij
and U_ji (DESIGN.md §2).  With ``frame="frac"`` the site columns are
fractional coordinates and the U columns U* (chain rule through A).
"""

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import _kernels
from .errors import RestraintError
from .symmetry import u_transform

_STATUS = {
    1: "degenerate geometry (coincident atoms, a zero-length vector or a "
       "plane that is not defined)",
    2: "an ADP that is not positive definite",
}

_NO_U = np.zeros((0, 0))
_NO_ROT = np.zeros((0, 3, 3))
_NO_UROT = np.zeros((0, 6, 6))
_EYE3 = np.eye(3)
_EYE6 = np.eye(6)

# Frobenius-norm weights of the six U components (off-diagonals occur twice).
_U_ROW_FACTORS = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])


@dataclass
class DesignRows:
    """Restraint rows for least squares.

    Attributes
    ----------
    sites : scipy.sparse.csr_matrix (m, 3n)
        d value / d site coordinate.
    u_cart : scipy.sparse.csr_matrix (m, 6n) or None
        d value / d U_cart (or U* for frame="frac").
    u_iso : scipy.sparse.csr_matrix (m, n) or None
    deltas : float64 (m,)
        target - value.
    weights : float64 (m,)
        1/sigma^2.
    """
    sites: sp.csr_matrix
    u_cart: sp.csr_matrix = None
    u_iso: sp.csr_matrix = None
    deltas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @staticmethod
    def stack(blocks, n_atoms):
        """Stack several DesignRows row-wise (missing ADP blocks become zeros)."""
        if not blocks:
            return DesignRows(sites=sp.csr_matrix((0, 3 * n_atoms)))

        def part(name, width):
            mats = [getattr(b, name) for b in blocks]
            if all(mat is None for mat in mats):
                return None
            return sp.vstack([mat if mat is not None
                              else sp.csr_matrix((b.deltas.size, width))
                              for mat, b in zip(mats, blocks)], format="csr")
        return DesignRows(
            sites=part("sites", 3 * n_atoms), u_cart=part("u_cart", 6 * n_atoms),
            u_iso=part("u_iso", n_atoms),
            deltas=np.concatenate([b.deltas for b in blocks]),
            weights=np.concatenate([b.weights for b in blocks]))


@dataclass
class WorstProxy:
    index: int
    atoms: tuple
    deltas: np.ndarray
    z: float


@dataclass
class Statistics:
    """rmsd = sqrt(mean Delta^2) and rms_z = sqrt(mean w Delta^2) over all rows;
    ``worst`` lists the proxies with the largest |Z| = |Delta| sqrt(w)."""
    name: str
    n_proxies: int
    n_rows: int
    rmsd: float
    rms_z: float
    worst: list

    def format(self):
        lines = [f"{self.name}: {self.n_proxies} proxies, {self.n_rows} rows, "
                 f"rmsd {self.rmsd:.4g}, rms Z {self.rms_z:.3f}"]
        for w in self.worst:
            lines.append(f"  proxy {w.index} ({' '.join(str(a) for a in w.atoms)}): "
                         f"delta {np.array2string(w.deltas, precision=4)}, |Z| {w.z:.2f}")
        return "\n".join(lines)


def _as_array(values):
    """np.asarray, or None for ragged nested sequences."""
    try:
        arr = np.asarray(values)
    except ValueError:
        return None
    return None if arr.dtype == object else arr


def _flat_per_atom(values, width):
    """Per-atom values given per proxy (array or ragged lists), flattened to
    (N, width)."""
    arr = _as_array(values)
    if arr is None:
        arr = np.concatenate([np.asarray(v).reshape(-1, width) for v in values])
    return arr.reshape(-1, width)


def _groups(name, atoms, size=None):
    """Atom index groups as (ptr, flat): from an (m, size) array or a list of
    sequences."""
    arr = _as_array(atoms)
    if arr is not None and arr.size == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if arr is not None and arr.ndim == 2:
        if size is not None and arr.shape[1] != size:
            raise RestraintError(f"{name}: atom indices must be an (m, {size}) array; "
                                 f"got shape {arr.shape}")
        lengths = np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
        flat = arr.reshape(-1)
    else:
        if size is not None or (arr is not None and arr.ndim != 1):
            raise RestraintError(f"{name}: atom indices must be an (m, {size}) array; "
                                 f"got {np.shape(atoms) if arr is not None else 'ragged lists'}")
        seqs = [np.asarray(a).reshape(-1) for a in atoms]
        lengths = np.array([s.size for s in seqs], dtype=np.int64)
        flat = np.concatenate(seqs)
    if not np.issubdtype(flat.dtype, np.integer):
        if not np.all(np.equal(np.mod(flat, 1), 0)):
            raise RestraintError(f"{name}: atom indices must be integers")
    ptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr, np.ascontiguousarray(flat, dtype=np.int64)


def _per_proxy(name, what, values, m, positive=False):
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        v = np.full(m, float(v))
    if v.shape != (m,):
        raise RestraintError(f"{name}: {what} must be a scalar or have shape ({m},); "
                             f"got {v.shape}")
    bad = np.flatnonzero(~np.isfinite(v) | ((v <= 0) if positive else False))
    if bad.size:
        raise RestraintError(f"{name} proxy {bad[0]}: {what} must be "
                             f"{'positive and ' if positive else ''}finite; got {v[bad[0]]}")
    return v


class _Proxies:
    """Shared machinery; see the module docstring for the layout."""
    kind = None
    name = None
    adp = None          # None, "u_cart" or "u_iso"
    has_sites = True    # do the values depend on the sites?
    min_atoms = 1

    def _setup(self, ptr, atom_index, sym_ops, shifts, params, row_ptr, row_weight,
               symmetry):
        name = self.name
        m = ptr.size - 1
        n_flat = atom_index.size
        counts = np.diff(ptr)
        bad = np.flatnonzero(counts < self.min_atoms)
        if bad.size:
            raise RestraintError(f"{name} proxy {bad[0]}: needs at least "
                                 f"{self.min_atoms} atoms, got {counts[bad[0]]}")
        proxy_of = np.repeat(np.arange(m), counts)
        bad = np.flatnonzero(atom_index < 0)
        if bad.size:
            raise RestraintError(f"{name} proxy {proxy_of[bad[0]]}: atom index "
                                 f"{atom_index[bad[0]]} is negative")
        if sym_ops is None:
            ops = np.full(n_flat, -1, dtype=np.int32)
        else:
            ops = _flat_per_atom(sym_ops, 1).reshape(-1)
            if not np.all(np.equal(np.mod(ops, 1), 0)):
                raise RestraintError(f"{name}: sym_ops must be integers")
            ops = ops.astype(np.int32)
            if ops.size != n_flat:
                raise RestraintError(f"{name}: sym_ops must give one operation index "
                                     f"per atom ({n_flat}); got {ops.size}")
        if shifts is None:
            sh = np.zeros((n_flat, 3), dtype=np.int32)
        else:
            sh = _flat_per_atom(shifts, 3)
            if sh.shape[0] != n_flat or not np.all(np.equal(np.mod(sh, 1), 0)):
                raise RestraintError(f"{name}: shifts must give three integers per atom "
                                     f"({n_flat}, 3); got {sh.shape}")
            sh = sh.astype(np.int32)
        uses_symmetry = np.any(ops >= 0) or np.any(sh != 0)
        if uses_symmetry and symmetry is None:
            k = proxy_of[np.flatnonzero((ops >= 0) | np.any(sh != 0, axis=1))[0]]
            raise RestraintError(f"{name} proxy {k}: a symmetry mate needs a Symmetry "
                                 "(orthogonalisation and operations)")
        if symmetry is not None:
            bad = np.flatnonzero((ops < -1) | (ops >= symmetry.n_operations))
            if bad.size:
                raise RestraintError(f"{name} proxy {proxy_of[bad[0]]}: operation index "
                                     f"{ops[bad[0]]} is not in 0..{symmetry.n_operations - 1}"
                                     " (or -1 for none)")
            trans = symmetry.translations_cart(ops, sh)
        else:
            trans = np.zeros((n_flat, 3))
        self.symmetry = symmetry
        self.proxy_ptr = ptr
        if atom_index.size and atom_index.max() >= 2 ** 31:
            raise RestraintError(f"{name}: atom indices must be below 2^31")
        self.atom_index = np.ascontiguousarray(atom_index, dtype=np.int32)
        self.atom_op = np.ascontiguousarray(ops)
        self.atom_shift = sh
        self.atom_trans = np.ascontiguousarray(trans)
        params = np.asarray(params, dtype=np.float64)
        self.params = np.ascontiguousarray(params.reshape(m, params.size // m if m else 1))
        self.target = np.ascontiguousarray(self.params[:, 0])
        self.row_ptr = np.ascontiguousarray(row_ptr, dtype=np.int64)
        self.row_weight = np.ascontiguousarray(row_weight, dtype=np.float64)
        bad = np.flatnonzero(~(self.row_weight > 0) | ~np.isfinite(self.row_weight))
        if bad.size:
            k = np.searchsorted(self.row_ptr, bad[0], side="right") - 1
            raise RestraintError(f"{name} proxy {k}: sigma must be positive and finite")
        self.max_atoms = int(counts.max()) if m else 1
        self.max_rows = int(np.diff(self.row_ptr).max()) if m else 1
        self.max_index = int(atom_index.max()) if n_flat else -1
        # position of each proxy atom among the distinct atoms of its proxy
        key = proxy_of * (self.max_index + 1) + self.atom_index
        uniq, inverse = np.unique(key, return_inverse=True)
        uniq_proxy = uniq // (self.max_index + 1) if uniq.size else uniq
        first = np.searchsorted(uniq_proxy, np.arange(m))
        self.atom_slot = np.ascontiguousarray(inverse.reshape(-1) - first[proxy_of],
                                              dtype=np.int32)
        self.n_distinct = np.bincount(uniq_proxy, minlength=m).astype(np.int64)
        # The residual sum runs the proxies without mates (the fast loops) and
        # those with mates as two groups; rows and deltas keep the given order.
        mate = (self.atom_op >= 0) | np.any(self.atom_shift != 0, axis=1)
        with_mates = np.zeros(m, dtype=bool)
        np.logical_or.at(with_mates, proxy_of, mate)
        self._kernels = [(np.flatnonzero(sel), self._residual_kernel(np.flatnonzero(sel),
                                                                     simple))
                         for sel, simple in ((~with_mates, True), (with_mates, False))
                         if sel.any()]

    def _residual_kernel(self, proxies, simple):
        """The residual-sum kernel of a subset of the proxies (indices)."""
        counts = np.diff(self.proxy_ptr)[proxies]
        atoms = np.repeat(self.proxy_ptr[proxies], counts) + _ranges(counts)
        n_rows = np.diff(self.row_ptr)[proxies]
        rows = np.repeat(self.row_ptr[proxies], n_rows) + _ranges(n_rows)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        row_ptr = np.concatenate([[0], np.cumsum(n_rows)])
        rot, urot = self._symmetry_arrays()
        params = np.ascontiguousarray(self.params[proxies])
        return _kernels.ResidualSum(
            self.kind, ptr.astype(np.int64), row_ptr.astype(np.int64),
            np.ascontiguousarray(self.atom_index[atoms]),
            np.ascontiguousarray(self.atom_op[atoms]),
            np.ascontiguousarray(self.atom_trans[atoms]),
            np.ascontiguousarray(self.row_weight[rows]), params,
            np.ascontiguousarray(params[:, 0]), rot, urot, self._nu(), simple,
            self.max_atoms, self.max_rows)

    def __len__(self):
        return self.proxy_ptr.size - 1

    @property
    def n_rows(self):
        return int(self.row_ptr[-1])

    @property
    def weights(self):
        """1/sigma^2 of every row, float64 (n_rows,)."""
        return self.row_weight

    def proxy_atoms(self, k):
        """Atom indices of proxy k."""
        return self.atom_index[self.proxy_ptr[k]:self.proxy_ptr[k + 1]]

    # -- input checks at the public edge --------------------------------------

    def _nu(self):
        return {None: 0, "u_cart": 6, "u_iso": 1}[self.adp]

    def _check_array(self, what, values, width):
        arr = np.ascontiguousarray(values, dtype=np.float64)
        if width == 1 and arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise RestraintError(f"{self.name}: {what} must have shape (n, {width}); "
                                 f"got {np.shape(values)}")
        if self.max_index >= arr.shape[0]:
            bad = np.flatnonzero(self.atom_index >= arr.shape[0])[0]
            raise RestraintError(f"{self.name} proxy {self._proxy_of(bad)}: atom index "
                                 f"{self.atom_index[bad]} is out of range for "
                                 f"{arr.shape[0]} atoms")
        return arr

    def _proxy_of(self, flat_atom):
        return int(np.searchsorted(self.proxy_ptr, flat_atom, side="right") - 1)

    def _check_finite(self, sites, u):
        """Raise naming the first proxy that uses a non-finite site or ADP (the
        kernels run unchecked; this runs when their result is not finite)."""
        for what, arr in (("sites_cart", sites), (self.adp, u)):
            if arr is None or arr.size == 0:
                continue
            used = ~np.isfinite(arr).all(axis=1)[self.atom_index]
            if used.any():
                bad = np.flatnonzero(used)[0]
                raise RestraintError(f"{self.name} proxy {self._proxy_of(bad)}: atom "
                                     f"{self.atom_index[bad]} has non-finite {what}")

    def _inputs(self, sites_cart, u):
        sites = self._check_array("sites_cart", sites_cart, 3)
        nu = self._nu()
        if nu:
            if u is None:
                raise RestraintError(f"{self.name}: needs {self.adp}")
            uu = self._check_array(self.adp, u, nu)
            if uu.shape[0] != sites.shape[0]:
                raise RestraintError(f"{self.name}: {self.adp} has {uu.shape[0]} rows "
                                     f"but sites_cart {sites.shape[0]}")
        else:
            uu = _NO_U
        return sites, uu

    def _symmetry_arrays(self):
        if self.symmetry is None:
            return _NO_ROT, _NO_UROT
        return self.symmetry.rot_cart, self.symmetry.u_rot

    def _frame_matrices(self, frame):
        if frame == "cart":
            return _EYE3, _EYE6
        if frame == "frac":
            if self.symmetry is None:
                raise RestraintError(f"{self.name}: frame='frac' needs a Symmetry "
                                     "(for the orthogonalisation matrix)")
            a = self.symmetry.orthogonalisation
            return np.ascontiguousarray(a.T), np.ascontiguousarray(u_transform(a).T)
        raise RestraintError(f"{self.name}: frame must be 'cart' or 'frac'; got {frame!r}")

    def _raise_status(self, bad, status, sites, u):
        self._check_finite(sites, u)
        if bad >= 0:
            atoms = " ".join(str(i) for i in self.proxy_atoms(bad))
            raise RestraintError(f"{self.name} proxy {bad} (atoms {atoms}): "
                                 f"{_STATUS.get(status, 'failed')}")

    # -- evaluation -----------------------------------------------------------

    def _residual_sum(self, sites_cart, u, gradients_out, u_gradients_out, frame,
                      n_threads):
        sites, uu = self._inputs(sites_cart, u)
        site_post, u_post = self._frame_matrices(frame)
        n = sites.shape[0]
        nu = self._nu()
        n_threads = max(1, int(n_threads))
        # with one thread in the Cartesian frame the kernel adds straight into
        # the caller's arrays; otherwise into per-thread accumulators
        direct = n_threads == 1 and frame == "cart"
        gs, gs_done = _accumulator(self.name, "gradients_out", gradients_out, (n, 3),
                                   n_threads, direct)
        gu, gu_done = _accumulator(self.name, "u_gradients_out", u_gradients_out,
                          (n, nu) if nu else (0, 0), n_threads, direct and nu > 0)
        total, bad, status = 0.0, -1, 0
        for proxies, kernel in self._kernels:
            part, part_bad, status = kernel(sites, uu, gs, gu, n_threads)
            total += part
            if part_bad >= 0:
                bad = proxies[part_bad]
                break
        if bad >= 0 or not np.isfinite(total):
            self._raise_status(bad, status, sites, uu)
            raise RestraintError(f"{self.name}: the residual sum is not finite ({total})")
        if gradients_out is not None and not gs_done:
            gradients_out += gs.sum(axis=0) @ site_post.T
        if u_gradients_out is not None and nu and not gu_done:
            g = gu.sum(axis=0)
            u_gradients_out += g @ u_post.T if nu == 6 else g[:, 0]
        return total

    def _rows(self, sites_cart, u, frame, n_threads, want_rows=True):
        sites, uu = self._inputs(sites_cart, u)
        site_post, u_post = self._frame_matrices(frame)
        n = sites.shape[0]
        nu = self._nu()
        row_counts = np.diff(self.row_ptr)
        nd = np.repeat(self.n_distinct, row_counts)
        site_indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        u_indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        if want_rows:
            if self.has_sites:
                np.cumsum(3 * nd, out=site_indptr[1:])
            np.cumsum(nu * nd, out=u_indptr[1:])
        site_indices = np.empty(site_indptr[-1], dtype=np.int64)
        site_data = np.empty(site_indptr[-1])
        u_indices = np.empty(u_indptr[-1], dtype=np.int64)
        u_data = np.empty(u_indptr[-1])
        deltas = np.empty(self.n_rows)
        rot, urot = self._symmetry_arrays()
        bad, status = _kernels.design_rows(
            self.kind, self.proxy_ptr, self.row_ptr, self.atom_index, self.atom_op,
            self.atom_trans, self.atom_slot, self.row_weight, self.params, rot, urot,
            sites, uu, site_post, u_post, site_indptr, site_indices, site_data,
            u_indptr, u_indices, u_data, deltas, want_rows, self.max_atoms,
            self.max_rows, max(1, int(n_threads)))
        if bad >= 0 or not np.all(np.isfinite(deltas)):
            self._raise_status(bad, status, sites, uu)
            raise RestraintError(f"{self.name}: non-finite residuals")
        if not want_rows:
            return deltas
        shape = (self.n_rows, 3 * n)
        rows = DesignRows(sites=sp.csr_matrix((site_data, site_indices, site_indptr),
                                              shape=shape),
                          deltas=deltas, weights=self.row_weight.copy())
        if nu:
            setattr(rows, self.adp,
                    sp.csr_matrix((u_data, u_indices, u_indptr), shape=(self.n_rows, nu * n)))
        return rows

    def _statistics(self, sites_cart, u, labels, n_worst):
        deltas = self._rows(sites_cart, u, "cart", 1, want_rows=False)
        m = len(self)
        if deltas.size == 0:
            return Statistics(self.name, m, 0, 0.0, 0.0, [])
        z = np.abs(deltas) * np.sqrt(self.row_weight)
        proxy_z = np.maximum.reduceat(z, self.row_ptr[:-1]) if m else z
        worst = []
        for k in np.argsort(-proxy_z, kind="stable")[:n_worst]:
            atoms = self.proxy_atoms(k)
            worst.append(WorstProxy(
                int(k), tuple(labels[i] if labels is not None else int(i) for i in atoms),
                deltas[self.row_ptr[k]:self.row_ptr[k + 1]].copy(), float(proxy_z[k])))
        return Statistics(self.name, m, deltas.size, float(np.sqrt(np.mean(deltas ** 2))),
                          float(np.sqrt(np.mean(z ** 2))), worst)


def _ranges(counts):
    """0..c-1 for every c in counts, concatenated."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum())) - starts


def _accumulator(name, what, out, shape, n_threads, direct):
    """The (n_threads, n, k) array the kernel adds gradients into, and whether
    it is a view of ``out`` itself (else zeros to be summed into ``out``)."""
    if out is not None:
        if (not isinstance(out, np.ndarray) or out.dtype != np.float64
                or out.size != int(np.prod(shape))
                or out.shape not in (shape, shape[:1] if shape[1:] == (1,) else shape)):
            raise RestraintError(f"{name}: {what} must be a float64 array of shape "
                                 f"{shape if shape[1:] != (1,) else shape[:1]}")
        if direct and out.flags.c_contiguous:
            return out.reshape((1,) + shape), True
    return np.zeros((n_threads,) + shape), False


class GeometryProxies(_Proxies):
    """Restraints on sites only."""

    def residual_sum(self, sites_cart, gradients_out=None, *, frame="cart", n_threads=1):
        """Weighted residual sum sum w Delta^2.

        Parameters
        ----------
        sites_cart : float64 (n, 3)
        gradients_out : float64 (n, 3), optional
            The gradient of the sum is *added* to it (w.r.t. Cartesian sites, or
            fractional sites with frame="frac").
        frame : "cart" or "frac"
        n_threads : int

        Returns
        -------
        float
        """
        return self._residual_sum(sites_cart, None, gradients_out, None, frame, n_threads)

    def design_rows(self, sites_cart, *, frame="cart", n_threads=1):
        """CSR rows d value / d site, deltas and weights (a DesignRows)."""
        return self._rows(sites_cart, None, frame, n_threads)

    def deltas(self, sites_cart):
        """Delta = target - value for every row, float64 (n_rows,)."""
        return self._rows(sites_cart, None, "cart", 1, want_rows=False)

    def statistics(self, sites_cart, labels=None, n_worst=5):
        """rmsd, rms Z and the worst proxies (with atom labels if given)."""
        return self._statistics(sites_cart, None, labels, n_worst)


class AdpProxies(_Proxies):
    """Restraints on ADPs (U_cart (n, 6) or U_iso (n,)), possibly depending on
    the sites too."""
    adp = "u_cart"

    def residual_sum(self, sites_cart, u, gradients_out=None, u_gradients_out=None, *,
                     frame="cart", n_threads=1):
        """Weighted residual sum sum w Delta^2.

        Parameters
        ----------
        sites_cart : float64 (n, 3)
        u : float64 (n, 6) U_cart (order 11, 22, 33, 12, 13, 23) or (n,) U_iso
        gradients_out : float64 (n, 3), optional; the site gradient is added to it.
        u_gradients_out : float64 (n, 6) or (n,), optional; the U gradient is added
            (w.r.t. U_cart, or U* with frame="frac"; off-diagonals as in DESIGN.md §2).
        """
        return self._residual_sum(sites_cart, u, gradients_out, u_gradients_out, frame,
                                  n_threads)

    def design_rows(self, sites_cart, u, *, frame="cart", n_threads=1):
        """CSR rows d value / d site and d value / d U (in ``rows.u_cart`` or
        ``rows.u_iso``), deltas and weights (a DesignRows)."""
        return self._rows(sites_cart, u, frame, n_threads)

    def deltas(self, sites_cart, u):
        """Delta = target - value for every row, float64 (n_rows,)."""
        return self._rows(sites_cart, u, "cart", 1, want_rows=False)

    def statistics(self, sites_cart, u, labels=None, n_worst=5):
        """rmsd, rms Z and the worst proxies (with atom labels if given)."""
        return self._statistics(sites_cart, u, labels, n_worst)


def _simple(cls, i_seqs, size, target_columns, sigma, sym_ops, shifts, symmetry,
            rows_per_proxy=1, row_factors=None):
    """Set up a type with a fixed number of atoms and rows per proxy."""
    ptr, flat = _groups(cls.name, i_seqs, size)
    m = ptr.size - 1
    sig = _per_proxy(cls.name, "sigma", sigma, m, positive=True)
    w = 1.0 / sig ** 2
    factors = np.ones(rows_per_proxy) if row_factors is None else row_factors
    row_weight = (w[:, None] * factors[None, :]).reshape(-1)
    row_ptr = np.arange(m + 1, dtype=np.int64) * rows_per_proxy
    params = (np.column_stack([np.broadcast_to(c, (m,)) for c in target_columns])
              if target_columns else np.zeros((m, 1)))
    cls._setup(ptr, flat, sym_ops, shifts, params, row_ptr, row_weight, symmetry)


# ---------------------------------------------------------------------------
# geometry

class BondProxies(GeometryProxies):
    """Bond distances: Delta = d_ideal - |x_j - x_i| (Angstrom).

    Parameters
    ----------
    i_seqs : int (m, 2)
    distance_ideal : float64 (m,) or scalar
    sigma : float64 (m,) or scalar; weight 1/sigma^2
    sym_ops : int (m, 2), optional
        Per atom an operation index into ``symmetry`` or -1 (none).
    shifts : int (m, 2, 3), optional
        Per atom a lattice shift (fractional, applied after the operation).
    symmetry : Symmetry, optional
    """
    kind = _kernels.BOND
    name = "bond"

    def __init__(self, i_seqs, distance_ideal, sigma, sym_ops=None, shifts=None,
                 symmetry=None):
        m = len(i_seqs)
        _simple(self, i_seqs, 2, [_per_proxy(self.name, "distance_ideal", distance_ideal, m)],
                sigma, sym_ops, shifts, symmetry)


class BumpProxies(GeometryProxies):
    """One-sided distances (SHELXL BUMP): Delta = d_min - d when d < d_min,
    else 0."""
    kind = _kernels.BUMP
    name = "bump"

    def __init__(self, i_seqs, distance_min, sigma, sym_ops=None, shifts=None,
                 symmetry=None):
        m = len(i_seqs)
        _simple(self, i_seqs, 2, [_per_proxy(self.name, "distance_min", distance_min, m,
                                             positive=True)],
                sigma, sym_ops, shifts, symmetry)


class NonbondedProxies(GeometryProxies):
    """Non-bonded repulsion of the prolsq kind (as cctbx's
    prolsq_repulsion_function): for d < d0 = k_rep * vdw_distance,
    w Delta^2 = c_rep (d0^irexp - d^irexp)^rexp, i.e. Delta = s^(rexp/2) with
    s = d0^irexp - d^irexp and weight c_rep; zero beyond d0.  The defaults
    (c_rep 16, k_rep 1, irexp 1, rexp 4) give 16 (d0 - d)^4.

    Pairs usually come from :func:`restraintstbx.find_pairs`.
    """
    kind = _kernels.NONBONDED
    name = "nonbonded"

    def __init__(self, i_seqs, vdw_distance, sym_ops=None, shifts=None, symmetry=None,
                 c_rep=16.0, k_rep=1.0, irexp=1.0, rexp=4.0):
        m = len(i_seqs)
        if not (c_rep > 0 and k_rep > 0 and irexp > 0 and rexp >= 2):
            raise RestraintError("nonbonded: need c_rep > 0, k_rep > 0, irexp > 0, rexp >= 2")
        d0 = k_rep * _per_proxy(self.name, "vdw_distance", vdw_distance, m, positive=True)
        _simple(self, i_seqs, 2, [d0, float(irexp), float(rexp)], c_rep ** -0.5,
                sym_ops, shifts, symmetry)
        self.c_rep = c_rep

    @classmethod
    def from_pairs(cls, pairs, vdw_distance, symmetry=None, **function):
        """From :func:`find_pairs` output; vdw_distance scalar or per pair."""
        return cls(pairs.i_seqs, vdw_distance, pairs.sym_ops, pairs.shifts, symmetry,
                   **function)


class AngleProxies(GeometryProxies):
    """Bond angles i-j-k (j the vertex), in degrees: Delta = ideal - angle."""
    kind = _kernels.ANGLE
    name = "angle"

    def __init__(self, i_seqs, angle_ideal, sigma, sym_ops=None, shifts=None,
                 symmetry=None):
        m = len(i_seqs)
        _simple(self, i_seqs, 3, [_per_proxy(self.name, "angle_ideal", angle_ideal, m)],
                sigma, sym_ops, shifts, symmetry)


class DihedralProxies(GeometryProxies):
    """Dihedral angles i-j-k-l (IUPAC sign), in degrees.

    The difference ideal - angle is reduced to (-180/n, 180/n] for periodicity
    n.  ``form="harmonic"``: Delta is that difference; ``form="sinusoidal"``:
    Delta = (P/pi) sin(pi d / P) with P = 360/n, so that
    w Delta^2 = w (P/pi)^2 (1 - cos(2 pi d / P))/2, a smooth periodic potential
    equal to the harmonic one for small d.
    """
    kind = _kernels.DIHEDRAL
    name = "dihedral"

    def __init__(self, i_seqs, angle_ideal, sigma, periodicity=1, form="harmonic",
                 sym_ops=None, shifts=None, symmetry=None):
        m = len(i_seqs)
        per = _per_proxy(self.name, "periodicity", periodicity, m, positive=True)
        bad = np.flatnonzero(per != np.round(per))
        if bad.size:
            raise RestraintError(f"dihedral proxy {bad[0]}: periodicity must be a "
                                 f"positive integer; got {per[bad[0]]}")
        if form not in ("harmonic", "sinusoidal"):
            raise RestraintError(f"dihedral: form must be 'harmonic' or 'sinusoidal'; "
                                 f"got {form!r}")
        _simple(self, i_seqs, 4, [_per_proxy(self.name, "angle_ideal", angle_ideal, m), per,
                                  float(form == "sinusoidal")],
                sigma, sym_ops, shifts, symmetry)


class ChiralityProxies(GeometryProxies):
    """Chiral volumes (x1-x0).((x2-x0)x(x3-x0)) with x0 the centre, in
    Angstrom^3.  With both_signs the target is +|ideal| or -|ideal|, whichever
    has the sign of the current volume."""
    kind = _kernels.CHIRALITY
    name = "chirality"

    def __init__(self, i_seqs, volume_ideal, sigma, both_signs=False, sym_ops=None,
                 shifts=None, symmetry=None):
        m = len(i_seqs)
        both = np.broadcast_to(np.asarray(both_signs, dtype=np.float64), (m,))
        _simple(self, i_seqs, 4, [_per_proxy(self.name, "volume_ideal", volume_ideal, m),
                                  both],
                sigma, sym_ops, shifts, symmetry)


def _sigma_per_row(name, sigma, counts):
    """sigma as a scalar, one value per proxy, or per proxy a scalar or one
    value per row; returns one positive value per row."""
    m = counts.size
    if np.isscalar(sigma) or (isinstance(sigma, np.ndarray) and sigma.ndim == 0):
        sig = np.full(int(counts.sum()), float(sigma))
    else:
        if len(sigma) != m:
            raise RestraintError(f"{name}: sigma must be a scalar or one entry per proxy "
                                 f"({m}); got {len(sigma)}")
        parts = []
        for k, (s, c) in enumerate(zip(sigma, counts)):
            s = np.asarray(s, dtype=np.float64)
            if s.ndim == 0:
                s = np.full(c, float(s))
            if s.shape != (c,):
                raise RestraintError(f"{name} proxy {k}: sigma must be a scalar or {c} "
                                     f"values; got shape {s.shape}")
            parts.append(s)
        sig = np.concatenate(parts) if parts else np.zeros(0)
    bad = np.flatnonzero(~(sig > 0) | ~np.isfinite(sig))
    if bad.size:
        k = np.searchsorted(np.cumsum(counts), bad[0], side="right")
        raise RestraintError(f"{name} proxy {k}: sigma must be positive and finite; "
                             f"got {sig[bad[0]]}")
    return sig


def _grouped(cls, atoms, sigma, sym_ops, shifts, symmetry, target=None, min_atoms=4):
    """Set up a type with one row per atom (planes, U_eq and volume groups):
    ``sigma`` per atom (a list of sequences) or per group (a sequence)."""
    ptr, flat = _groups(cls.name, atoms)
    m = ptr.size - 1
    counts = np.diff(ptr)
    cls.min_atoms = min_atoms
    sig = _sigma_per_row(cls.name, sigma, counts)
    params = np.zeros((m, 1)) if target is None else target.reshape(m, 1)
    cls._setup(ptr, flat, sym_ops, shifts, params, ptr.copy(), 1.0 / sig ** 2, symmetry)


class PlanarityProxies(GeometryProxies):
    """Least-squares planes over any number (>= 4) of atoms.

    For a plane with atoms x_i and weights w_i = 1/sigma_i^2, the rows are the
    distances d_i = n.(x_i - c) from the weighted least-squares plane (c the
    weighted centroid, n the eigenvector of the smallest eigenvalue of
    sum w_i (x_i - c)(x_i - c)^T), target 0.  The residual sum of a plane is
    that smallest eigenvalue (cctbx's planarity restraint).
    """
    kind = _kernels.PLANARITY
    name = "planarity"

    def __init__(self, atoms, sigma, sym_ops=None, shifts=None, symmetry=None):
        _grouped(self, atoms, sigma, sym_ops, shifts, symmetry)


class FlatProxies(GeometryProxies):
    """SHELXL FLAT: for atoms a1..ap (p >= 4), the p - 3 chiral volumes of the
    tetrahedra (a1, a2, a3, ak), k = 4..p, restrained to zero (Angstrom^3,
    default sigma 0.1 as SHELXL's DEFS).  The volume is the triple product
    (a2-a1).((a3-a1)x(ak-a1)), as for CHIV.  So the first three atoms should
    span a large triangle (e.g. alternate atoms of a six-membered ring)."""
    kind = _kernels.FLAT
    name = "flat"

    def __init__(self, atoms, sigma=0.1, sym_ops=None, shifts=None, symmetry=None):
        ptr, flat = _groups(self.name, atoms)
        m = ptr.size - 1
        self.min_atoms = 4
        rows = np.maximum(np.diff(ptr) - 3, 0)
        row_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(rows, out=row_ptr[1:])
        sig = _per_proxy(self.name, "sigma", sigma, m, positive=True)
        self._setup(ptr, flat, sym_ops, shifts, np.zeros((m, 1)), row_ptr,
                    np.repeat(1.0 / sig ** 2, rows), symmetry)


class BondSimilarityProxies(GeometryProxies):
    """Similar distances (SHELXL SADI, cctbx bond_similarity): for pairs
    l = 1..k with weights w_l, Delta_l = mean - d_l with the weighted mean
    sum w_l d_l / sum w_l; the residual sum is the weighted variance
    sum w_l (d_l - mean)^2.

    Parameters
    ----------
    pairs : list of (k, 2) int arrays (k >= 2; at most 32 pairs)
    sigma : per group (sequence of m) or per pair (list of (k,) arrays)
    sym_ops, shifts : per group (k, 2) and (k, 2, 3), optional
    """
    kind = _kernels.BOND_SIMILARITY
    name = "bond similarity"

    def __init__(self, pairs, sigma, sym_ops=None, shifts=None, symmetry=None):
        groups = [np.asarray(g) for g in pairs]
        for k, g in enumerate(groups):
            if g.ndim != 2 or g.shape[1] != 2 or not 2 <= g.shape[0] <= 32:
                raise RestraintError(f"bond similarity proxy {k}: expected (k, 2) atom "
                                     f"pairs with 2 <= k <= 32; got shape {g.shape}")
        ptr, flat = _groups(self.name, [g.reshape(-1) for g in groups])
        m = ptr.size - 1
        n_pairs = np.array([g.shape[0] for g in groups], dtype=np.int64)
        row_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(n_pairs, out=row_ptr[1:])
        sig = _sigma_per_row(self.name, sigma, n_pairs)
        self._setup(ptr, flat, sym_ops, shifts, np.zeros((m, 1)), row_ptr,
                    1.0 / sig ** 2, symmetry)


# ---------------------------------------------------------------------------
# ADPs

class RigidBondProxies(AdpProxies):
    """Rigid bond (SHELXL DELU, Hirshfeld): Delta = n^T U_j n - n^T U_i n, n the
    unit vector along the bond i-j (zero when both ADPs have the same
    component along the bond).  Depends on the sites through n."""
    kind = _kernels.RIGID_BOND
    name = "rigid bond"

    def __init__(self, i_seqs, sigma=0.01, sym_ops=None, shifts=None, symmetry=None):
        _simple(self, i_seqs, 2, [], sigma, sym_ops, shifts, symmetry)


class RiguProxies(AdpProxies):
    """Enhanced rigid bond (SHELXL RIGU, Thorn, Dittrich & Sheldrick 2012).

    In a frame with z along the bond, RIGU restrains dU33, dU13 and dU23
    (dU = U_i - U_j) to zero.  These are the components of the vector dU n, so
    the three rows are the Cartesian components of dU n: the residual sum and
    the normal-equation contributions are those of the local-frame rows (an
    orthogonal rotation of the rows), without choosing the x and y axes.
    """
    kind = _kernels.RIGU
    name = "rigu"

    def __init__(self, i_seqs, sigma=0.004, sym_ops=None, shifts=None, symmetry=None):
        _simple(self, i_seqs, 2, [], sigma, sym_ops, shifts, symmetry, rows_per_proxy=3)


class AdpSimilarityProxies(AdpProxies):
    """ADP similarity (SHELXL SIMU on anisotropic atoms): rows U_j - U_i for the
    six components, the off-diagonal rows with weight 2/sigma^2, so the
    residual sum is |U_i - U_j|_F^2 / sigma^2 (invariant under rotations)."""
    kind = _kernels.ADP_SIMILARITY
    name = "adp similarity"
    has_sites = False

    def __init__(self, i_seqs, sigma=0.04, sym_ops=None, shifts=None, symmetry=None):
        _simple(self, i_seqs, 2, [], sigma, sym_ops, shifts, symmetry, rows_per_proxy=6,
                row_factors=_U_ROW_FACTORS)


class IsotropicAdpProxies(AdpProxies):
    """Near-isotropic ADP (SHELXL ISOR): rows the six components of
    U - U_eq I (target 0), weights as AdpSimilarityProxies, so the residual
    sum is |U - U_eq I|_F^2 / sigma^2."""
    kind = _kernels.ISOTROPIC_ADP
    name = "isotropic adp"
    has_sites = False

    def __init__(self, i_seqs, sigma=0.1, sym_ops=None, shifts=None, symmetry=None):
        i_seqs = np.asarray(i_seqs).reshape(-1, 1)
        _simple(self, i_seqs, 1, [], sigma, sym_ops, shifts, symmetry, rows_per_proxy=6,
                row_factors=_U_ROW_FACTORS)


class UeqSimilarityProxies(AdpProxies):
    """Similar U_eq = trace(U_cart)/3 over a group of atoms (>= 2):
    Delta_i = mean - U_eq,i with the weighted mean.  For isotropic atoms pass
    U_cart = (u, u, u, 0, 0, 0); d/d U_iso is the sum of the three diagonal
    derivatives."""
    kind = _kernels.UEQ_SIMILARITY
    name = "u_eq similarity"
    has_sites = False

    def __init__(self, atoms, sigma, sym_ops=None, shifts=None, symmetry=None):
        _grouped(self, atoms, sigma, sym_ops, shifts, symmetry, min_atoms=2)


class FixedUeqProxies(AdpProxies):
    """U_eq of single atoms restrained to a target: Delta = target - U_eq."""
    kind = _kernels.FIXED_UEQ
    name = "fixed u_eq"
    has_sites = False

    def __init__(self, i_seqs, u_eq_target, sigma):
        i_seqs = np.asarray(i_seqs).reshape(-1, 1)
        m = i_seqs.shape[0]
        _simple(self, i_seqs, 1, [_per_proxy(self.name, "u_eq_target", u_eq_target, m)],
                sigma, None, None, None)


class AdpVolumeSimilarityProxies(AdpProxies):
    """Similar ellipsoid volumes V = (4 pi/3) sqrt(det U_cart) over a group
    (>= 2): Delta_i = mean - V_i with the weighted mean (V and sigma in
    Angstrom^3, U in Angstrom^2)."""
    kind = _kernels.VOLUME_SIMILARITY
    name = "adp volume similarity"
    has_sites = False

    def __init__(self, atoms, sigma, sym_ops=None, shifts=None, symmetry=None):
        _grouped(self, atoms, sigma, sym_ops, shifts, symmetry, min_atoms=2)


class BSimilarityProxies(AdpProxies):
    """Similar isotropic ADPs of bonded atoms (macromolecular B restraints),
    on U_iso: Delta = U_iso,j - U_iso,i.  A sigma given for B converts as
    sigma_U = sigma_B / (8 pi^2)."""
    kind = _kernels.B_SIMILARITY
    name = "b similarity"
    adp = "u_iso"
    has_sites = False

    def __init__(self, i_seqs, sigma, sym_ops=None, shifts=None, symmetry=None):
        _simple(self, i_seqs, 2, [], sigma, sym_ops, shifts, symmetry)


# ---------------------------------------------------------------------------

class RestraintSet:
    """Several restraint types added up.

    Parameters
    ----------
    terms : iterable of proxies objects (BondProxies, ...)
    """

    def __init__(self, terms=()):
        self.terms = []
        for t in terms:
            self.add(t)

    def add(self, proxies):
        if not isinstance(proxies, _Proxies):
            raise RestraintError(f"RestraintSet: expected restraint proxies, got "
                                 f"{type(proxies).__name__}")
        self.terms.append(proxies)
        return self

    def _u(self, term, u_cart, u_iso):
        if term.adp == "u_cart":
            return u_cart
        if term.adp == "u_iso":
            return u_iso
        return None

    def residual_sum(self, sites_cart, u_cart=None, u_iso=None, gradients_out=None,
                     u_cart_gradients_out=None, u_iso_gradients_out=None, *,
                     frame="cart", n_threads=1):
        """Sum of every term's weighted residual sum; gradients are added into
        the given arrays (sites (n,3), U_cart (n,6), U_iso (n,))."""
        total = 0.0
        for term in self.terms:
            if term.adp is None:
                total += term.residual_sum(sites_cart, gradients_out, frame=frame,
                                           n_threads=n_threads)
            else:
                total += term.residual_sum(
                    sites_cart, self._u(term, u_cart, u_iso), gradients_out,
                    u_cart_gradients_out if term.adp == "u_cart" else u_iso_gradients_out,
                    frame=frame, n_threads=n_threads)
        return total

    def design_rows(self, sites_cart, u_cart=None, u_iso=None, *, frame="cart",
                    n_threads=1):
        """All terms' rows stacked (DesignRows)."""
        blocks = []
        for term in self.terms:
            if term.adp is None:
                blocks.append(term.design_rows(sites_cart, frame=frame, n_threads=n_threads))
            else:
                blocks.append(term.design_rows(sites_cart, self._u(term, u_cart, u_iso),
                                               frame=frame, n_threads=n_threads))
        return DesignRows.stack(blocks, np.shape(sites_cart)[0])

    def statistics(self, sites_cart, u_cart=None, u_iso=None, labels=None, n_worst=5):
        """A list of Statistics, one per term."""
        out = []
        for term in self.terms:
            if term.adp is None:
                out.append(term.statistics(sites_cart, labels, n_worst))
            else:
                out.append(term.statistics(sites_cart, self._u(term, u_cart, u_iso),
                                           labels, n_worst))
        return out

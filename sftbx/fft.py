"""Structure factors and target gradients by FFT, for large models.

Method (DESIGN.md section 4).  The atoms of the model (the asymmetric unit,
not their symmetry images) are sampled on a P1 grid of the whole cell: atom
a, term g of its form factor (four IT92 Gaussians a_g exp(-b_g s^2/4) and the
constant c + f'), convolved with its ADP and an added blur B_add, is the
Gaussian density

    rho_ag(r) = w_a a_g (2 pi)^-3/2 det(U_ag)^-1/2 exp(-1/2 r^T U_ag^-1 r),
    U*_ag = U*_a + (b_g + B_add) / (8 pi^2) G*   (U*_a = u_iso G* if isotropic),

with w_a = occupancy * multiplicity / order_z, sampled out to the radius
where each term's peak has fallen to ``cutoff`` sum_g |a_g| / n_terms (so
that about that fraction of the atom's scattering power is left out).  A
real FFT of the grid gives the Fourier coefficients of that density, F1(k) = exp(B_add s^2/4) (V/N) sum_p rho(p)
exp(2 pi i k p/N), for every k of the grid; since a symmetry image (R, t)
contributes exp(2 pi i h t) F1(hR),

    F(h) = sum_(R,t) exp(2 pi i h t) F1(hR)         (all order_z operations)

for any hkl, in or out of the asymmetric unit.  Sampling only the
asymmetric unit divides the density work by order_z.

Gradients of a target T(A, B), F = A + iB, follow from the same discrete
model (they are the derivatives of the F computed here, up to the cut-off:
the sampling radii follow the ADPs): with D_h = dT/dA + i dT/dB, the map

    m(p) = Re sum_h sum_(R,t) conj(D_h scale_h exp(-2 pi i h t)) exp(2 pi i (hR) p/N)

(one inverse real FFT, in single precision) gives dT/dp = sum_grid m d rho/dp,
and d rho/dp for a site, U*, u_iso or occupancy is a Gaussian times a
polynomial in the offset, so per atom only the moments sum m e_g,
sum m e_g d and sum m e_g d d^T of each term's exponential e_g are needed
(_fft.map_moments).

Accuracy: aliasing falls as exp(-B_eff (s_alias^2 - s^2)/4) with
s_alias >= (2 rate - 1)/d_min, so B_add is chosen such that the sharpest atom
has B_eff = B_min + B_add >= ln(1/alias) d_min^2 / (rate (rate - 1)); the
cut-off bounds the truncation error.  ``ACCURACY`` holds the settings
measured to give amplitude R(FFT, direct) below 1e-3 ("default") and 1e-5
("fine") on the shared macromolecular models (tests/sftbx/test_fft_data.py).
"""

import numpy as np
import scipy.fft

from . import _fft
from .direct import StructureFactors, _hkl_array
from .errors import ScatteringError
from .scatterers import SLOT_INDEX, ParameterMap, Scatterers
from .scattering import form_factor_table

EIGHT_PI_SQ = 8.0 * np.pi**2

# rate: grid spacing <= d_min / (2 rate); alias: target aliasing level that
# fixes B_add; cutoff: fraction of an atom's scattering power left outside its
# sampling sphere; single: the forward FFT in single precision.  Measured on
# the seven shared models (600 reflections each): default R 0.5e-4..2.2e-4,
# fine R 1.3e-6..2.4e-6.  The default keeps DESIGN.md's grid of d_min/3
# (rate 1.5) and takes from a scan over alias 0.03-0.1 and cutoff
# 3e-4-1e-3 (benchmarks/fft.py's four cases) the smaller cut-off: the error
# in F that remains is mostly the truncation, which the unblurring
# exp(B_add s^2/4) amplifies at high resolution.  A coarser grid (rate 1.25,
# d_min/2.5) with the larger blur it needs was a fifth faster at the same R;
# alias 0.06 a few per cent faster, but the gradients' error (aliasing of
# the density's derivatives) rose to 1-2% of the largest
# (tests/sftbx/test_fft.py); at 0.03 it is <= 0.34%.
ACCURACY = {
    "default": dict(rate=1.5, alias=0.03, cutoff=3e-4, single=True),
    "fine": dict(rate=1.5, alias=1e-4, cutoff=3e-6, single=False),
}


class FFTError(ScatteringError):
    """Bad input for the FFT path: a grid too coarse for the resolution,
    non-finite sites, negative or non-positive-definite ADPs, bad settings."""


def _lcm(a, b):
    return a * b // np.gcd(a, b)


def _is_fast(n, factor):
    """n is a multiple of factor and of the form 2^a 3^b 5^c with c <= 1
    (pocketfft is markedly slower on lengths with more factors 5)."""
    if n % factor:
        return False
    for p in (2, 3):
        while n % p == 0:
            n //= p
    return n in (1, 5)


def grid_shape(unit_cell, space_group, d_min, rate=1.5, symmetry=True):
    """Grid of 2-3-5-smooth size with spacing at most d_min / (2 rate) along
    each cell edge.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    d_min : float
        Resolution (Angstrom) the grid must carry.
    rate : float
        Sampling rate, >= 1 (1 is the Nyquist limit for d_min).
    symmetry : bool
        Make the grid map onto itself under the space group (sizes divisible
        by the translations' denominators, equal along axes that the
        rotations exchange), as the solvent mask needs.

    Returns
    -------
    tuple of 3 int
    """
    d_min = float(d_min)
    rate = float(rate)
    if not np.isfinite(d_min) or d_min <= 0:
        raise FFTError(f"d_min: expected a positive resolution in Angstrom, got {d_min!r}")
    if not np.isfinite(rate) or rate < 1:
        raise FFTError(f"sampling rate {rate!r} is below 1: the grid could not carry "
                       f"d_min = {d_min} A")
    lengths = np.sqrt(np.diag(unit_cell.metric))
    need = np.ceil(2 * rate * lengths / d_min - 1e-9).astype(int)
    need = np.maximum(need, 2 * np.floor(lengths / d_min).astype(int) + 1)
    factor = np.ones(3, dtype=int)
    if symmetry:
        # sizes divisible by the denominators of the translations
        for t in np.vstack([space_group.translations, space_group.centring_vectors]):
            for i in range(3):
                num = int(round((t[i] - np.floor(t[i])) * 24)) % 24
                factor[i] = _lcm(factor[i], 24 // np.gcd(num, 24))
        # axes exchanged by a rotation share one size
        linked = np.eye(3, dtype=bool)
        for r in space_group.rotations:
            linked |= (r != 0)
        for i in range(3):
            for j in range(3):
                if linked[i, j]:
                    need[i] = need[j] = max(need[i], need[j])
                    factor[i] = factor[j] = _lcm(factor[i], factor[j])
    shape = []
    for n, f in zip(need, factor):
        n = int(n)
        while not _is_fast(n, int(f)):
            n += 1
        shape.append(n)
    if symmetry:
        for i in range(3):
            for j in range(3):
                if linked[i, j]:
                    shape[i] = shape[j] = max(shape[i], shape[j])
    return tuple(shape)


def visit_order(centres, block=8):
    """The atoms sorted by the block of ``block``^3 grid points their centre
    lies in (blocks in memory order): neighbours in space are sampled one
    after another, so that the grid lines they share are still in the cache.
    Models in file order are already roughly so; atoms in random order were
    sampled twice as slowly without it.

    Parameters
    ----------
    centres : float64 (n, 3)
        Atom centres in grid-index units, in [0, N).

    Returns
    -------
    intp (n,)
    """
    cell = np.floor(centres / block).astype(np.intp)
    top = cell.max(axis=0, initial=0) + 1
    key = (cell[:, 0] * top[1] + cell[:, 1]) * top[2] + cell[:, 2]
    return np.ascontiguousarray(np.argsort(key, kind="stable"), dtype=np.intp)


def _index_metric(unit_cell, shape):
    """Metric in grid-index units, (00, 11, 22, 01, 02, 12)."""
    d = 1.0 / np.asarray(shape, dtype=np.float64)
    m = unit_cell.metric * np.outer(d, d)
    return np.ascontiguousarray([m[0, 0], m[1, 1], m[2, 2], m[0, 1], m[0, 2], m[1, 2]])


def _sym(u):
    """(n, 6) in the order 11, 22, 33, 12, 13, 23 -> (n, 3, 3)."""
    m = np.empty(u.shape[:-1] + (3, 3))
    m[..., 0, 0], m[..., 1, 1], m[..., 2, 2] = u[..., 0], u[..., 1], u[..., 2]
    m[..., 0, 1] = m[..., 1, 0] = u[..., 3]
    m[..., 0, 2] = m[..., 2, 0] = u[..., 4]
    m[..., 1, 2] = m[..., 2, 1] = u[..., 5]
    return m


def _space_group_ops(space_group):
    return (np.ascontiguousarray(space_group.rotations, dtype=np.int32),
            np.ascontiguousarray(space_group.translations, dtype=np.float64))


def _hkl(hkl):
    return _hkl_array(hkl, FFTError)


def check_scatterers(scatterers):
    """Raise FFTError naming the first atom with a non-finite site or
    occupancy, a negative (or non-finite) u_iso, or a U* that is not
    positive semi-definite."""
    def fail(i, what):
        raise FFTError(f"atom {scatterers.labels[i]!r} ({scatterers.elements[i]}): {what}")
    for name, arr in (("site", scatterers.sites_frac), ("occupancy", scatterers.occupancies),
                      ("f'", scatterers.fp), ("f''", scatterers.fdp)):
        bad = ~np.isfinite(arr.reshape(len(scatterers), -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            fail(i, f"{name} is not finite: {arr[i]}")
    iso = ~scatterers.aniso
    bad = iso & ~(np.isfinite(scatterers.u_iso) & (scatterers.u_iso >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        fail(i, f"u_iso must be finite and >= 0 (B >= 0), got {scatterers.u_iso[i]}")
    aniso = np.flatnonzero(scatterers.aniso)
    if aniso.size:
        u = scatterers.u_star[aniso]
        bad = ~np.isfinite(u).all(axis=1)
        if bad.any():
            i = int(aniso[np.flatnonzero(bad)[0]])
            fail(i, f"u_star is not finite: {scatterers.u_star[i]}")
        low = np.linalg.eigvalsh(_sym(u)).min(axis=1)
        scale = np.abs(u[:, :3]).max(axis=1)
        bad = low < -1e-12 * np.maximum(scale, 1e-300)
        if bad.any():
            i = int(aniso[np.flatnonzero(bad)[0]])
            fail(i, f"u_star (11,22,33,12,13,23) = {scatterers.u_star[i]} is not positive "
                    f"semi-definite (a negative B)")


class FFTStructureFactors:
    """Structure factors of one structure for a set of reflections by FFT,
    and the gradient of a target; the same face as ``StructureFactors``
    (``f_calc``, ``gradients``) for large models.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    scatterers : Scatterers
        f'' must be zero (the FFT path has a real density).
    hkl : int (m, 3)
        Any reflections (in or out of the asymmetric unit).
    table : {"it92", "neutron", "electron"}
    accuracy : {"default", "fine"}
        Settings from ``ACCURACY``: amplitude R against direct summation
        <= 1e-3 ("default") or <= 1e-5 ("fine").
    rate, alias, cutoff : float, optional
        Override the settings: sampling rate (grid spacing <= d_min/(2 rate),
        >= 1), the aliasing level that fixes B_add, the relative cut-off.
    b_add : float, optional
        The added blur (A^2) instead of the one derived from ``alias``.
    d_min : float, optional
        Resolution of the grid (default: that of ``hkl``).
    shape : tuple of 3 int, optional
        The grid (default: from d_min and rate).
    multiplicities : float64 (n,), optional
        Site multiplicities; by default from ``sgtbx.SiteSymmetryTable``.
    n_threads : int

    Attributes
    ----------
    shape : tuple of 3 int
    b_add : float
        The blur of the last evaluation (A^2; it follows the smallest B when
        not given).
    """

    def __init__(self, unit_cell, space_group, scatterers, hkl, table="it92",
                 accuracy="default", rate=None, alias=None, cutoff=None, b_add=None,
                 d_min=None, shape=None, multiplicities=None, n_threads=1):
        if not isinstance(scatterers, Scatterers):
            raise FFTError("scatterers: expected an sftbx.Scatterers table")
        if len(scatterers) == 0:
            raise FFTError("scatterers: the structure has no atoms")
        check_scatterers(scatterers)
        if accuracy not in ACCURACY:
            raise FFTError(f"accuracy {accuracy!r}: expected one of {', '.join(ACCURACY)}")
        self.n_threads = int(n_threads)
        if self.n_threads < 1:
            raise FFTError(f"n_threads must be >= 1, got {n_threads}")
        settings = dict(ACCURACY[accuracy])
        for name, value in (("rate", rate), ("alias", alias), ("cutoff", cutoff)):
            if value is not None:
                settings[name] = float(value)
        if not settings["rate"] >= 1:
            raise FFTError(f"sampling rate {settings['rate']!r} is below 1: the grid could "
                           f"not carry the resolution of the data")
        for name in ("alias", "cutoff"):
            if not 0 < settings[name] < 1:
                raise FFTError(f"{name}: expected a number in (0, 1), got {settings[name]!r}")
        self.settings = settings
        self.unit_cell = unit_cell
        self.space_group = space_group
        self.scatterers = scatterers
        self.hkl = _hkl(hkl)
        self.table = table
        self.gstar = np.asarray(unit_cell.reciprocal_metric, dtype=np.float64)
        h = self.hkl.astype(np.float64)
        self._s_sq = np.einsum("mi,ij,mj->m", h, self.gstar, h)
        if d_min is None:
            top = self._s_sq.max(initial=0.0)
            if top <= 0:
                raise FFTError("hkl: no reflection other than (0,0,0); give d_min")
            d_min = 1 / np.sqrt(top)
        self.d_min = float(d_min)
        if not np.isfinite(self.d_min) or self.d_min <= 0:
            raise FFTError(f"d_min: expected a positive resolution in Angstrom, got {d_min!r}")
        lengths = np.sqrt(np.diag(unit_cell.metric))
        if shape is None:
            shape = grid_shape(unit_cell, space_group, self.d_min, settings["rate"],
                               symmetry=False)
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise FFTError(f"shape: expected three positive grid sizes, got {shape}")
        coarse = np.asarray(shape) < 2 * lengths / self.d_min
        if coarse.any():
            i = int(np.flatnonzero(coarse)[0])
            raise FFTError(f"grid {shape} is too coarse for d_min = {self.d_min:.4g} A: axis "
                           f"{'abc'[i]} needs more than {2 * lengths[i] / self.d_min:.1f} "
                           f"points")
        self.shape = shape
        self.rotations, self.translations = _space_group_ops(space_group)
        if multiplicities is None:
            from sgtbx import SiteSymmetryTable
            multiplicities = SiteSymmetryTable(unit_cell, space_group,
                                               np.mod(scatterers.sites_frac, 1.0)).multiplicities
        mult = np.asarray(multiplicities, dtype=np.float64)
        if mult.shape != (len(scatterers),) or not (mult >= 1).all():
            raise FFTError(f"multiplicities: expected {len(scatterers)} values >= 1")
        self.site_weights = mult / float(space_group.order_z)
        types, self.type_index = scatterers.types()
        self.ff_a, self.ff_b, self.ff_c = form_factor_table(types, table)
        self._b_add_given = None if b_add is None else float(b_add)
        if self._b_add_given is not None and not (np.isfinite(self._b_add_given)
                                                  and self._b_add_given >= 0):
            raise FFTError(f"b_add: expected a blur >= 0 (A^2), got {b_add!r}")
        self.metric = _index_metric(unit_cell, shape)

    # -- the model on the grid -------------------------------------------------------------

    def _u_star(self):
        sc = self.scatterers
        u = np.where(sc.aniso[:, None], sc.u_star,
                     sc.u_iso[:, None] * np.array([self.gstar[0, 0], self.gstar[1, 1],
                                                   self.gstar[2, 2], self.gstar[0, 1],
                                                   self.gstar[0, 2], self.gstar[1, 2]]))
        return u

    def _atoms(self, cutoff):
        """Kernel arrays: centres (index units), amplitudes per unit weight
        (n, g), quadratic forms (n, g, 6), cut-off radii squared (n,), the
        weights (n,), U*_ag^-1 (n, g, 6) and the order to visit the atoms
        in (``visit_order``)."""
        sc = self.scatterers
        check_scatterers(sc)
        if np.any(sc.fdp != 0):
            raise FFTError("f'' is not zero: the FFT path sums a real density; use the direct "
                           "path (sftbx.StructureFactors) for anomalous scattering")
        u_star = self._u_star()
        # largest (for the radii) and smallest (for the blur) U along any direction
        lam, low = sc.u_iso.copy(), sc.u_iso.copy()
        if sc.aniso.any():
            orth = np.asarray(self.unit_cell.orthogonalisation)
            eig = np.linalg.eigvalsh(orth @ _sym(u_star[sc.aniso]) @ orth.T)
            lam[sc.aniso], low[sc.aniso] = eig[:, -1], eig[:, 0]
        if self._b_add_given is not None:
            b_add = self._b_add_given
        else:
            rate = self.settings["rate"]
            want = np.log(1 / self.settings["alias"]) * self.d_min**2 / (rate * (rate - 1)) \
                if rate > 1 else 0.0
            b_add = max(0.0, want - EIGHT_PI_SQ * max(float(low.min()), 0.0))
        self.b_add = b_add
        t = self.type_index
        a = np.concatenate([self.ff_a[t], (self.ff_c[t] + sc.fp)[:, None]], axis=1)
        b = np.concatenate([self.ff_b[t], np.zeros((len(sc), 1))], axis=1)
        keep = np.any(a != 0, axis=0)
        a, b = a[:, keep], b[:, keep]
        # the kernels take exactly N_TERMS terms: pad with zero amplitudes
        pad = ((0, 0), (0, _fft.N_TERMS - a.shape[1]))
        a, b = np.ascontiguousarray(np.pad(a, pad)), np.ascontiguousarray(np.pad(b, pad))
        n, n_g = a.shape
        weights = sc.occupancies * self.site_weights
        amp, r_sq = np.empty((n, n_g)), np.empty(n)
        quad, inv = np.empty((n, n_g, 6)), np.empty((n, n_g, 6))
        bad = _fft.atom_terms(np.ascontiguousarray(u_star), lam, a, b, b_add,
                              np.ascontiguousarray(self.gstar),
                              np.asarray(self.shape, dtype=np.float64),
                              float(self.unit_cell.volume), cutoff,
                              amp, quad, inv, r_sq)
        if bad >= 0:
            raise FFTError(f"atom {sc.labels[bad]!r} ({sc.elements[bad]}) has a zero ADP: give "
                           f"b_add > 0")
        centres = np.ascontiguousarray(np.mod(sc.sites_frac, 1.0) * np.asarray(self.shape))
        return centres, amp, quad, r_sq, weights, inv, visit_order(centres)

    def density(self):
        """The blurred density of the asymmetric unit's atoms on the grid
        (e/A^3), float64 ``shape``."""
        centres, amp, quad, r_sq, weights, _, order = self._atoms(self.settings["cutoff"])
        return self._density(centres, amp * weights[:, None], quad, r_sq, order)

    def _density(self, centres, amp, quad, r_sq, order):
        t = self.n_threads
        grids = np.zeros((t,) + self.shape)
        _fft.sample_density(centres, np.ascontiguousarray(amp), quad, r_sq, self.metric, order,
                            grids, n_threads=t)
        return grids[0] if t == 1 else grids.sum(axis=0)

    def _scale(self):
        n = float(np.prod(self.shape))
        return self.unit_cell.volume / n * np.exp(self.b_add * self._s_sq / 4)

    def _fail_outside(self, bad):
        if bad:
            raise FFTError(f"{bad} reflections lie outside the grid {self.shape} (d_min "
                           f"{self.d_min:.4g} A): give d_min or shape for the whole hkl set")

    # -- public ---------------------------------------------------------------------------

    def s_sq(self):
        """1/d^2 of each reflection, float64 (m,)."""
        return self._s_sq.copy()

    def f_calc(self):
        """F(h), complex128 (m,)."""
        rho = self.density()
        if self.settings["single"]:
            # an FFT in single precision (relative error ~1e-7, far below the
            # sampling's at these settings): half the time and memory
            rho = rho.astype(np.float32)
        spectrum = scipy.fft.rfftn(rho, workers=self.n_threads)
        out = np.empty(len(self.hkl), dtype=np.complex128)
        bad = _fft.pick(spectrum, self.shape[2], self.hkl, self.rotations, self.translations,
                        self._scale(), out, n_threads=self.n_threads)
        self._fail_outside(bad)
        return out

    def amplitudes(self):
        """|F(h)|, float64 (m,)."""
        return np.abs(self.f_calc())

    def atom_gradients(self, dT_dA, dT_dB):
        """Gradient of a target T(A, B), F = A + iB, summed over reflections,
        per atom.

        Parameters
        ----------
        dT_dA, dT_dB : float64 (m,)

        Returns
        -------
        dict of arrays: ``sites_frac`` (n, 3), ``u_iso`` (n,) (isotropic atoms,
        0 for the others), ``u_star`` (n, 6) in the order 11, 22, 33, 12, 13, 23
        (anisotropic atoms; off-diagonal derivatives count both U*_ij and
        U*_ji), ``occupancies`` (n,).
        """
        m = len(self.hkl)
        da = np.asarray(dT_dA, dtype=np.float64)
        db = np.asarray(dT_dB, dtype=np.float64)
        if da.shape != (m,) or db.shape != (m,):
            raise FFTError(f"dT_dA, dT_dB: expected shape ({m},), got {da.shape} and {db.shape}")
        if not (np.isfinite(da).all() and np.isfinite(db).all()):
            raise FFTError("dT_dA, dT_dB: values must be finite")
        centres, amp, quad, r_sq, weights, inv, order = self._atoms(self.settings["cutoff"])
        coef = (da + 1j * db) * self._scale()
        n0, n1, n2 = self.shape
        spectrum = np.zeros((n0, n1, n2 // 2 + 1), dtype=np.complex128)
        bad = _fft.scatter(np.ascontiguousarray(coef), self.hkl, self.rotations,
                           self.translations, spectrum, n2)
        self._fail_outside(bad)
        # the map in single precision (relative error ~1e-7, well below the
        # sampling's): half the memory traffic of the FFT and of the moments
        mapv = scipy.fft.irfftn(spectrum.astype(np.complex64), s=self.shape, norm="forward",
                                workers=self.n_threads)
        mapv = np.ascontiguousarray(mapv, dtype=np.float32)
        n, n_g = amp.shape
        mom = np.empty((n, n_g, 10))
        _fft.map_moments(centres, amp, quad, r_sq, self.metric, order, mapv, mom,
                         n_threads=self.n_threads)
        nn = np.asarray(self.shape, dtype=np.float64)
        s0 = mom[..., 0]
        s1 = mom[..., 1:4]
        s2 = _sym(mom[..., 4:10])
        inv = _sym(inv)
        wamp = amp * weights[:, None]
        # sites: sum_g amp_g N_i (Q_g S1_g)_i, Q_g = D W_g D
        q = inv / np.outer(nn, nn)
        d_site = nn * np.einsum("ng,ngij,ngj->ni", wamp, q, s1)
        # U*: Gamma = sum_g amp_g (-1/2 W_g S0_g + 1/2 W_g X2_g W_g), X2 = D S2 D
        x2 = s2 / np.outer(nn, nn)
        gamma = np.einsum("ng,ngij->nij", wamp,
                          -0.5 * inv * s0[..., None, None] + 0.5 * inv @ x2 @ inv)
        d_u_star = np.stack([gamma[:, 0, 0], gamma[:, 1, 1], gamma[:, 2, 2],
                             2 * gamma[:, 0, 1], 2 * gamma[:, 0, 2], 2 * gamma[:, 1, 2]], axis=1)
        d_u_iso = np.einsum("nij,ij->n", gamma, self.gstar)
        aniso = self.scatterers.aniso
        d_u_iso[aniso] = 0
        d_u_star[~aniso] = 0
        d_occ = (amp * s0).sum(axis=1) * self.site_weights
        return {"sites_frac": d_site, "u_iso": d_u_iso, "u_star": d_u_star,
                "occupancies": d_occ}

    def gradients(self, dT_dA, dT_dB, parameter_map):
        """Gradient of a target T(A, B) in the columns of a ParameterMap, as
        ``StructureFactors.gradients`` returns it (sites, u_iso, U*,
        occupancy; the FFT path has no f', f'' columns).

        Returns
        -------
        float64 (n_params,)
        """
        if not isinstance(parameter_map, ParameterMap):
            raise FFTError("parameter_map: expected an sftbx.ParameterMap")
        cols = parameter_map.columns
        if cols.shape[0] != len(self.scatterers):
            raise FFTError(f"parameter map has {cols.shape[0]} atoms, the structure "
                           f"{len(self.scatterers)}")
        for name in ("fp", "fdp"):
            if (cols[:, SLOT_INDEX[name]] >= 0).any():
                raise FFTError(f"the FFT path has no {name} derivatives; use the direct path")
        g = self.atom_gradients(dT_dA, dT_dB)
        per_atom = np.zeros((len(self.scatterers), cols.shape[1]))
        per_atom[:, SLOT_INDEX["x"]:SLOT_INDEX["x"] + 3] = g["sites_frac"]
        per_atom[:, SLOT_INDEX["u_iso"]] = g["u_iso"]
        per_atom[:, SLOT_INDEX["u11"]:SLOT_INDEX["u11"] + 6] = g["u_star"]
        per_atom[:, SLOT_INDEX["occupancy"]] = g["occupancies"]
        out = np.zeros(parameter_map.n_params)
        used = cols >= 0
        np.add.at(out, cols[used], per_atom[used])
        return out


def scatterers_from_gemmi(structure, model_index=0, min_u=1e-5):
    """Unit cell, space group and scatterers of a gemmi.Structure's model
    (neutral atoms; B or anisotropic U from the file).  Anisotropic U's
    with an eigenvalue below ``min_u`` (A^2; deposited U's rounded to four
    digits can be slightly non-positive-definite) have it raised to min_u.

    Returns
    -------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    scatterers : Scatterers
    """
    from sgtbx import SpaceGroup, UnitCell
    cell = structure.cell
    unit_cell = UnitCell(cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    space_group = SpaceGroup(structure.spacegroup_hm)
    elements, sites, occ, u_iso, u_cart, aniso, labels = [], [], [], [], [], [], []
    for chain in structure[model_index]:
        for residue in chain:
            for atom in residue:
                elements.append(atom.element.name)
                sites.append(cell.fractionalize(atom.pos).tolist())
                occ.append(atom.occ)
                u_iso.append(atom.b_iso / EIGHT_PI_SQ)
                a = atom.aniso
                aniso.append(a.nonzero())
                u_cart.append([a.u11, a.u22, a.u33, a.u12, a.u13, a.u23])
                labels.append(f"{chain.name}/{residue.name}{residue.seqid.num}"
                              f"{residue.seqid.icode.strip()}/{atom.name}"
                              + (f".{atom.altloc}" if atom.altloc != "\0" else ""))
    u_cart = _sym(np.array(u_cart, dtype=np.float64).reshape(-1, 6))
    if len(u_cart):
        # deposited U's rounded to 4 digits can be slightly non-positive-definite
        val, vec = np.linalg.eigh(u_cart)
        low = np.array(aniso, dtype=bool) & (val[:, 0] < min_u)
        val[low] = np.maximum(val[low], min_u)
        u_cart[low] = np.einsum("nij,nj,nkj->nik", vec[low], val[low], vec[low])
    u_star = unit_cell.u_cart_as_u_star(u_cart[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]])
    scatterers = Scatterers(elements, np.array(sites), occ, u_iso, u_star=u_star,
                            aniso=np.array(aniso, dtype=bool), labels=labels)
    return unit_cell, space_group, scatterers


# Above this many (atom, reflection, operation) terms the FFT path is used by
# structure_factor_calculator(algorithm="auto"): direct summation costs about
# 4 ns a term on one core (4iid, 2000 reflections: 0.5 s), the FFT at this
# size a few tens of ms.
AUTO_FFT_TERMS = 1e7


def structure_factor_calculator(unit_cell, space_group, scatterers, hkl, algorithm="auto",
                                **options):
    """A calculator with ``f_calc()`` and ``gradients(dT_dA, dT_dB,
    parameter_map)``: ``StructureFactors`` (direct summation) or
    ``FFTStructureFactors``.

    Parameters
    ----------
    algorithm : {"auto", "direct", "fft"}
        "auto": the FFT when n_atoms * n_reflections * order_z exceeds
        ``AUTO_FFT_TERMS`` and no atom has f'' (which the FFT path does not
        model); direct summation otherwise.
    options
        Passed to the chosen class (``table``, ``n_threads``,
        ``multiplicities``; for the FFT also ``accuracy``, ``d_min``, ...).
    """
    if algorithm not in ("auto", "direct", "fft"):
        raise FFTError(f"algorithm {algorithm!r}: expected 'auto', 'direct' or 'fft'")
    if algorithm == "auto":
        terms = float(len(scatterers)) * len(np.asarray(hkl)) * space_group.order_z
        use_fft = terms > AUTO_FFT_TERMS and not np.any(scatterers.fdp != 0)
        algorithm = "fft" if use_fft else "direct"
    if algorithm == "fft":
        return FFTStructureFactors(unit_cell, space_group, scatterers, hkl, **options)
    direct_options = {k: v for k, v in options.items()
                      if k in ("table", "multiplicities", "n_threads")}
    if len(direct_options) != len(options):
        unused = sorted(set(options) - set(direct_options))
        raise FFTError(f"options {unused} apply to the FFT path only")
    return StructureFactors(unit_cell, space_group, scatterers, hkl, **direct_options)

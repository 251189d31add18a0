# cython: language_level=3
"""Grid kernels of the FFT path and of the bulk-solvent mask (compiled core).

Everything here works in grid-index units: a point of an (N0, N1, N2) grid
has integer coordinates p, an atom its centre c = N x_frac (real), and
d = p - c is the offset.  An atom's (blurred) density is a sum of terms

    rho_g(d) = amp_g exp(-1/2 d^T Q_g d),

with Q_g (6 numbers, order 00, 11, 22, 01, 02, 12) and amp_g computed by
sftbx/fft.py.  Each atom is sampled inside the ellipsoid d^T M d <= r^2
(M the metric in index units, so that this is a sphere of radius r in
Angstrom).  Along the fastest axis the exponent is a quadratic in d2, so a
line of points needs two exp() per term and then only multiplications:
e(d2 + 1) = e(d2) rho, rho(d2 + 1) = rho(d2) q with q = exp(-Q22).

The kernels here assume valid input (shapes and dtypes are checked by the
def wrappers; values by sftbx/fft.py).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport exp, sqrt, floor, ceil, cos, sin, M_PI
from libc.stdlib cimport malloc, free

import numpy as np

cdef enum:
    MAX_TERMS = 8


cdef inline Py_ssize_t _wrap(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t r = i % n
    if r < 0:
        r = r + n
    return r


cdef struct Ellipsoid:
    # The metric in index units and its 2-D Schur complement, for the bounds.
    double m00, m11, m22, m01, m02, m12
    double p00, p11, p01
    double w0           # sqrt((M^-1)_00): half-width along axis 0 per unit radius


cdef Ellipsoid _ellipsoid(const double[::1] metric) noexcept nogil:
    cdef Ellipsoid e
    e.m00 = metric[0]
    e.m11 = metric[1]
    e.m22 = metric[2]
    e.m01 = metric[3]
    e.m02 = metric[4]
    e.m12 = metric[5]
    e.p00 = e.m00 - e.m02 * e.m02 / e.m22
    e.p11 = e.m11 - e.m12 * e.m12 / e.m22
    e.p01 = e.m01 - e.m02 * e.m12 / e.m22
    # (M^-1)_00 = 1 / (P00 - P01^2 / P11)
    e.w0 = sqrt(1.0 / (e.p00 - e.p01 * e.p01 / e.p11))
    return e


cdef void _atom(const Ellipsoid *el, double c0, double c1, double c2, double r_sq,
                int n_terms, const double *amp, const double *quad,
                Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2,
                double *grid, const double *mapv, double *moments) noexcept nogil:
    """Visit the points of one atom.  With ``grid`` non-NULL add the density
    there; otherwise accumulate, per term, the moments of mapv * e_g(d):
    moments[10 g + (0; 1..3; 4..9)] = sum m e, sum m e d, sum m e d d^T
    (00, 11, 22, 01, 02, 12), with e_g the term's exponential (amp excluded)."""
    cdef double r = sqrt(r_sq)
    cdef double half0 = r * el.w0
    cdef Py_ssize_t i, j, k, i_lo, i_hi, j_lo, j_hi, k_lo, k_hi, kk, row
    cdef double d0, d1, d2, disc, b, cc, sq, lin, e0, val, mv, v
    cdef double e[MAX_TERMS]
    cdef double rho[MAX_TERMS]
    cdef double q[MAX_TERMS]
    cdef double l0[MAX_TERMS]
    cdef double l1[MAX_TERMS]
    cdef double l2[MAX_TERMS]
    cdef int g
    cdef const double *qg
    cdef double *mo
    for g in range(n_terms):
        q[g] = exp(-quad[6 * g + 2])
    i_lo = <Py_ssize_t>ceil(c0 - half0)
    i_hi = <Py_ssize_t>floor(c0 + half0)
    for i in range(i_lo, i_hi + 1):
        d0 = i - c0
        disc = el.p01 * el.p01 * d0 * d0 - el.p11 * (el.p00 * d0 * d0 - r_sq)
        if disc < 0:
            continue
        sq = sqrt(disc)
        j_lo = <Py_ssize_t>ceil(c1 + (-el.p01 * d0 - sq) / el.p11)
        j_hi = <Py_ssize_t>floor(c1 + (-el.p01 * d0 + sq) / el.p11)
        for j in range(j_lo, j_hi + 1):
            d1 = j - c1
            b = el.m02 * d0 + el.m12 * d1
            cc = el.m00 * d0 * d0 + 2 * el.m01 * d0 * d1 + el.m11 * d1 * d1 - r_sq
            disc = b * b - el.m22 * cc
            if disc < 0:
                continue
            sq = sqrt(disc)
            k_lo = <Py_ssize_t>ceil(c2 + (-b - sq) / el.m22)
            k_hi = <Py_ssize_t>floor(c2 + (-b + sq) / el.m22)
            if k_hi < k_lo:
                continue
            d2 = k_lo - c2
            for g in range(n_terms):
                qg = quad + 6 * g
                e0 = -0.5 * (qg[0] * d0 * d0 + qg[1] * d1 * d1) - qg[3] * d0 * d1
                lin = qg[4] * d0 + qg[5] * d1
                e[g] = exp(e0 - lin * d2 - 0.5 * qg[2] * d2 * d2)
                rho[g] = exp(-lin - 0.5 * qg[2] * (2 * d2 + 1))
            row = (_wrap(i, n0) * n1 + _wrap(j, n1)) * n2
            kk = _wrap(k_lo, n2)
            if grid != NULL:
                for k in range(k_lo, k_hi + 1):
                    val = 0
                    for g in range(n_terms):
                        val = val + amp[g] * e[g]
                        e[g] = e[g] * rho[g]
                        rho[g] = rho[g] * q[g]
                    grid[row + kk] += val
                    kk = kk + 1
                    if kk == n2:
                        kk = 0
            else:
                for g in range(n_terms):
                    l0[g] = 0
                    l1[g] = 0
                    l2[g] = 0
                for k in range(k_lo, k_hi + 1):
                    mv = mapv[row + kk]
                    for g in range(n_terms):
                        v = mv * e[g]
                        l0[g] += v
                        l1[g] += v * d2
                        l2[g] += v * d2 * d2
                        e[g] = e[g] * rho[g]
                        rho[g] = rho[g] * q[g]
                    d2 = d2 + 1
                    kk = kk + 1
                    if kk == n2:
                        kk = 0
                for g in range(n_terms):
                    mo = moments + 10 * g
                    mo[0] += l0[g]
                    mo[1] += d0 * l0[g]
                    mo[2] += d1 * l0[g]
                    mo[3] += l1[g]
                    mo[4] += d0 * d0 * l0[g]
                    mo[5] += d1 * d1 * l0[g]
                    mo[6] += l2[g]
                    mo[7] += d0 * d1 * l0[g]
                    mo[8] += d0 * l1[g]
                    mo[9] += d1 * l1[g]


def _check_atoms(centres, amp, quad, radius_sq, metric):
    n = centres.shape[0]
    if centres.shape[1] != 3 or amp.shape[0] != n or quad.shape[0] != n \
            or quad.shape[1] != amp.shape[1] or quad.shape[2] != 6 \
            or radius_sq.shape[0] != n or metric.shape[0] != 6:
        raise ValueError("atom arrays of inconsistent shapes")
    if amp.shape[1] > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} Gaussian terms per atom")


def sample_density(const double[:, ::1] centres, const double[:, ::1] amp,
                   const double[:, :, ::1] quad, const double[::1] radius_sq,
                   const double[::1] metric, double[:, :, :, ::1] grids, int n_threads=1):
    """Add the atoms' densities to the grids.

    Parameters
    ----------
    centres : float64 (n, 3)       IN  atom centres in grid-index units
    amp : float64 (n, g)           IN  amplitude of each term
    quad : float64 (n, g, 6)       IN  quadratic form of each term (index units)
    radius_sq : float64 (n,)       IN  cut-off radius squared (Angstrom^2)
    metric : float64 (6,)          IN  metric in index units (00, 11, 22, 01, 02, 12)
    grids : float64 (t, N0, N1, N2)  IN/OUT  one grid per thread (t >= n_threads);
                                     the caller sums them
    """
    _check_atoms(centres, amp, quad, radius_sq, metric)
    if grids.shape[0] < n_threads or n_threads < 1:
        raise ValueError("need one grid per thread")
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a
    cdef int n_terms = amp.shape[1], tid
    cdef Py_ssize_t n0 = grids.shape[1], n1 = grids.shape[2], n2 = grids.shape[3]
    cdef double *base = &grids[0, 0, 0, 0]
    cdef Py_ssize_t stride = n0 * n1 * n2
    if n == 0:
        return
    for a in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=64):
        tid = threadid()
        _atom(&el, centres[a, 0], centres[a, 1], centres[a, 2], radius_sq[a], n_terms,
              &amp[a, 0], &quad[a, 0, 0], n0, n1, n2, base + tid * stride, NULL, NULL)


def map_moments(const double[:, ::1] centres, const double[:, ::1] amp,
                const double[:, :, ::1] quad, const double[::1] radius_sq,
                const double[::1] metric, const double[:, :, ::1] mapv,
                double[:, :, ::1] moments, int n_threads=1):
    """Moments of a map times each term's exponential over each atom's points.

    Parameters
    ----------
    centres, quad, radius_sq, metric : as for ``sample_density`` (``amp``
        only fixes the number of terms)
    mapv : float64 (N0, N1, N2)      IN
    moments : float64 (n, g, 10)     OUT  sum m e, sum m e d (3), sum m e d d^T
                                     (00, 11, 22, 01, 02, 12), d in index units
    """
    _check_atoms(centres, amp, quad, radius_sq, metric)
    if moments.shape[0] != centres.shape[0] or moments.shape[1] != amp.shape[1] \
            or moments.shape[2] != 10:
        raise ValueError("moments: expected shape (n, g, 10)")
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a
    cdef int n_terms = amp.shape[1]
    cdef Py_ssize_t n0 = mapv.shape[0], n1 = mapv.shape[1], n2 = mapv.shape[2]
    if n == 0:
        return
    moments[:, :, :] = 0
    for a in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=64):
        _atom(&el, centres[a, 0], centres[a, 1], centres[a, 2], radius_sq[a], n_terms,
              &amp[a, 0], &quad[a, 0, 0], n0, n1, n2, NULL, &mapv[0, 0, 0],
              &moments[a, 0, 0])


def pick(const double complex[:, :, ::1] spectrum, Py_ssize_t n2, const int[:, ::1] hkl,
         const int[:, :, ::1] rotations, const double[:, ::1] translations,
         const double[::1] scale, double complex[::1] out, int n_threads=1):
    """F(h) = scale_h sum_(R,t) exp(2 pi i h t) conj(X(hR)), X the half
    spectrum of a real grid from a forward FFT (exponent -2 pi i).

    Parameters
    ----------
    spectrum : complex128 (N0, N1, N2 // 2 + 1)  IN
    n2 : int                        IN  full length of the last axis
    hkl : int32 (m, 3)              IN
    rotations : int32 (k, 3, 3)     IN  all operations of the group
    translations : float64 (k, 3)   IN
    scale : float64 (m,)            IN
    out : complex128 (m,)           OUT

    Returns
    -------
    int : the number of reflections with some hR outside the grid's Nyquist
        box (|k_i| < N_i / 2); those are left at 0.
    """
    cdef Py_ssize_t m = hkl.shape[0], n_ops = rotations.shape[0], i, op
    cdef Py_ssize_t n0 = spectrum.shape[0], n1 = spectrum.shape[1]
    cdef Py_ssize_t k0, k1, k2
    cdef Py_ssize_t bad = 0
    cdef double ph, re, im, xr, xi
    cdef int ok
    if hkl.shape[1] != 3 or rotations.shape[1] != 3 or rotations.shape[2] != 3 \
            or translations.shape[0] != n_ops or scale.shape[0] != m or out.shape[0] != m \
            or spectrum.shape[2] != n2 // 2 + 1:
        raise ValueError("pick: arrays of inconsistent shapes")
    for i in prange(m, nogil=True, num_threads=n_threads, schedule="static"):
        re = 0
        im = 0
        ok = 1
        for op in range(n_ops):
            k0 = (hkl[i, 0] * rotations[op, 0, 0] + hkl[i, 1] * rotations[op, 1, 0]
                  + hkl[i, 2] * rotations[op, 2, 0])
            k1 = (hkl[i, 0] * rotations[op, 0, 1] + hkl[i, 1] * rotations[op, 1, 1]
                  + hkl[i, 2] * rotations[op, 2, 1])
            k2 = (hkl[i, 0] * rotations[op, 0, 2] + hkl[i, 1] * rotations[op, 1, 2]
                  + hkl[i, 2] * rotations[op, 2, 2])
            if 2 * k0 >= n0 or -2 * k0 >= n0 or 2 * k1 >= n1 or -2 * k1 >= n1 \
                    or 2 * k2 >= n2 or -2 * k2 >= n2:
                ok = 0
                break
            if k2 >= 0:
                xr = spectrum[_wrap(k0, n0), _wrap(k1, n1), k2].real
                xi = -spectrum[_wrap(k0, n0), _wrap(k1, n1), k2].imag
            else:
                xr = spectrum[_wrap(-k0, n0), _wrap(-k1, n1), -k2].real
                xi = spectrum[_wrap(-k0, n0), _wrap(-k1, n1), -k2].imag
            ph = 2 * M_PI * (hkl[i, 0] * translations[op, 0] + hkl[i, 1] * translations[op, 1]
                             + hkl[i, 2] * translations[op, 2])
            re = re + cos(ph) * xr - sin(ph) * xi
            im = im + cos(ph) * xi + sin(ph) * xr
        if ok:
            out[i] = scale[i] * (re + 1j * im)
        else:
            out[i] = 0
            bad += 1
    return bad


def scatter(const double complex[::1] coefficients, const int[:, ::1] hkl,
            const int[:, :, ::1] rotations, const double[:, ::1] translations,
            double complex[:, :, ::1] spectrum, Py_ssize_t n2):
    """The adjoint of ``pick``: the half spectrum Y of the real map
    m(y) = Re sum_(h, R, t) conj(c_h exp(-2 pi i h t)) exp(2 pi i (hR) y),
    so that m = irfftn(Y, norm="forward").

    Parameters
    ----------
    coefficients : complex128 (m,)          IN  c_h
    hkl, rotations, translations : as for ``pick``
    spectrum : complex128 (N0, N1, N2 // 2 + 1)  IN/OUT  added to

    Returns
    -------
    int : the number of reflections with some hR outside the Nyquist box
        (skipped).
    """
    cdef Py_ssize_t m = hkl.shape[0], n_ops = rotations.shape[0], i, op, b
    cdef Py_ssize_t n0 = spectrum.shape[0], n1 = spectrum.shape[1]
    cdef Py_ssize_t k[3]
    cdef Py_ssize_t nn[3]
    cdef Py_ssize_t bad = 0
    cdef double ph, cr, ci, tr, ti
    cdef bint ok
    if hkl.shape[1] != 3 or rotations.shape[1] != 3 or rotations.shape[2] != 3 \
            or translations.shape[0] != n_ops or coefficients.shape[0] != m \
            or spectrum.shape[2] != n2 // 2 + 1:
        raise ValueError("scatter: arrays of inconsistent shapes")
    nn[0] = n0
    nn[1] = n1
    nn[2] = n2
    with nogil:
        for i in range(m):
            ok = True
            for op in range(n_ops):
                for b in range(3):
                    k[b] = (hkl[i, 0] * rotations[op, 0, b] + hkl[i, 1] * rotations[op, 1, b]
                            + hkl[i, 2] * rotations[op, 2, b])
                    if 2 * k[b] >= nn[b] or -2 * k[b] >= nn[b]:
                        ok = False
            if not ok:
                bad += 1
                continue
            for op in range(n_ops):
                for b in range(3):
                    k[b] = (hkl[i, 0] * rotations[op, 0, b] + hkl[i, 1] * rotations[op, 1, b]
                            + hkl[i, 2] * rotations[op, 2, b])
                ph = -2 * M_PI * (hkl[i, 0] * translations[op, 0]
                                  + hkl[i, 1] * translations[op, 1]
                                  + hkl[i, 2] * translations[op, 2])
                # c = c_h exp(i ph); Y[k] += conj(c) / 2, Y[-k] += c / 2
                cr = coefficients[i].real
                ci = coefficients[i].imag
                tr = 0.5 * (cr * cos(ph) - ci * sin(ph))
                ti = 0.5 * (cr * sin(ph) + ci * cos(ph))
                if k[2] >= 0:
                    spectrum[_wrap(k[0], n0), _wrap(k[1], n1), k[2]] += tr - 1j * ti
                if k[2] <= 0:
                    spectrum[_wrap(-k[0], n0), _wrap(-k[1], n1), -k[2]] += tr + 1j * ti
    return bad


def mark_spheres(const double[:, ::1] centres, const double[::1] radius_sq,
                 const double[::1] metric, signed char[:, :, ::1] mask, signed char value):
    """Set the points within each sphere (centre in index units, radius in
    Angstrom) to ``value``.

    Parameters
    ----------
    centres : float64 (n, 3)      IN
    radius_sq : float64 (n,)      IN
    metric : float64 (6,)         IN  metric in index units
    mask : int8 (N0, N1, N2)      IN/OUT
    """
    if centres.shape[1] != 3 or radius_sq.shape[0] != centres.shape[0] or metric.shape[0] != 6:
        raise ValueError("mark_spheres: arrays of inconsistent shapes")
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a, i, j, k, i_lo, i_hi, j_lo, j_hi, k_lo, k_hi
    cdef Py_ssize_t n0 = mask.shape[0], n1 = mask.shape[1], n2 = mask.shape[2], ii, jj
    cdef double c0, c1, c2, r_sq, d0, d1, disc, sq, b, cc, half0
    with nogil:
        for a in range(n):
            c0 = centres[a, 0]
            c1 = centres[a, 1]
            c2 = centres[a, 2]
            r_sq = radius_sq[a]
            half0 = sqrt(r_sq) * el.w0
            i_lo = <Py_ssize_t>ceil(c0 - half0)
            i_hi = <Py_ssize_t>floor(c0 + half0)
            for i in range(i_lo, i_hi + 1):
                d0 = i - c0
                disc = el.p01 * el.p01 * d0 * d0 - el.p11 * (el.p00 * d0 * d0 - r_sq)
                if disc < 0:
                    continue
                sq = sqrt(disc)
                j_lo = <Py_ssize_t>ceil(c1 + (-el.p01 * d0 - sq) / el.p11)
                j_hi = <Py_ssize_t>floor(c1 + (-el.p01 * d0 + sq) / el.p11)
                ii = _wrap(i, n0)
                for j in range(j_lo, j_hi + 1):
                    d1 = j - c1
                    b = el.m02 * d0 + el.m12 * d1
                    cc = el.m00 * d0 * d0 + 2 * el.m01 * d0 * d1 + el.m11 * d1 * d1 - r_sq
                    disc = b * b - el.m22 * cc
                    if disc < 0:
                        continue
                    sq = sqrt(disc)
                    k_lo = <Py_ssize_t>ceil(c2 + (-b - sq) / el.m22)
                    k_hi = <Py_ssize_t>floor(c2 + (-b + sq) / el.m22)
                    jj = _wrap(j, n1)
                    for k in range(k_lo, k_hi + 1):
                        mask[ii, jj, _wrap(k, n2)] = value


def shrink(const signed char[:, :, ::1] mask, const int[:, ::1] stencil,
           signed char[:, :, ::1] out, int n_threads=1):
    """out = mask, except that points of value 0 with a point of value 1 at
    one of the stencil offsets become 1.

    Parameters
    ----------
    mask : int8 (N0, N1, N2)     IN   1 solvent, 0 not
    stencil : int32 (s, 3)       IN   offsets in grid points
    out : int8 (N0, N1, N2)      OUT
    """
    cdef Py_ssize_t n0 = mask.shape[0], n1 = mask.shape[1], n2 = mask.shape[2]
    cdef Py_ssize_t i, j, k, s, n_s = stencil.shape[0]
    if stencil.shape[1] != 3 or out.shape[0] != n0 or out.shape[1] != n1 or out.shape[2] != n2:
        raise ValueError("shrink: arrays of inconsistent shapes")
    for i in prange(n0, nogil=True, num_threads=n_threads, schedule="static"):
        for j in range(n1):
            for k in range(n2):
                out[i, j, k] = mask[i, j, k]
                if mask[i, j, k] == 0:
                    for s in range(n_s):
                        if mask[_wrap(i + stencil[s, 0], n0), _wrap(j + stencil[s, 1], n1),
                                _wrap(k + stencil[s, 2], n2)] == 1:
                            out[i, j, k] = 1
                            break

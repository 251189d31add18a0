# cython: language_level=3
"""Grid kernels of the FFT path and of the bulk-solvent mask (compiled core).

Everything here works in grid-index units: a point of an (N0, N1, N2) grid
has integer coordinates p, an atom its centre c = N x_frac (real), and
d = p - c is the offset.  An atom's (blurred) density is a sum of terms

    rho_g(d) = amp_g exp(-1/2 d^T Q_g d),

with Q_g (6 numbers, order 00, 11, 22, 01, 02, 12) and amp_g computed by
sftbx/fft.py.  Each atom is sampled at least inside the ellipsoid
d^T M d <= r^2 (M the metric in index units, so that this is a sphere of
radius r in Angstrom), in each plane of constant d0 over the rectangle
around it.  Along any axis the exponent is a quadratic in the offset, so
one step needs only multiplications: e(d2 + 1) = e(d2) rho,
rho(d2 + 1) = rho(d2) q with q = exp(-Q22), and a step along another axis
changes rho by a constant factor too (exp(-Q12) for d1); an atom needs
exp() only at one corner of its box (see _atom).

The kernels here assume valid input (shapes and dtypes are checked by the
def wrappers; values by sftbx/fft.py).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport exp, log, fabs, sqrt, M_PI

import numpy as np

cdef extern from "_fftline.h" nogil:
    # Every atom has exactly NT Gaussian terms (fft.py pads with zero
    # amplitudes; IT92 has four Gaussians and the constant, the electron
    # table five Gaussians, neutrons the constant alone).
    enum: FFTL_NT
    void fftl_walk(Py_ssize_t n, double *e, double *r, const double *q,
                   double *o1, const double *s1, double *o2, const double *s2)
    void fftl_plane(Py_ssize_t n_lines, Py_ssize_t n_points, Py_ssize_t kk, Py_ssize_t wj,
                    Py_ssize_t n1, Py_ssize_t n2, double *grid, const float *map,
                    const double *amp, double d1_first, double d2_first, const double *ej,
                    const double *rj, const double *rkj, const double *qj, const double *qk,
                    const double *sk, double *sums)

cdef enum:
    NT = FFTL_NT
    MAX_TERMS = 8


cdef inline Py_ssize_t _floor(double x) noexcept nogil:
    """floor(x) for |x| < 2^62 without a libm call (the baseline x86-64 ISA
    has no rounding instruction)."""
    cdef Py_ssize_t i = <Py_ssize_t>x
    return i - 1 if x < i else i


cdef inline Py_ssize_t _ceil(double x) noexcept nogil:
    cdef Py_ssize_t i = <Py_ssize_t>x
    return i + 1 if x > i else i


cdef inline Py_ssize_t _wrap(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t r = i % n
    if r < 0:
        r = r + n
    return r


cdef struct Ellipsoid:
    # The metric in index units and its two 2-D Schur complements, for the
    # extent of a plane of constant d0 along d1 (p, d2 eliminated) and along
    # d2 (t, d1 eliminated).
    double m00, m11, m22, m01, m02, m12, inv_m22
    double p00, p11, p01, inv_p11
    double t00, t22, t02, inv_t22
    double w0, w1, w2   # sqrt((M^-1)_ii): half-widths along the axes per unit radius


cdef Ellipsoid _ellipsoid(const double[::1] metric) noexcept nogil:
    cdef Ellipsoid e
    cdef double m00 = metric[0], m11 = metric[1], m22 = metric[2]
    cdef double m01 = metric[3], m02 = metric[4], m12 = metric[5]
    e.m00, e.m11, e.m22, e.m01, e.m02, e.m12 = m00, m11, m22, m01, m02, m12
    e.inv_m22 = 1.0 / m22
    e.p00 = m00 - m02 * m02 / m22
    e.p11 = m11 - m12 * m12 / m22
    e.p01 = m01 - m02 * m12 / m22
    e.inv_p11 = 1.0 / e.p11
    e.t00 = m00 - m01 * m01 / m11
    e.t22 = m22 - m12 * m12 / m11
    e.t02 = m02 - m01 * m12 / m11
    e.inv_t22 = 1.0 / e.t22
    cdef double det = (m00 * (m11 * m22 - m12 * m12) - m01 * (m01 * m22 - m12 * m02)
                       + m02 * (m01 * m12 - m11 * m02))
    e.w0 = sqrt((m11 * m22 - m12 * m12) / det)
    e.w1 = sqrt((m00 * m22 - m02 * m02) / det)
    e.w2 = sqrt((m00 * m11 - m01 * m01) / det)
    return e


cdef inline bint _extent(double a, double b, double c, double d0, double r_sq, double centre,
                         double inv_b, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """The integers x with a d0^2 + 2 c d0 y + b y^2 <= r^2, y = x - centre
    (one axis of a plane's section of the ellipsoid, the other eliminated);
    False if there are none."""
    cdef double disc = c * c * d0 * d0 - b * (a * d0 * d0 - r_sq), sq
    if disc < 0:
        return False
    sq = sqrt(disc)
    lo[0] = _ceil(centre + (-c * d0 - sq) * inv_b)
    hi[0] = _floor(centre + (-c * d0 + sq) * inv_b)
    return hi[0] >= lo[0]


cdef inline double _exponent(const double *qg, double d0, double d1, double d2) noexcept nogil:
    return (-0.5 * (qg[0] * d0 * d0 + qg[1] * d1 * d1 + qg[2] * d2 * d2)
            - qg[3] * d0 * d1 - qg[4] * d0 * d2 - qg[5] * d1 * d2)


cdef void _atom(const Ellipsoid *el, double c0, double c1, double c2, double r_sq,
                int n_terms, const double *amp, const double *quad,
                Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2,
                double *grid, const float *mapv, double *moments) noexcept nogil:
    """Visit the points of one atom.  With ``grid`` non-NULL add the density
    there; otherwise accumulate, per term, the moments of mapv * e_g(d):
    moments[10 g + (0; 1..3; 4..9)] = sum m e, sum m e d, sum m e d d^T
    (00, 11, 22, 01, 02, 12), with e_g the term's exponential (amp excluded).

    The points of a plane of constant d0 are the rectangle (in d1 and d2)
    around the plane's section of the ellipsoid d^T M d <= r^2: lines of one
    length, whose loops the processor predicts (lines as long as the
    section, about 8 points at 2 A, cost more in mispredicted loop ends than
    the quarter more points of the rectangle).

    The exponentials follow recurrences, a step along an axis being two
    multiplications (the value by its ratio to the next point, the ratio by
    the constant ratio of ratios), so that an atom costs ten exp() per term:
    the value and the three ratios at the corner (I0, J0, K0) of the atom's
    box and the six constants.  The corner moves from plane to plane along
    d0; from it each plane walks along d1 and d2 to its rectangle's corner,
    and fftl_plane (_fftline.h) runs over the rectangle's lines.  When an
    exponent in the atom's box could leave the range of a double the
    recurrences could underflow, and each point is evaluated directly
    instead."""
    cdef double r = sqrt(r_sq)
    cdef Py_ssize_t i, j, k, i_lo, i_hi, j_lo, j_hi, k_lo, k_hi, kk, row
    cdef Py_ssize_t j_box, k_box, plane
    cdef double d0, d1, d2, val, mv, v, box_sq, lam
    cdef double ej[MAX_TERMS]
    cdef double rj[MAX_TERMS]
    cdef double rkj[MAX_TERMS]
    cdef double ec[MAX_TERMS]    # at the corner of the plane's box: value,
    cdef double ric[MAX_TERMS]   # ratio along d0,
    cdef double rjc[MAX_TERMS]   # along d1,
    cdef double rkc[MAX_TERMS]   # along d2
    cdef double qi[MAX_TERMS]    # ratios of ratios: exp(-Q00), exp(-Q11), exp(-Q22),
    cdef double qj[MAX_TERMS]
    cdef double qk[MAX_TERMS]
    cdef double sij[MAX_TERMS]   # exp(-Q01), exp(-Q02), exp(-Q12)
    cdef double sik[MAX_TERMS]
    cdef double sk[MAX_TERMS]
    cdef double l0[MAX_TERMS]
    cdef double l1[MAX_TERMS]
    cdef double l2[MAX_TERMS]
    cdef double sums[6 * MAX_TERMS]
    cdef int g
    cdef bint direct = False
    cdef const double *qg
    i_lo = _ceil(c0 - r * el.w0)
    i_hi = _floor(c0 + r * el.w0)
    j_box = _floor(c1 - r * el.w1)
    k_box = _floor(c2 - r * el.w2)
    box_sq = ((r * el.w0 + 1) * (r * el.w0 + 1) + (r * el.w1 + 1) * (r * el.w1 + 1)
              + (r * el.w2 + 1) * (r * el.w2 + 1))
    for g in range(n_terms):
        # |exponent| <= lam |d|^2 / 2 and |log ratio| <= lam (|d| + 1/2) in
        # the box, lam >= the largest eigenvalue of Q (Gershgorin's bound);
        # exp(-600) is still far from the smallest double
        qg = quad + 6 * g
        lam = max(qg[0] + fabs(qg[3]) + fabs(qg[4]),
                  max(qg[1] + fabs(qg[3]) + fabs(qg[5]), qg[2] + fabs(qg[4]) + fabs(qg[5])))
        if 0.5 * lam * box_sq + lam * (sqrt(box_sq) + 0.5) > 600:
            direct = True
    if not direct:
        d0 = i_lo - c0
        d1 = j_box - c1
        d2 = k_box - c2
        for g in range(NT):
            qg = quad + 6 * g
            qi[g] = exp(-qg[0])
            qj[g] = exp(-qg[1])
            qk[g] = exp(-qg[2])
            sij[g] = exp(-qg[3])
            sik[g] = exp(-qg[4])
            sk[g] = exp(-qg[5])
            ec[g] = exp(_exponent(qg, d0, d1, d2))
            ric[g] = exp(-0.5 * qg[0] * (2 * d0 + 1) - qg[3] * d1 - qg[4] * d2)
            rjc[g] = exp(-0.5 * qg[1] * (2 * d1 + 1) - qg[3] * d0 - qg[5] * d2)
            rkc[g] = exp(-0.5 * qg[2] * (2 * d2 + 1) - qg[4] * d0 - qg[5] * d1)
    for i in range(i_lo, i_hi + 1):
        if i > i_lo and not direct:
            fftl_walk(1, ec, ric, qi, rjc, sij, rkc, sik)
        d0 = i - c0
        if not (_extent(el.p00, el.p11, el.p01, d0, r_sq, c1, el.inv_p11, &j_lo, &j_hi)
                and _extent(el.t00, el.t22, el.t02, d0, r_sq, c2, el.inv_t22, &k_lo, &k_hi)):
            continue
        plane = _wrap(i, n0) * n1 * n2
        if not direct:
            # from the plane's corner (j_box, k_box) to (j_lo, k_lo), then the lines
            for g in range(NT):
                ej[g] = ec[g]
                rj[g] = rjc[g]
                rkj[g] = rkc[g]
            fftl_walk(j_lo - j_box, ej, rj, qj, rkj, sk, NULL, NULL)
            fftl_walk(k_lo - k_box, ej, rkj, qk, rj, sk, NULL, NULL)
            if grid != NULL:
                fftl_plane(j_hi - j_lo + 1, k_hi - k_lo + 1, _wrap(k_lo, n2), _wrap(j_lo, n1),
                           n1, n2, grid + plane, NULL, amp, 0, 0, ej, rj, rkj, qj, qk, sk, NULL)
                continue
            for g in range(6 * NT):
                sums[g] = 0
            fftl_plane(j_hi - j_lo + 1, k_hi - k_lo + 1, _wrap(k_lo, n2), _wrap(j_lo, n1),
                       n1, n2, NULL, mapv + plane, amp, j_lo - c1, k_lo - c2, ej, rj, rkj,
                       qj, qk, sk, sums)
            for g in range(NT):
                _add_moments(moments + 10 * g, d0, sums[g], sums[NT + g], sums[2 * NT + g],
                             sums[3 * NT + g], sums[4 * NT + g], sums[5 * NT + g])
            continue
        # direct evaluation at each point
        for j in range(j_lo, j_hi + 1):
            d1 = j - c1
            row = plane + _wrap(j, n1) * n2
            kk = _wrap(k_lo, n2)
            d2 = k_lo - c2
            for g in range(NT):
                l0[g] = 0
                l1[g] = 0
                l2[g] = 0
            for k in range(k_lo, k_hi + 1):
                if grid != NULL:
                    val = 0
                    for g in range(NT):
                        val = val + amp[g] * exp(_exponent(quad + 6 * g, d0, d1, d2))
                    grid[row + kk] += val
                else:
                    mv = mapv[row + kk]
                    for g in range(NT):
                        v = mv * exp(_exponent(quad + 6 * g, d0, d1, d2))
                        l0[g] += v
                        l1[g] += v * d2
                        l2[g] += v * d2 * d2
                d2 = d2 + 1
                kk = kk + 1
                if kk == n2:
                    kk = 0
            if grid == NULL:
                for g in range(NT):
                    _add_moments(moments + 10 * g, d0, l0[g], d1 * l0[g], d1 * d1 * l0[g],
                                 l1[g], d1 * l1[g], l2[g])


cdef inline void _add_moments(double *mo, double d0, double s, double s1, double s11,
                              double s2, double s12, double s22) noexcept nogil:
    """Add a plane's sums (of m e, d1 m e, d1^2 m e, d2 m e, d1 d2 m e,
    d2^2 m e) to one term's moments (order as in _atom)."""
    mo[0] += s
    mo[1] += d0 * s
    mo[2] += s1
    mo[3] += s2
    mo[4] += d0 * d0 * s
    mo[5] += s11
    mo[6] += s22
    mo[7] += d0 * s1
    mo[8] += d0 * s2
    mo[9] += s12


def _check_atoms(centres, amp, quad, radius_sq, metric):
    n = centres.shape[0]
    if centres.shape[1] != 3 or amp.shape[0] != n or quad.shape[0] != n \
            or quad.shape[1] != amp.shape[1] or quad.shape[2] != 6 \
            or radius_sq.shape[0] != n or metric.shape[0] != 6:
        raise ValueError("atom arrays of inconsistent shapes")
    if amp.shape[1] != NT:
        raise ValueError(f"exactly {NT} Gaussian terms per atom (pad with zero amplitudes)")


def _check_order(const Py_ssize_t[::1] order, Py_ssize_t n):
    if order.shape[0] != n:
        raise ValueError("order: expected one index per atom")
    cdef unsigned char[::1] seen = np.zeros(n, dtype=np.uint8)
    cdef Py_ssize_t i
    for i in range(n):
        if not 0 <= order[i] < n or seen[order[i]]:
            raise ValueError("order: expected a permutation of the atoms")
        seen[order[i]] = 1


N_TERMS = NT


def sample_density(const double[:, ::1] centres, const double[:, ::1] amp,
                   const double[:, :, ::1] quad, const double[::1] radius_sq,
                   const double[::1] metric, const Py_ssize_t[::1] order,
                   double[:, :, :, ::1] grids, int n_threads=1):
    """Add the atoms' densities to the grids.

    Parameters
    ----------
    centres : float64 (n, 3)       IN  atom centres in grid-index units
    amp : float64 (n, g)           IN  amplitude of each term
    quad : float64 (n, g, 6)       IN  quadratic form of each term (index units)
    radius_sq : float64 (n,)       IN  cut-off radius squared (Angstrom^2)
    metric : float64 (6,)          IN  metric in index units (00, 11, 22, 01, 02, 12)
    order : intp (n,)              IN  the atoms in the order to visit them (see
                                     ``visit_order``)
    grids : float64 (t, N0, N1, N2)  IN/OUT  one grid per thread (t >= n_threads);
                                     the caller sums them
    """
    _check_atoms(centres, amp, quad, radius_sq, metric)
    if grids.shape[0] < n_threads or n_threads < 1:
        raise ValueError("need one grid per thread")
    _check_order(order, centres.shape[0])
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a, o
    cdef int n_terms = amp.shape[1], tid
    cdef Py_ssize_t n0 = grids.shape[1], n1 = grids.shape[2], n2 = grids.shape[3]
    cdef double *base = &grids[0, 0, 0, 0]
    cdef Py_ssize_t stride = n0 * n1 * n2
    if n == 0:
        return
    for o in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=64):
        tid = threadid()
        a = order[o]
        _atom(&el, centres[a, 0], centres[a, 1], centres[a, 2], radius_sq[a], n_terms,
              &amp[a, 0], &quad[a, 0, 0], n0, n1, n2, base + tid * stride, NULL, NULL)


def map_moments(const double[:, ::1] centres, const double[:, ::1] amp,
                const double[:, :, ::1] quad, const double[::1] radius_sq,
                const double[::1] metric, const Py_ssize_t[::1] order,
                const float[:, :, ::1] mapv, double[:, :, ::1] moments, int n_threads=1):
    """Moments of a map times each term's exponential over each atom's points.

    Parameters
    ----------
    centres, quad, radius_sq, metric, order : as for ``sample_density``
        (``amp`` only fixes the number of terms)
    mapv : float32 (N0, N1, N2)      IN
    moments : float64 (n, g, 10)     OUT  sum m e, sum m e d (3), sum m e d d^T
                                     (00, 11, 22, 01, 02, 12), d in index units
    """
    _check_atoms(centres, amp, quad, radius_sq, metric)
    if moments.shape[0] != centres.shape[0] or moments.shape[1] != amp.shape[1] \
            or moments.shape[2] != 10:
        raise ValueError("moments: expected shape (n, g, 10)")
    _check_order(order, centres.shape[0])
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a, o
    cdef int n_terms = amp.shape[1]
    cdef Py_ssize_t n0 = mapv.shape[0], n1 = mapv.shape[1], n2 = mapv.shape[2]
    if n == 0:
        return
    moments[:, :, :] = 0
    for o in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=64):
        a = order[o]
        _atom(&el, centres[a, 0], centres[a, 1], centres[a, 2], radius_sq[a], n_terms,
              &amp[a, 0], &quad[a, 0, 0], n0, n1, n2, NULL, &mapv[0, 0, 0],
              &moments[a, 0, 0])


def _shifts(const int[:, ::1] hkl, const double[:, ::1] translations):
    """exp(2 pi i h_a t_a) of each operation's translation t, for each axis a
    and each index h_a in -top..top: complex128 (k, 3, 2 top + 1), and top.
    A reflection's phase shift exp(2 pi i h.t) is the product of three
    entries: no cos or sin per reflection and operation."""
    top = int(np.abs(np.asarray(hkl)).max(initial=0))
    h = np.arange(-top, top + 1)
    return np.exp(2j * np.pi * np.asarray(translations)[:, :, None] * h), top


ctypedef fused complex_t:
    float complex
    double complex


def pick(const complex_t[:, :, ::1] spectrum, Py_ssize_t n2, const int[:, ::1] hkl,
         const int[:, :, ::1] rotations, const double[:, ::1] translations,
         const double[::1] scale, double complex[::1] out, int n_threads=1):
    """F(h) = scale_h sum_(R,t) exp(2 pi i h t) conj(X(hR)), X the half
    spectrum of a real grid from a forward FFT (exponent -2 pi i).

    Parameters
    ----------
    spectrum : complex64 or complex128 (N0, N1, N2 // 2 + 1)  IN
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
    cdef double re, im, xr, xi
    cdef double complex t
    cdef int ok, sign
    if hkl.shape[1] != 3 or rotations.shape[1] != 3 or rotations.shape[2] != 3 \
            or translations.shape[0] != n_ops or scale.shape[0] != m or out.shape[0] != m \
            or spectrum.shape[2] != n2 // 2 + 1:
        raise ValueError("pick: arrays of inconsistent shapes")
    shifts, top_ = _shifts(hkl, translations)
    cdef const double complex[:, :, ::1] shift = shifts
    cdef Py_ssize_t top = top_
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
            # X(-k) = conj(X(k)) for the half of k the half spectrum lacks;
            # |k_i| < N_i / 2 here, so a negative index wraps by one addition
            sign = 1
            if k2 < 0:
                k0, k1, k2, sign = -k0, -k1, -k2, -1
            if k0 < 0:
                k0 = k0 + n0
            if k1 < 0:
                k1 = k1 + n1
            xr = spectrum[k0, k1, k2].real
            xi = -sign * spectrum[k0, k1, k2].imag
            t = (shift[op, 0, hkl[i, 0] + top] * shift[op, 1, hkl[i, 1] + top]
                 * shift[op, 2, hkl[i, 2] + top])
            re = re + t.real * xr - t.imag * xi
            im = im + t.real * xi + t.imag * xr
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
    cdef double tr, ti
    cdef double complex c
    cdef bint ok
    if hkl.shape[1] != 3 or rotations.shape[1] != 3 or rotations.shape[2] != 3 \
            or translations.shape[0] != n_ops or coefficients.shape[0] != m \
            or spectrum.shape[2] != n2 // 2 + 1:
        raise ValueError("scatter: arrays of inconsistent shapes")
    shifts, top_ = _shifts(hkl, translations)
    cdef const double complex[:, :, ::1] shift = shifts
    cdef Py_ssize_t top = top_
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
                # c = c_h exp(-2 pi i h t); Y[k] += conj(c) / 2, Y[-k] += c / 2
                c = 0.5 * coefficients[i] * (shift[op, 0, hkl[i, 0] + top]
                                             * shift[op, 1, hkl[i, 1] + top]
                                             * shift[op, 2, hkl[i, 2] + top]).conjugate()
                tr = c.real
                ti = c.imag
                if k[2] >= 0:
                    spectrum[_wrap(k[0], n0), _wrap(k[1], n1), k[2]] += tr - 1j * ti
                if k[2] <= 0:
                    spectrum[_wrap(-k[0], n0), _wrap(-k[1], n1), -k[2]] += tr + 1j * ti
    return bad


def mark_spheres(const double[:, ::1] centres, const double[::1] radius_sq,
                 const double[::1] core_sq, const double[::1] metric,
                 signed char[:, :, ::1] mask):
    """Mark the atoms' spheres on a mask of 1 (solvent): points within the
    core radius become 2, the others within the radius 0 unless they are 2
    already.  (A core point, nearer an atom than radius - r_shrink, keeps
    only macromolecule within r_shrink, so the shrinking need not look at
    it.)

    Parameters
    ----------
    centres : float64 (n, 3)      IN  index units
    radius_sq, core_sq : float64 (n,)  IN  Angstrom^2
    metric : float64 (6,)         IN  metric in index units
    mask : int8 (N0, N1, N2)      IN/OUT
    """
    if centres.shape[1] != 3 or radius_sq.shape[0] != centres.shape[0] \
            or core_sq.shape[0] != centres.shape[0] or metric.shape[0] != 6:
        raise ValueError("mark_spheres: arrays of inconsistent shapes")
    cdef Ellipsoid el = _ellipsoid(metric)
    cdef Py_ssize_t n = centres.shape[0], a, i, j, k, i_lo, i_hi, j_lo, j_hi, k_lo, k_hi
    cdef Py_ssize_t n0 = mask.shape[0], n1 = mask.shape[1], n2 = mask.shape[2], ii, jj
    cdef double c0, c1, c2, r_sq, d0, d1, d2, disc, sq, b, cc, half0, q, in_sq
    cdef signed char *p
    with nogil:
        for a in range(n):
            c0 = centres[a, 0]
            c1 = centres[a, 1]
            c2 = centres[a, 2]
            r_sq = radius_sq[a]
            in_sq = core_sq[a]
            half0 = sqrt(r_sq) * el.w0
            i_lo = _ceil(c0 - half0)
            i_hi = _floor(c0 + half0)
            for i in range(i_lo, i_hi + 1):
                d0 = i - c0
                if not _extent(el.p00, el.p11, el.p01, d0, r_sq, c1, el.inv_p11, &j_lo, &j_hi):
                    continue
                ii = _wrap(i, n0)
                for j in range(j_lo, j_hi + 1):
                    d1 = j - c1
                    b = el.m02 * d0 + el.m12 * d1
                    cc = el.m00 * d0 * d0 + 2 * el.m01 * d0 * d1 + el.m11 * d1 * d1 - r_sq
                    disc = b * b - el.m22 * cc
                    if disc < 0:
                        continue
                    sq = sqrt(disc)
                    k_lo = _ceil(c2 + (-b - sq) * el.inv_m22)
                    k_hi = _floor(c2 + (-b + sq) * el.inv_m22)
                    jj = _wrap(j, n1)
                    q = cc + r_sq
                    for k in range(k_lo, k_hi + 1):
                        d2 = k - c2
                        p = &mask[ii, jj, _wrap(k, n2)]
                        if q + d2 * (2 * b + el.m22 * d2) <= in_sq:
                            p[0] = 2
                        elif p[0] == 1:
                            p[0] = 0


def shrink(const signed char[:, :, ::1] mask, const int[:, ::1] stencil,
           signed char[:, :, ::1] out, int n_threads=1):
    """out = 1 where mask is 1, or 0 with a point of value 1 at one of the
    stencil offsets; else 0.

    Parameters
    ----------
    mask : int8 (N0, N1, N2)     IN   1 solvent, 0 or 2 not
    stencil : int32 (s, 3)       IN   offsets in grid points
    out : int8 (N0, N1, N2)      OUT
    """
    cdef Py_ssize_t n0 = mask.shape[0], n1 = mask.shape[1], n2 = mask.shape[2]
    cdef Py_ssize_t i, j, k, s, n_s = stencil.shape[0], idx
    cdef Py_ssize_t h0 = 0, h1 = 0, h2 = 0
    cdef bint inner
    cdef const signed char *base = &mask[0, 0, 0]
    if stencil.shape[1] != 3 or out.shape[0] != n0 or out.shape[1] != n1 or out.shape[2] != n2:
        raise ValueError("shrink: arrays of inconsistent shapes")
    for s in range(n_s):
        h0 = max(h0, abs(stencil[s, 0]))
        h1 = max(h1, abs(stencil[s, 1]))
        h2 = max(h2, abs(stencil[s, 2]))
    offsets = np.array([(stencil[s, 0] * n1 + stencil[s, 1]) * n2 + stencil[s, 2]
                        for s in range(n_s)], dtype=np.intp)
    cdef Py_ssize_t[::1] off = offsets
    for i in prange(n0, nogil=True, num_threads=n_threads, schedule="static"):
        for j in range(n1):
            for k in range(n2):
                idx = (i * n1 + j) * n2 + k
                out[i, j, k] = 1 if base[idx] == 1 else 0
                if base[idx] != 0:
                    continue
                inner = (h0 <= i < n0 - h0 and h1 <= j < n1 - h1 and h2 <= k < n2 - h2)
                for s in range(n_s):
                    if inner:
                        if base[idx + off[s]] == 1:
                            out[i, j, k] = 1
                            break
                    elif mask[_wrap(i + stencil[s, 0], n0), _wrap(j + stencil[s, 1], n1),
                              _wrap(k + stencil[s, 2], n2)] == 1:
                        out[i, j, k] = 1
                        break


def atom_terms(const double[:, ::1] u_star, const double[::1] lam_atom,
               const double[:, ::1] a, const double[:, ::1] b, double b_add,
               const double[:, ::1] gstar, const double[::1] shape, double volume,
               double cutoff, double[:, ::1] amp,
               double[:, :, ::1] quad, double[:, :, ::1] inv, double[::1] radius_sq):
    """The Gaussian terms of each atom: U*_ag = U*_a + (b_g + b_add)/(8 pi^2) G*.

    Parameters
    ----------
    u_star : float64 (n, 6)      IN  U* of each atom (11, 22, 33, 12, 13, 23)
    lam_atom : float64 (n,)      IN  largest eigenvalue of each atom's U_cart
    a, b : float64 (n, g)        IN  Gaussian coefficients (b = 0 for the constant)
    gstar : float64 (3, 3)       IN  reciprocal metric
    shape : float64 (3,)         IN  grid size
    cutoff : float               IN  relative cut-off: term g is sampled out to where its
                                     peak a_g has fallen to cutoff * sum|a| / g, so that the
                                     mass left out is ~cutoff of the atom's
    amp : float64 (n, g)         OUT amplitude per unit weight, a_g / ((2 pi)^3/2 V det(U*)^1/2)
    quad : float64 (n, g, 6)     OUT D U*^-1 D, D = diag(1/N) (00, 11, 22, 01, 02, 12)
    inv : float64 (n, g, 6)      OUT U*^-1 (00, 11, 22, 01, 02, 12)
    radius_sq : float64 (n,)     OUT cut-off radius squared (A^2)

    Returns
    -------
    int : index of the first atom with a term whose U* is not positive
        definite, or -1.
    """
    cdef Py_ssize_t n = u_star.shape[0], i, g, n_g = a.shape[1], k, n_real
    cdef double beta, u00, u11, u22, u01, u02, u12, c00, c11, c22, c01, c02, c12, det
    cdef double norm = (2 * M_PI) ** 1.5 * volume, peak, r2, lam, rmax, total
    cdef double s0 = 1.0 / shape[0], s1 = 1.0 / shape[1], s2 = 1.0 / shape[2]
    cdef Py_ssize_t first_bad = -1
    if u_star.shape[1] != 6 or lam_atom.shape[0] != n or a.shape[0] != n or b.shape[0] != n \
            or b.shape[1] != n_g or amp.shape[0] != n or amp.shape[1] != n_g \
            or quad.shape[0] != n or quad.shape[1] != n_g or quad.shape[2] != 6 \
            or inv.shape[0] != n or inv.shape[1] != n_g or inv.shape[2] != 6 \
            or radius_sq.shape[0] != n:
        raise ValueError("atom_terms: arrays of inconsistent shapes")
    with nogil:
        for i in range(n):
            rmax = 0
            total = 0
            n_real = 0
            for g in range(n_g):
                total = total + fabs(a[i, g])
                if a[i, g] != 0:
                    n_real = n_real + 1
            for g in range(n_g):
                beta = (b[i, g] + b_add) / (8 * M_PI * M_PI)
                u00 = u_star[i, 0] + beta * gstar[0, 0]
                u11 = u_star[i, 1] + beta * gstar[1, 1]
                u22 = u_star[i, 2] + beta * gstar[2, 2]
                u01 = u_star[i, 3] + beta * gstar[0, 1]
                u02 = u_star[i, 4] + beta * gstar[0, 2]
                u12 = u_star[i, 5] + beta * gstar[1, 2]
                c00 = u11 * u22 - u12 * u12
                c11 = u00 * u22 - u02 * u02
                c22 = u00 * u11 - u01 * u01
                c01 = u02 * u12 - u01 * u22
                c02 = u01 * u12 - u02 * u11
                c12 = u01 * u02 - u00 * u12
                det = u00 * c00 + u01 * c01 + u02 * c02
                if not (det > 0 and c00 > 0 and u00 > 0):
                    if first_bad < 0:
                        first_bad = i
                    amp[i, g] = 0
                    for k in range(6):
                        quad[i, g, k] = 0
                        inv[i, g, k] = 0
                    continue
                amp[i, g] = a[i, g] / (norm * sqrt(det))
                inv[i, g, 0] = c00 / det
                inv[i, g, 1] = c11 / det
                inv[i, g, 2] = c22 / det
                inv[i, g, 3] = c01 / det
                inv[i, g, 4] = c02 / det
                inv[i, g, 5] = c12 / det
                quad[i, g, 0] = inv[i, g, 0] * s0 * s0
                quad[i, g, 1] = inv[i, g, 1] * s1 * s1
                quad[i, g, 2] = inv[i, g, 2] * s2 * s2
                quad[i, g, 3] = inv[i, g, 3] * s0 * s1
                quad[i, g, 4] = inv[i, g, 4] * s0 * s2
                quad[i, g, 5] = inv[i, g, 5] * s1 * s2
                lam = lam_atom[i] + beta
                peak = fabs(a[i, g]) * n_real / (cutoff * total)
                if peak > 1:
                    r2 = 2 * lam * log(peak)
                    if r2 > rmax:
                        rmax = r2
            radius_sq[i] = rmax
    return first_bad

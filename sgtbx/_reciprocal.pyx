# Reciprocal-space symmetry of Miller-index arrays.
#
# Operations come as the primitive rotations R (int32 (k,3,3)), their
# translation numerators t*DEN (int32 (k,3)) and the centring numerators
# (int32 (n_c,3)), DEN = 24.  Indices are rows: the equivalent of h under
# (R, t) is h R, and F(h R) = F(h) exp(-2 pi i h.t).

import numpy as np

from cython.parallel cimport prange
from libc.math cimport NAN, M_PI, sqrt
from libc.stdint cimport int64_t

cdef int DEN = 24


cdef inline void _h_times_r(const int* h, const int[:, :, ::1] rot, Py_ssize_t s,
                            int* out) noexcept nogil:
    cdef int j
    for j in range(3):
        out[j] = h[0] * rot[s, 0, j] + h[1] * rot[s, 1, j] + h[2] * rot[s, 2, j]


cdef inline int _equal(const int* a, const int* b) noexcept nogil:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2]


cdef inline int _negated(const int* a, const int* b) noexcept nogil:
    return a[0] == -b[0] and a[1] == -b[1] and a[2] == -b[2]


cdef inline int _modulo(int a, int n) noexcept nogil:
    cdef int r = a % n
    return r + n if r < 0 else r


cdef inline unsigned char _absent(const int[:, ::1] hkl, Py_ssize_t i, const int[:, :, ::1] rot,
                                  const int[:, ::1] tran, const int[:, ::1] cen) noexcept nogil:
    cdef Py_ssize_t s, c
    cdef int h[3]
    cdef int hr[3]
    h[0] = hkl[i, 0]; h[1] = hkl[i, 1]; h[2] = hkl[i, 2]
    for c in range(cen.shape[0]):
        if _modulo(h[0] * cen[c, 0] + h[1] * cen[c, 1] + h[2] * cen[c, 2], DEN) != 0:
            return 1
    for s in range(rot.shape[0]):
        _h_times_r(h, rot, s, hr)
        if _equal(hr, h) and _modulo(h[0] * tran[s, 0] + h[1] * tran[s, 1] + h[2] * tran[s, 2], DEN) != 0:
            return 1
    return 0


def absent_flags(const int[:, ::1] hkl, const int[:, :, ::1] rot, const int[:, ::1] tran,
                 const int[:, ::1] cen, unsigned char[::1] out, int n_threads=1):
    """out[i] = 1 where hkl[i] is systematically absent: it breaks the
    centring condition, or some operation (R, t) with h R = h has h.t not an
    integer."""
    cdef Py_ssize_t i
    for i in prange(hkl.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        out[i] = _absent(hkl, i, rot, tran, cen)


cdef inline void _stabiliser(const int[:, ::1] hkl, Py_ssize_t i, const int[:, :, ::1] rot,
                             int* n_plus, int* n_minus) noexcept nogil:
    cdef Py_ssize_t s
    cdef int h[3]
    cdef int hr[3]
    h[0] = hkl[i, 0]; h[1] = hkl[i, 1]; h[2] = hkl[i, 2]
    n_plus[0] = 0
    n_minus[0] = 0
    for s in range(rot.shape[0]):
        _h_times_r(h, rot, s, hr)
        if _equal(hr, h):
            n_plus[0] += 1
        if _negated(hr, h):
            n_minus[0] += 1


def stabiliser_counts(const int[:, ::1] hkl, const int[:, :, ::1] rot,
                      int[::1] n_plus, int[::1] n_minus, int n_threads=1):
    """For each h, how many rotations give h R = h (n_plus) and h R = -h
    (n_minus).  Epsilon, centric flags and multiplicities follow from them."""
    cdef Py_ssize_t i
    for i in prange(hkl.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        _stabiliser(hkl, i, rot, &n_plus[i], &n_minus[i])


cdef inline double _restricted_phase(const int[:, ::1] hkl, Py_ssize_t i, const int[:, :, ::1] rot,
                                     const int[:, ::1] tran) noexcept nogil:
    cdef Py_ssize_t s
    cdef int h[3]
    cdef int hr[3]
    h[0] = hkl[i, 0]; h[1] = hkl[i, 1]; h[2] = hkl[i, 2]
    for s in range(rot.shape[0]):
        _h_times_r(h, rot, s, hr)
        if _negated(hr, h):
            return M_PI * _modulo(h[0] * tran[s, 0] + h[1] * tran[s, 1] + h[2] * tran[s, 2], DEN) / DEN
    return NAN


def restricted_phases(const int[:, ::1] hkl, const int[:, :, ::1] rot, const int[:, ::1] tran,
                      double[::1] out, int n_threads=1):
    """out[i] = pi (h.t mod 1), the phase modulo pi of a centric h (h R = -h
    under (R, t)), or NaN for an acentric h."""
    cdef Py_ssize_t i
    for i in prange(hkl.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        out[i] = _restricted_phase(hkl, i, rot, tran)


cdef inline int _in_asu(int asu, const int* hkl, const int[:, ::1] basis, int transform) noexcept nogil:
    # The CCP4 reciprocal asymmetric units (the twelve choices of CCP4 symlib
    # and cctbx, ten distinct conditions), tested in the reference setting.
    cdef int h, k, l
    if transform:
        h = hkl[0] * basis[0, 0] + hkl[1] * basis[1, 0] + hkl[2] * basis[2, 0]
        k = hkl[0] * basis[0, 1] + hkl[1] * basis[1, 1] + hkl[2] * basis[2, 1]
        l = hkl[0] * basis[0, 2] + hkl[1] * basis[1, 2] + hkl[2] * basis[2, 2]
    else:
        h = hkl[0]; k = hkl[1]; l = hkl[2]
    if asu == 0:
        return l > 0 or (l == 0 and (h > 0 or (h == 0 and k >= 0)))
    if asu == 1:
        return k >= 0 and (l > 0 or (l == 0 and h >= 0))
    if asu == 2:
        return h >= 0 and k >= 0 and l >= 0
    if asu == 3:
        return l >= 0 and ((h >= 0 and k > 0) or (h == 0 and k == 0))
    if asu == 4:
        return h >= k and k >= 0 and l >= 0
    if asu == 5:
        return (h >= 0 and k > 0) or (h == 0 and k == 0 and l >= 0)
    if asu == 6:
        return h >= k and k >= 0 and (k > 0 or l >= 0)
    if asu == 7:
        return h >= k and k >= 0 and (h > k or l >= 0)
    if asu == 8:
        return h >= 0 and ((l >= h and k > h) or (l == h and k == h))
    if asu == 9:
        return k >= l and l >= h and h >= 0
    return 0


cdef inline int _greater(const int* a, const int* b) noexcept nogil:
    # lexicographic a > b
    if a[0] != b[0]:
        return a[0] > b[0]
    if a[1] != b[1]:
        return a[1] > b[1]
    return a[2] > b[2]


cdef inline int _to_max(const int* h, Py_ssize_t i, const int[:, :, ::1] rot,
                        const int[:, ::1] tran, bint anomalous, int[:, ::1] hkl_out,
                        int[::1] isym_out, double[::1] shift_out) noexcept nogil:
    # For settings without a tabulated CCP4 asymmetric unit: the
    # representative is the lexicographically largest of the +-h R, the +
    # image preferred on a tie (a centric reflection).
    cdef Py_ssize_t s, best_s = 0
    cdef int best_sign = 1
    cdef int hr[3]
    cdef int neg[3]
    cdef int best[3]
    _h_times_r(h, rot, 0, best)
    for s in range(rot.shape[0]):
        _h_times_r(h, rot, s, hr)
        if _greater(hr, best) or (_equal(hr, best) and best_sign < 0):
            best[0] = hr[0]; best[1] = hr[1]; best[2] = hr[2]
            best_s = s
            best_sign = 1
        neg[0] = -hr[0]; neg[1] = -hr[1]; neg[2] = -hr[2]
        if _greater(neg, best):
            best[0] = neg[0]; best[1] = neg[1]; best[2] = neg[2]
            best_s = s
            best_sign = -1
    if best_sign < 0 and anomalous:
        best[0] = -best[0]; best[1] = -best[1]; best[2] = -best[2]
    hkl_out[i, 0] = best[0]; hkl_out[i, 1] = best[1]; hkl_out[i, 2] = best[2]
    isym_out[i] = <int> (2 * best_s + (1 if best_sign > 0 else 2))
    shift_out[i] = 2 * M_PI * _modulo(h[0] * tran[best_s, 0] + h[1] * tran[best_s, 1]
                                      + h[2] * tran[best_s, 2], DEN) / DEN
    return 1


cdef inline int _to_asu(const int[:, ::1] hkl, Py_ssize_t i, const int[:, :, ::1] rot,
                        const int[:, ::1] tran, int asu, const int[:, ::1] basis, bint transform,
                        bint anomalous, int[:, ::1] hkl_out, int[::1] isym_out,
                        double[::1] shift_out) noexcept nogil:
    cdef Py_ssize_t s, minus_s = -1
    cdef int h[3]
    cdef int hr[3]
    cdef int neg[3]
    h[0] = hkl[i, 0]; h[1] = hkl[i, 1]; h[2] = hkl[i, 2]
    if asu < 0:
        return _to_max(h, i, rot, tran, anomalous, hkl_out, isym_out, shift_out)
    for s in range(rot.shape[0]):
        _h_times_r(h, rot, s, hr)
        if _in_asu(asu, hr, basis, transform):
            hkl_out[i, 0] = hr[0]; hkl_out[i, 1] = hr[1]; hkl_out[i, 2] = hr[2]
            isym_out[i] = <int> (2 * s + 1)
            shift_out[i] = 2 * M_PI * _modulo(h[0] * tran[s, 0] + h[1] * tran[s, 1] + h[2] * tran[s, 2], DEN) / DEN
            return 1
        neg[0] = -hr[0]; neg[1] = -hr[1]; neg[2] = -hr[2]
        if minus_s < 0 and _in_asu(asu, neg, basis, transform):
            minus_s = s
    if minus_s < 0:
        hkl_out[i, 0] = h[0]; hkl_out[i, 1] = h[1]; hkl_out[i, 2] = h[2]
        isym_out[i] = 0
        shift_out[i] = NAN
        return 0
    s = minus_s
    _h_times_r(h, rot, s, hr)
    if anomalous:
        hkl_out[i, 0] = hr[0]; hkl_out[i, 1] = hr[1]; hkl_out[i, 2] = hr[2]
    else:
        hkl_out[i, 0] = -hr[0]; hkl_out[i, 1] = -hr[1]; hkl_out[i, 2] = -hr[2]
    isym_out[i] = <int> (2 * s + 2)
    shift_out[i] = 2 * M_PI * _modulo(h[0] * tran[s, 0] + h[1] * tran[s, 1] + h[2] * tran[s, 2], DEN) / DEN
    return 1


def map_to_asu(const int[:, ::1] hkl, const int[:, :, ::1] rot, const int[:, ::1] tran,
               int asu, const int[:, ::1] basis, bint transform, bint anomalous,
               int[:, ::1] hkl_out, int[::1] isym_out, double[::1] shift_out, int n_threads=1):
    """Map each h to its representative in the CCP4 asymmetric unit.

    isym follows the MTZ convention: 2s+1 when h_asu = h R_s, 2s+2 when
    h_asu = -h R_s (s counted from 0).  The + image is preferred, so a
    centric reflection always gets an odd isym.  shift_out = 2 pi (h.t_s)
    mod 2 pi.  With ``anomalous``, a reflection whose representative is a
    - image is returned as -h_asu (the Friedel mate kept apart).  Returns the
    number of reflections that could not be mapped (0 for a consistent
    group)."""
    cdef Py_ssize_t i
    cdef int failures = 0
    for i in prange(hkl.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        failures += 1 - _to_asu(hkl, i, rot, tran, asu, basis, transform, anomalous,
                                hkl_out, isym_out, shift_out)
    return failures


def merge_sorted(const int64_t[::1] order, const int64_t[::1] starts, const double[::1] values,
                 const double[::1] sigmas, bint shelxl_rule,
                 double[::1] mean, double[::1] sigma, int[::1] count,
                 double[::1] sums):
    """Merge groups of equivalent observations.

    ``order`` lists the observations sorted by group, group g occupying
    order[starts[g]:starts[g+1]].  Weighted means with w = 1/sigma^2, or with
    the SHELXL rule (w = I/sigma^2 for I > 3 sigma, else 3/sigma, and the
    s.u. the larger of the one from the sigmas and the one from the spread).
    sums receives [sum |I - <I>|, sum I, sum sigma(<I>), sum <I>] over groups
    of two or more for R_int, and over all groups for R_sigma."""
    cdef Py_ssize_t g, j, n_groups = starts.shape[0] - 1
    cdef int64_t idx
    cdef double w, sw, swx, s_inv, v, sg, internal, spread, deviation
    cdef double abs_dev = 0, total = 0, sum_sigma = 0, sum_mean = 0
    with nogil:
        for g in range(n_groups):
            sw = 0
            swx = 0
            s_inv = 0
            for j in range(starts[g], starts[g + 1]):
                idx = order[j]
                v = values[idx]
                sg = sigmas[idx]
                s_inv = s_inv + 1.0 / (sg * sg)
                if shelxl_rule:
                    w = v / (sg * sg) if v > 3 * sg else 3.0 / sg
                else:
                    w = 1.0 / (sg * sg)
                sw = sw + w
                swx = swx + w * v
            mean[g] = swx / sw
            count[g] = <int> (starts[g + 1] - starts[g])
            internal = 1.0 / sqrt(s_inv)
            if shelxl_rule and count[g] > 1:
                # SHELXL's estimate from the spread: sum |I - <I>| / (n sqrt(n - 1))
                spread = 0
                for j in range(starts[g], starts[g + 1]):
                    deviation = values[order[j]] - mean[g]
                    spread = spread + (deviation if deviation > 0 else -deviation)
                spread = spread / (count[g] * sqrt(count[g] - 1.0))
                sigma[g] = spread if spread > internal else internal
            else:
                sigma[g] = internal
            if count[g] > 1:
                for j in range(starts[g], starts[g + 1]):
                    idx = order[j]
                    deviation = values[idx] - mean[g]
                    abs_dev = abs_dev + (deviation if deviation > 0 else -deviation)
                    total = total + values[idx]
            sum_sigma = sum_sigma + sigma[g]
            sum_mean = sum_mean + mean[g]
    sums[0] = abs_dev
    sums[1] = total
    sums[2] = sum_sigma
    sums[3] = sum_mean


def group_hkl(const int[:, ::1] hkl, int64_t max_bins, int64_t[::1] order_out,
              int64_t[::1] starts_out):
    """Group equal rows of hkl by a counting sort over the box they span:
    order_out lists the row indices in lexicographic order of hkl (stable),
    starts_out[g] where group g begins (with a final entry n).  Returns the
    number of groups, or -1 if the box has more than max_bins cells."""
    cdef Py_ssize_t i, j, n = hkl.shape[0]
    cdef int low[3]
    cdef int high[3]
    cdef int64_t b, total = 0, groups = 0, n_bins
    cdef int64_t[::1] offsets
    if n == 0:
        starts_out[0] = 0
        return 0
    for j in range(3):
        low[j] = hkl[0, j]
        high[j] = hkl[0, j]
    with nogil:
        for i in range(n):
            for j in range(3):
                if hkl[i, j] < low[j]:
                    low[j] = hkl[i, j]
                elif hkl[i, j] > high[j]:
                    high[j] = hkl[i, j]
    cdef int64_t e1 = high[1] - low[1] + 1, e2 = high[2] - low[2] + 1
    n_bins = (high[0] - low[0] + 1) * e1 * e2
    if n_bins > max_bins:
        return -1
    offsets = np.zeros(n_bins + 1, dtype=np.int64)
    with nogil:
        for i in range(n):
            b = ((hkl[i, 0] - low[0]) * e1 + (hkl[i, 1] - low[1])) * e2 + (hkl[i, 2] - low[2])
            offsets[b + 1] += 1
        for b in range(n_bins):
            if offsets[b + 1] > 0:
                starts_out[groups] = total
                groups += 1
            total += offsets[b + 1]
            offsets[b + 1] = total
        starts_out[groups] = n
        for i in range(n):
            b = ((hkl[i, 0] - low[0]) * e1 + (hkl[i, 1] - low[1])) * e2 + (hkl[i, 2] - low[2])
            order_out[offsets[b]] = i
            offsets[b] += 1
    return groups

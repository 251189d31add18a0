# Site-symmetry analysis of many sites at once.
#
# For each site x, the operations (R, t) whose image R x + t lies within a
# distance tolerance of x (minimum image over lattice translations) form
# the site-symmetry group; the exact special position is the average of the
# images under that group.  The search is repeated at the averaged position
# until the group and the position no longer change.

import numpy as np

from cython.parallel cimport prange
from libc.math cimport floor
from libc.stdint cimport uint64_t

cdef int MAX_ROUNDS = 10


cdef inline double _quad(const double* v, const double[:, ::1] g) noexcept nogil:
    return (v[0] * (g[0, 0] * v[0] + g[0, 1] * v[1] + g[0, 2] * v[2])
            + v[1] * (g[1, 0] * v[0] + g[1, 1] * v[1] + g[1, 2] * v[2])
            + v[2] * (g[2, 0] * v[0] + g[2, 1] * v[1] + g[2, 2] * v[2]))


cdef int _search(const double* x, const int[:, :, ::1] rot, const double[:, ::1] tran,
                 const int[::1] rot_index, const double[:, ::1] g, const double[:, ::1] shifts,
                 const double[::1] shift_norms, const double* reach, double tol_sq,
                 double* average, uint64_t* mask) noexcept nogil:
    # reach[j] >= 1/2 for some axis: the tolerance is too large for rounding
    # alone to find the nearest image
    # The operations that map x within the tolerance onto itself; their
    # images (nearest to x) are averaged into ``average``.  Returns the count.
    cdef Py_ssize_t s, e, j
    cdef double f[3]
    cdef double gf[3]
    cdef double y, d_sq, best, trial, a
    cdef Py_ssize_t best_e
    cdef int count = 0, possible
    cdef int wide = reach[0] >= 0.5 or reach[1] >= 0.5 or reach[2] >= 0.5
    average[0] = 0.0
    average[1] = 0.0
    average[2] = 0.0
    mask[0] = 0
    for s in range(rot.shape[0]):
        possible = 1
        for j in range(3):
            y = rot[s, j, 0] * x[0] + rot[s, j, 1] * x[1] + rot[s, j, 2] * x[2] + tran[s, j] - x[j]
            f[j] = y - floor(y + 0.5)
            # an image within the tolerance differs from x by v with
            # |v_j| < tol |a*_j| = reach[j]; with |f_j| <= 1/2 and reach < 1/2
            # that v can only be f itself
            a = f[j] if f[j] >= 0 else -f[j]
            if a >= reach[j]:
                possible = 0
        if not possible:
            continue
        d_sq = _quad(f, g)
        best = d_sq
        best_e = -1
        if d_sq >= tol_sq and wide:
            # with a tolerance of half an axis or more (reach >= 1/2), a
            # neighbouring translation may give the nearer image:
            # |f + e|^2 = |f|^2 + 2 e.G f + |e|^2
            for j in range(3):
                gf[j] = g[j, 0] * f[0] + g[j, 1] * f[1] + g[j, 2] * f[2]
            for e in range(shifts.shape[0]):
                trial = d_sq + 2 * (shifts[e, 0] * gf[0] + shifts[e, 1] * gf[1] + shifts[e, 2] * gf[2]) + shift_norms[e]
                if trial < best:
                    best = trial
                    best_e = e
        if best < tol_sq:
            count += 1
            mask[0] |= (<uint64_t> 1) << rot_index[s]
            for j in range(3):
                average[j] += x[j] + f[j] + (shifts[best_e, j] if best_e >= 0 else 0.0)
    for j in range(3):
        average[j] /= count
    return count


cdef int _analyse(const double[:, ::1] sites, Py_ssize_t i, const int[:, :, ::1] rot,
                  const double[:, ::1] tran, const int[::1] rot_index, const double[:, ::1] g,
                  const double[:, ::1] shifts, const double[::1] shift_norms, const double* reach,
                  double tol_sq, double[:, ::1] exact_out, uint64_t[::1] mask_out,
                  int[::1] order_out) noexcept nogil:
    cdef double x[3]
    cdef double average[3]
    cdef double step[3]
    cdef uint64_t mask, previous = 0
    cdef int count = 0, rounds, j
    x[0] = sites[i, 0]; x[1] = sites[i, 1]; x[2] = sites[i, 2]
    for rounds in range(MAX_ROUNDS):
        count = _search(x, rot, tran, rot_index, g, shifts, shift_norms, reach, tol_sq, average, &mask)
        for j in range(3):
            step[j] = average[j] - x[j]
            x[j] = average[j]
        # a general position (only the identity) is its own exact site
        if count == 1 or (rounds > 0 and mask == previous and _quad(step, g) < 1e-20):
            exact_out[i, 0] = x[0]; exact_out[i, 1] = x[1]; exact_out[i, 2] = x[2]
            mask_out[i] = mask
            order_out[i] = count
            return 1
        previous = mask
    exact_out[i, 0] = x[0]; exact_out[i, 1] = x[1]; exact_out[i, 2] = x[2]
    mask_out[i] = mask
    order_out[i] = count
    return 0


def analyse_sites(const double[:, ::1] sites, const int[:, :, ::1] rot, const double[:, ::1] tran,
                  const int[::1] rot_index, const double[:, ::1] metric, double tolerance,
                  double[:, ::1] exact_out, uint64_t[::1] mask_out, int[::1] order_out,
                  unsigned char[::1] converged_out, int n_threads=1):
    """Site symmetry of each site.

    rot, tran: all order_z operations; rot_index[s] numbers the distinct
    rotation of operation s (< 64).  Outputs: the exact special position,
    a bit mask of the rotations of the site group, its order, and whether
    the search settled."""
    cdef Py_ssize_t i
    cdef double[:, ::1] shifts = _neighbour_shifts()
    cdef double[::1] norms = _shift_norms(shifts, metric)
    cdef double tol_sq = tolerance * tolerance
    cdef double reach[3]
    cdef Py_ssize_t j
    for j in range(3):
        # tolerance times the length of the reciprocal axis: G*_jj = |a*_j|^2
        reach[j] = tolerance * (np.linalg.inv(np.asarray(metric))[j, j]) ** 0.5
    for i in prange(sites.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        converged_out[i] = _analyse(sites, i, rot, tran, rot_index, metric, shifts, norms, reach,
                                    tol_sq, exact_out, mask_out, order_out)


def _neighbour_shifts():
    grid = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                     if (a, b, c) != (0, 0, 0)], dtype=np.float64)
    return grid


def _shift_norms(double[:, ::1] shifts, const double[:, ::1] metric):
    cdef Py_ssize_t e
    cdef double[::1] out = np.empty(shifts.shape[0])
    for e in range(shifts.shape[0]):
        out[e] = _quad(&shifts[e, 0], metric)
    return np.asarray(out)

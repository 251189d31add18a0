"""Compiled cores of lstbx: blockwise accumulation of the normal sums and
Cholesky factorisation, solution and inversion through scipy's BLAS/LAPACK.

Everything here works on C-contiguous float64 arrays that the public layer
(``lstbx.normal_equations``) has already converted and checked; the kernels
report bad values through return codes, never by raising from inside a loop.

Matrix layout.  BLAS and LAPACK are column major: a C-ordered (n, n) array is
the transpose of the Fortran matrix over the same memory.  All symmetric
matrices here are kept in the C-order *upper* triangle, which is the Fortran
*lower* triangle ('L').
"""

from libc.math cimport sqrt
from scipy.linalg.cython_blas cimport dsyrk, dgemm
from scipy.linalg.cython_lapack cimport dpotrf, dpotrs, dpotri, dpocon

import numpy as np


cdef Py_ssize_t first_bad_row(const double[::1] y_obs, const double[::1] weights,
                              const double[::1] y_calc,
                              const double[:, ::1] rows) noexcept nogil:
    """Index of the first row with a negative or non-finite weight, a
    non-finite y_obs or y_calc, or a non-finite design-matrix element; -1
    when there is none."""
    cdef Py_ssize_t i, j, n = rows.shape[1]
    cdef double probe
    for i in range(rows.shape[0]):
        # x * 0 is 0 for finite x and NaN for NaN or infinity
        probe = weights[i] * 0.0 + y_calc[i] * 0.0 + y_obs[i] * 0.0
        for j in range(n):
            probe += rows[i, j] * 0.0
        if not (weights[i] >= 0.0) or probe != 0.0:
            return i
    return -1


cdef void scale_rows(const double[::1] y_obs, const double[::1] weights,
                     const double[::1] y_calc, const double[:, ::1] rows,
                     Py_ssize_t start, Py_ssize_t stop, double k0,
                     double[:, ::1] buffer, Py_ssize_t offset,
                     double[:, ::1] coefficients, double[::1] sums) noexcept nogil:
    """Copy rows[start:stop] scaled by sqrt(w) into buffer[offset:], the
    matching coefficients sqrt(w) y_c and sqrt(w) (y_o - k0 y_c) into
    coefficients[0|1, offset:], and add the scalar sums."""
    cdef Py_ssize_t i, j, k, n = rows.shape[1]
    cdef double w, s, yc, r
    for i in range(start, stop):
        w = weights[i]
        yc = y_calc[i]
        r = y_obs[i] - k0 * yc
        s = sqrt(w)
        k = offset + i - start
        for j in range(n):
            buffer[k, j] = s * rows[i, j]
        coefficients[0, k] = s * yc
        coefficients[1, k] = s * r
        sums[0] += w * yc * yc
        sums[1] += w * r * yc
        sums[2] += w * r * r
        sums[3] += w * y_obs[i] * y_obs[i]


cdef void rank_k_update(double[:, ::1] buffer, Py_ssize_t k,
                        double[:, ::1] coefficients,
                        double[:, ::1] upper, double[:, ::1] vectors) noexcept nogil:
    """upper += X^T X (C-order upper triangle) and vectors[0|1] += X^T
    coefficients[0|1] for X = buffer[:k] (k rows of length n)."""
    cdef int n = <int>buffer.shape[1]
    cdef int kk = <int>k
    cdef int two = 2
    cdef int ldc = <int>coefficients.shape[1]
    cdef double one = 1.0
    cdef char uplo = b'L'
    cdef char no = b'N'
    if k == 0:
        return
    # Fortran view: buffer is the n x k matrix X^T, so 'N' gives X^T X.
    dsyrk(&uplo, &no, &n, &kk, &one, &buffer[0, 0], &n, &one, &upper[0, 0], &n)
    # (n x k) times (k x 2): the two coefficient rows are the two columns.
    dgemm(&no, &no, &n, &two, &kk, &one, &buffer[0, 0], &n,
          &coefficients[0, 0], &ldc, &one, &vectors[0, 0], &n)


cdef class BlockAccumulator:
    """Running sums A = sum w dy dy^T (upper triangle), c = sum w y_c dy,
    u = sum w (y_o - k0 y_c) dy and the scalars sum w y_c^2,
    sum w (y_o - k0 y_c) y_c, sum w (y_o - k0 y_c)^2, sum w y_o^2.

    Rows are copied, scaled by sqrt(w), into a buffer of ``capacity`` rows;
    one dsyrk and one dgemm are issued each time the buffer fills, so the
    cost does not depend on the size of the caller's blocks.
    """
    cdef readonly Py_ssize_t n, capacity, n_buffered
    cdef double[:, ::1] buffer
    cdef double[:, ::1] coefficients
    cdef double[:, ::1] upper
    cdef double[:, ::1] vectors
    cdef double[::1] sums

    def __init__(self, Py_ssize_t n, Py_ssize_t capacity):
        if n < 1 or capacity < 1:
            raise ValueError(f"n ({n}) and capacity ({capacity}) must be positive")
        self.n = n
        self.capacity = capacity
        self.n_buffered = 0
        self.buffer = np.empty((capacity, n))
        self.coefficients = np.empty((2, capacity))
        self.upper = np.zeros((n, n))
        self.vectors = np.zeros((2, n))
        self.sums = np.zeros(4)

    def add(self, const double[::1] y_obs, const double[::1] weights,
            const double[::1] y_calc, const double[:, ::1] rows, double k0):
        """Accumulate one block.  Returns -1, or (accumulating nothing) the
        index of the first bad row (see ``first_bad_row``)."""
        cdef Py_ssize_t m = rows.shape[0], start = 0, stop, bad
        if rows.shape[1] != self.n:
            raise ValueError(f"rows have {rows.shape[1]} columns, expected {self.n}")
        if y_obs.shape[0] != m or weights.shape[0] != m or y_calc.shape[0] != m:
            raise ValueError("y_obs, weights and y_calc must have one entry per row")
        with nogil:
            bad = first_bad_row(y_obs, weights, y_calc, rows)
            while bad < 0 and start < m:
                stop = min(m, start + self.capacity - self.n_buffered)
                scale_rows(y_obs, weights, y_calc, rows, start, stop, k0,
                           self.buffer, self.n_buffered, self.coefficients,
                           self.sums)
                self.n_buffered += stop - start
                start = stop
                if self.n_buffered == self.capacity:
                    rank_k_update(self.buffer, self.n_buffered, self.coefficients,
                                  self.upper, self.vectors)
                    self.n_buffered = 0
        return bad

    def flush(self):
        """Fold the buffered rows into the sums."""
        with nogil:
            rank_k_update(self.buffer, self.n_buffered, self.coefficients,
                          self.upper, self.vectors)
        self.n_buffered = 0

    def results(self):
        """Flush, then return (A (n, n) symmetric, c (n,), u (n,), sums (4,)) as
        new arrays."""
        self.flush()
        a = np.triu(np.asarray(self.upper))
        a += np.triu(a, 1).T
        vectors = np.asarray(self.vectors)
        return a, vectors[0].copy(), vectors[1].copy(), np.asarray(self.sums).copy()


def cholesky_factor(double[:, ::1] matrix):
    """Overwrite the C-order upper triangle of a symmetric positive-definite
    (n, n) matrix with its Cholesky factor U (matrix = U^T U).  Returns the
    LAPACK info: 0 on success, j > 0 when the leading minor of order j is
    not positive definite."""
    cdef int n = <int>matrix.shape[0], info = 0
    cdef char uplo = b'L'
    if matrix.shape[1] != n:
        raise ValueError("matrix must be square")
    with nogil:
        dpotrf(&uplo, &n, &matrix[0, 0], &n, &info)
    return info


def cholesky_solve(const double[:, ::1] factor, double[::1] rhs):
    """Overwrite rhs with the solution of (U^T U) x = rhs for the factor of
    ``cholesky_factor``."""
    cdef int n = <int>factor.shape[0], one = 1, info = 0
    cdef char uplo = b'L'
    if rhs.shape[0] != n or factor.shape[1] != n:
        raise ValueError("factor must be (n, n) and rhs (n,)")
    with nogil:
        dpotrs(&uplo, &n, &one, <double*>&factor[0, 0], &n, &rhs[0], &n, &info)
    return info


def cholesky_rcond(const double[:, ::1] factor, double norm_1):
    """LAPACK's estimate of the reciprocal 1-norm condition number of the
    matrix whose factor ``cholesky_factor`` returned, given the 1-norm of
    that matrix."""
    cdef int n = <int>factor.shape[0], info = 0
    cdef double rcond = 0.0
    cdef char uplo = b'L'
    cdef double[::1] work = np.empty(3 * n)
    cdef int[::1] iwork = np.empty(n, dtype=np.intc)
    if factor.shape[1] != n:
        raise ValueError("factor must be square")
    with nogil:
        dpocon(&uplo, &n, <double*>&factor[0, 0], &n, &norm_1, &rcond,
               &work[0], &iwork[0], &info)
    return rcond


def cholesky_inverse(double[:, ::1] factor):
    """Overwrite the factor of ``cholesky_factor`` with the full symmetric
    inverse of the original matrix.  Returns the LAPACK info."""
    cdef int n = <int>factor.shape[0], info = 0
    cdef Py_ssize_t i, j
    cdef char uplo = b'L'
    if factor.shape[1] != n:
        raise ValueError("factor must be square")
    with nogil:
        dpotri(&uplo, &n, &factor[0, 0], &n, &info)
        if info == 0:
            for i in range(n):
                for j in range(i):
                    factor[i, j] = factor[j, i]
    return info

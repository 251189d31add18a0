"""Compiled cores of restraintstbx.

Every restraint type is one ``cdef ... noexcept nogil`` function that, for a
single proxy whose atoms have already been placed (symmetry applied), writes
the residuals Delta = target - value of its rows and the derivatives of the
restraint *values* with respect to the Cartesian coordinates (and ADPs) of
those placed atoms.  Types whose residual sum has a cheaper gradient than the
one built from their rows (planarity) have a second function for it.

Two drivers serve all types: ``ResidualSum`` (sum of w Delta^2 and its
gradient, mapped back from every symmetry mate to the atom it came from) and
``design_rows`` (CSR rows d value / d parameter, the deltas and nothing else).
Proxies without symmetry mates of the fixed-size geometry types (bond, angle,
dihedral, chirality, non-bonded, bump) take direct loops over the sites for
the residual sum, built on the same per-type mathematics.  The drivers take
plain arrays only; see ``restraintstbx/proxies.py`` for the layout and
``restraintstbx/DERIVATIONS.md`` for the formulae.

Status codes returned by the per-proxy functions: 0 success, 1 degenerate
geometry (coincident atoms, zero-length vector), 2 ADP not positive definite.
"""

from libc.math cimport sqrt, fabs, atan2, acos, cos, sin, pow, floor, M_PI
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, parallel, threadid

import numpy as np

cdef double RAD2DEG = 180.0 / M_PI

ctypedef int (*rows_fn)(int p, const double* x, const double* u, const double* par,
                        const double* rw, int nrow, double* delta, double* dx,
                        double* du) noexcept nogil
ctypedef int (*grad_fn)(int p, const double* x, const double* u, const double* par,
                        const double* rw, int nrow, double* esum, double* gx,
                        double* gu) noexcept nogil

# Kinds (the same numbers are used by proxies.py).
BOND = 0
ANGLE = 1
DIHEDRAL = 2
CHIRALITY = 3
PLANARITY = 4
FLAT = 5
BOND_SIMILARITY = 6
NONBONDED = 7
BUMP = 8
RIGID_BOND = 9
RIGU = 10
ADP_SIMILARITY = 11
ISOTROPIC_ADP = 12
UEQ_SIMILARITY = 13
FIXED_UEQ = 14
VOLUME_SIMILARITY = 15
B_SIMILARITY = 16
N_KINDS = 17

# ---------------------------------------------------------------------------
# small vector helpers

cdef inline double _dot(const double* a, const double* b) noexcept nogil:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


cdef inline void _cross(const double* a, const double* b, double* c) noexcept nogil:
    c[0] = a[1] * b[2] - a[2] * b[1]
    c[1] = a[2] * b[0] - a[0] * b[2]
    c[2] = a[0] * b[1] - a[1] * b[0]


cdef inline void _sub(const double* a, const double* b, double* c) noexcept nogil:
    c[0] = a[0] - b[0]
    c[1] = a[1] - b[1]
    c[2] = a[2] - b[2]


cdef inline double _unit(const double* a, const double* b, double* e) noexcept nogil:
    """e = (b - a) / |b - a|; returns |b - a| (0 leaves e undefined)."""
    cdef double d, f
    _sub(b, a, e)
    d = sqrt(_dot(e, e))
    if d > 0.0:
        f = 1.0 / d
        e[0] *= f
        e[1] *= f
        e[2] *= f
    return d


cdef inline void _u_matrix(const double* u, double* m) noexcept nogil:
    """U as a full 3x3 (row major) from the order 11,22,33,12,13,23."""
    m[0] = u[0]
    m[4] = u[1]
    m[8] = u[2]
    m[1] = u[3]
    m[3] = u[3]
    m[2] = u[4]
    m[6] = u[4]
    m[5] = u[5]
    m[7] = u[5]


cdef inline void _matvec(const double* m, const double* v, double* out) noexcept nogil:
    out[0] = m[0] * v[0] + m[1] * v[1] + m[2] * v[2]
    out[1] = m[3] * v[0] + m[4] * v[1] + m[5] * v[2]
    out[2] = m[6] * v[0] + m[7] * v[1] + m[8] * v[2]


cdef inline void _quadratic_form_derivative(const double* n, double s, double* du) noexcept nogil:
    """s * d(n^T U n)/d(u11,u22,u33,u12,u13,u23), off-diagonals counted twice."""
    du[0] = s * n[0] * n[0]
    du[1] = s * n[1] * n[1]
    du[2] = s * n[2] * n[2]
    du[3] = s * 2.0 * n[0] * n[1]
    du[4] = s * 2.0 * n[0] * n[2]
    du[5] = s * 2.0 * n[1] * n[2]


cdef int _eigen_symmetric3(const double* a, double* w, double* v) noexcept nogil:
    """Eigenvalues (ascending, w[3]) and eigenvectors (columns of v, row major)
    of a symmetric 3x3 matrix by cyclic Jacobi rotations."""
    cdef double m[9]
    cdef double c, s, t, theta, apq, app, aqq, mkp, mkq, off, scale, tmp
    cdef int sweep, p, q, k, i, j
    cdef int[3] pp = [0, 0, 1]
    cdef int[3] qq = [1, 2, 2]
    for i in range(9):
        m[i] = a[i]
        v[i] = 0.0
    v[0] = 1.0
    v[4] = 1.0
    v[8] = 1.0
    scale = fabs(m[0]) + fabs(m[4]) + fabs(m[8]) + fabs(m[1]) + fabs(m[2]) + fabs(m[5])
    for sweep in range(50):
        off = fabs(m[1]) + fabs(m[2]) + fabs(m[5])
        if off <= 1e-300 or off <= 1e-17 * scale:
            break
        for k in range(3):
            p = pp[k]
            q = qq[k]
            apq = m[3 * p + q]
            if apq == 0.0:
                continue
            app = m[3 * p + p]
            aqq = m[3 * q + q]
            theta = (aqq - app) / (2.0 * apq)
            t = (1.0 if theta >= 0.0 else -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0))
            c = 1.0 / sqrt(t * t + 1.0)
            s = t * c
            for i in range(3):
                mkp = m[3 * i + p]
                mkq = m[3 * i + q]
                m[3 * i + p] = c * mkp - s * mkq
                m[3 * i + q] = s * mkp + c * mkq
            for i in range(3):
                mkp = m[3 * p + i]
                mkq = m[3 * q + i]
                m[3 * p + i] = c * mkp - s * mkq
                m[3 * q + i] = s * mkp + c * mkq
            for i in range(3):
                mkp = v[3 * i + p]
                mkq = v[3 * i + q]
                v[3 * i + p] = c * mkp - s * mkq
                v[3 * i + q] = s * mkp + c * mkq
    for i in range(3):
        w[i] = m[4 * i]
    # sort ascending (three elements: insertion sort on columns)
    for i in range(1, 3):
        j = i
        while j > 0 and w[j - 1] > w[j]:
            tmp = w[j - 1]
            w[j - 1] = w[j]
            w[j] = tmp
            for k in range(3):
                tmp = v[3 * k + j - 1]
                v[3 * k + j - 1] = v[3 * k + j]
                v[3 * k + j] = tmp
            j -= 1
    return 0


# ---------------------------------------------------------------------------
# geometry types

cdef int _bond_rows(int p, const double* x, const double* u, const double* par,
                    const double* rw, int nrow, double* delta, double* dx,
                    double* du) noexcept nogil:
    cdef double e[3]
    cdef double d = _unit(x, x + 3, e)
    cdef int c
    if d <= 0.0:
        return 1
    delta[0] = par[0] - d
    for c in range(3):
        dx[c] = -e[c]
        dx[3 + c] = e[c]
    return 0


cdef int _bump_rows(int p, const double* x, const double* u, const double* par,
                    const double* rw, int nrow, double* delta, double* dx,
                    double* du) noexcept nogil:
    # a bond held at d >= d_min only: no residual and no derivative beyond it
    cdef int c, status = _bond_rows(p, x, u, par, rw, nrow, delta, dx, du)
    if status == 0 and delta[0] <= 0.0:
        delta[0] = 0.0
        for c in range(6):
            dx[c] = 0.0
    return status


cdef inline double _prolsq(double d, const double* par, double* dvalue) noexcept nogil:
    """Delta of the prolsq repulsion at distance d < d0 and d value / d d
    (value = -Delta).  par: d0 (= k_rep * vdw distance), irexp, rexp;
    Delta = s^(rexp/2) with s = d0^irexp - d^irexp, so w Delta^2 = c_rep s^rexp."""
    cdef double s
    if par[1] == 1.0 and par[2] == 4.0:
        s = par[0] - d
        dvalue[0] = 2.0 * s
        return s * s
    s = pow(par[0], par[1]) - pow(d, par[1])
    dvalue[0] = 0.5 * par[2] * pow(s, 0.5 * par[2] - 1.0) * par[1] * pow(d, par[1] - 1.0)
    return pow(s, 0.5 * par[2])


cdef int _nonbonded_rows(int p, const double* x, const double* u, const double* par,
                         const double* rw, int nrow, double* delta, double* dx,
                         double* du) noexcept nogil:
    # zero beyond d0, else _prolsq
    cdef double e[3]
    cdef double d, dvalue
    cdef int c
    _sub(x + 3, x, e)
    d = _dot(e, e)
    if d >= par[0] * par[0]:
        delta[0] = 0.0
        return 0
    if d <= 0.0:
        return 1
    d = sqrt(d)
    delta[0] = _prolsq(d, par, &dvalue)
    dvalue /= d
    for c in range(3):
        dx[c] = -dvalue * e[c]
        dx[3 + c] = dvalue * e[c]
    return 0


cdef inline double _angle(const double* x0, const double* x1, const double* x2,
                          double* g0, double* g1, double* g2) noexcept nogil:
    """Angle x0-x1-x2 in degrees and its derivatives (g0, g1, g2); -1 when an
    arm has zero length.  theta = atan2(|a x b|, a.b) with a = x0 - x1,
    b = x2 - x1, d theta / d a = ((a.b / a.a) a - b) / |a x b|, likewise for
    b; zero derivatives for a straight angle."""
    cdef double a[3]
    cdef double b[3]
    cdef double cr[3]
    cdef double aa, bb, ab, sn, fa, fb, f, theta
    cdef int c
    _sub(x0, x1, a)
    _sub(x2, x1, b)
    aa = _dot(a, a)
    bb = _dot(b, b)
    if aa <= 0.0 or bb <= 0.0:
        return -1.0
    ab = _dot(a, b)
    _cross(a, b, cr)
    sn = sqrt(_dot(cr, cr))
    theta = atan2(sn, ab) * RAD2DEG
    if sn < 1e-12 * sqrt(aa * bb):
        for c in range(3):
            g0[c] = 0.0
            g1[c] = 0.0
            g2[c] = 0.0
        return theta
    f = RAD2DEG / sn
    fa = ab / aa
    fb = ab / bb
    for c in range(3):
        g0[c] = f * (fa * a[c] - b[c])
        g2[c] = f * (fb * b[c] - a[c])
        g1[c] = -g0[c] - g2[c]
    return theta


cdef int _angle_rows(int p, const double* x, const double* u, const double* par,
                     const double* rw, int nrow, double* delta, double* dx,
                     double* du) noexcept nogil:
    cdef double theta = _angle(x, x + 3, x + 6, dx, dx + 3, dx + 6)
    if theta < 0.0:
        return 1
    delta[0] = par[0] - theta
    return 0


cdef inline double _dihedral(const double* x0, const double* x1, const double* x2,
                            const double* x3, double* g) noexcept nogil:
    """Dihedral angle x0-x1-x2-x3 in radians, IUPAC sign:
    atan2(|b2| b1.(b2 x b3), (b1 x b2).(b2 x b3)) with b_k = x_k - x_(k-1),
    and in g (12) its derivatives with respect to the four sites (Blondel &
    Karplus 1996).  Returns NaN when a plane is undefined."""
    cdef double b1[3]
    cdef double b2[3]
    cdef double b3[3]
    cdef double n1[3]
    cdef double n2[3]
    cdef double l2, nn1, nn2, f1, f2, il2, s1, s2
    cdef int c
    _sub(x1, x0, b1)
    _sub(x2, x1, b2)
    _sub(x3, x2, b3)
    _cross(b1, b2, n1)
    _cross(b2, b3, n2)
    l2 = _dot(b2, b2)
    nn1 = _dot(n1, n1)
    nn2 = _dot(n2, n2)
    if l2 <= 0.0 or nn1 <= 0.0 or nn2 <= 0.0:
        for c in range(12):
            g[c] = 0.0
        return 0.0 / 0.0
    il2 = 1.0 / l2
    f1 = _dot(b1, b2) * il2
    f2 = _dot(b3, b2) * il2
    l2 = sqrt(l2)
    s1 = -l2 / nn1
    s2 = l2 / nn2
    for c in range(3):
        g[c] = s1 * n1[c]
        g[9 + c] = s2 * n2[c]
        g[3 + c] = -(1.0 + f1) * g[c] + f2 * g[9 + c]
        g[6 + c] = f1 * g[c] - (1.0 + f2) * g[9 + c]
    return atan2(l2 * _dot(b1, n2), _dot(n1, n2))


cdef inline double _dihedral_delta(double phi, const double* par, double* f) noexcept nogil:
    """Delta for a dihedral phi (radians); f = d value / d phi (degrees per
    radian) for the rows.  par: ideal (degrees), periodicity n >= 1, form
    (0 harmonic, 1 sinusoidal)."""
    cdef double period = 360.0 / par[1]
    cdef double d = par[0] - phi * RAD2DEG
    cdef double t = d * par[1] * (1.0 / 360.0) + 0.5
    cdef long long n = <long long> t      # floor(t) without a libm call
    if t < n:
        n -= 1
    d -= period * n
    if par[2] == 0.0:
        f[0] = RAD2DEG
        return d
    f[0] = RAD2DEG * cos(M_PI * d / period)
    return period / M_PI * sin(M_PI * d / period)


cdef int _dihedral_rows(int p, const double* x, const double* u, const double* par,
                        const double* rw, int nrow, double* delta, double* dx,
                        double* du) noexcept nogil:
    cdef double phi, f
    cdef int c
    phi = _dihedral(x, x + 3, x + 6, x + 9, dx)
    if phi != phi:
        return 1
    delta[0] = _dihedral_delta(phi, par, &f)
    for c in range(12):
        dx[c] *= f
    return 0


cdef inline double _tetrahedron(const double* x0, const double* x1, const double* x2,
                                const double* x3, double* g0, double* g1,
                                double* g2, double* g3) noexcept nogil:
    """Signed volume (x1-x0).((x2-x0)x(x3-x0)) and its four gradients."""
    cdef double a[3]
    cdef double b[3]
    cdef double c[3]
    cdef int k
    _sub(x1, x0, a)
    _sub(x2, x0, b)
    _sub(x3, x0, c)
    _cross(b, c, g1)
    _cross(c, a, g2)
    _cross(a, b, g3)
    for k in range(3):
        g0[k] = -(g1[k] + g2[k] + g3[k])
    return _dot(a, g1)


cdef int _chirality_rows(int p, const double* x, const double* u, const double* par,
                         const double* rw, int nrow, double* delta, double* dx,
                         double* du) noexcept nogil:
    # par: ideal volume, both_signs (0/1)
    cdef double v = _tetrahedron(x, x + 3, x + 6, x + 9, dx, dx + 3, dx + 6, dx + 9)
    if par[1] != 0.0 and v * par[0] < 0.0:
        delta[0] = -par[0] - v
    else:
        delta[0] = par[0] - v
    return 0


cdef int _flat_rows(int p, const double* x, const double* u, const double* par,
                    const double* rw, int nrow, double* delta, double* dx,
                    double* du) noexcept nogil:
    # SHELXL FLAT: atoms 0, 1, 2 and, in turn, each further atom k as the
    # fourth corner of a tetrahedron whose volume is restrained to zero.
    cdef int r, k
    cdef double* row
    for r in range(nrow):
        k = r + 3
        row = dx + r * 3 * p
        delta[r] = -_tetrahedron(x, x + 3, x + 6, x + 3 * k,
                                 row, row + 3, row + 6, row + 3 * k)
    return 0


cdef int _plane_fit(int p, const double* x, const double* wt, double* centre,
                    double* lam, double* vec) noexcept nogil:
    """Weighted least-squares plane: centre (3), eigenvalues (3, ascending) and
    eigenvectors (columns of vec) of the weighted scatter matrix; the normal is
    column 0, its sign fixed so that its largest component is positive."""
    cdef double mm[9]
    cdef double wsum = 0.0
    cdef double y[3]
    cdef int i, a, b, big
    for a in range(3):
        centre[a] = 0.0
    for i in range(p):
        wsum += wt[i]
        for a in range(3):
            centre[a] += wt[i] * x[3 * i + a]
    if wsum <= 0.0:
        return 1
    for a in range(3):
        centre[a] /= wsum
    for a in range(9):
        mm[a] = 0.0
    for i in range(p):
        _sub(x + 3 * i, centre, y)
        for a in range(3):
            for b in range(a, 3):
                mm[3 * a + b] += wt[i] * y[a] * y[b]
    mm[3] = mm[1]
    mm[6] = mm[2]
    mm[7] = mm[5]
    _eigen_symmetric3(mm, lam, vec)
    big = 0
    for a in range(1, 3):
        if fabs(vec[3 * a]) > fabs(vec[3 * big]):
            big = a
    if vec[3 * big] < 0.0:
        for a in range(9):
            vec[a] = -vec[a]
    return 0


cdef int _planarity_rows(int p, const double* x, const double* u, const double* par,
                         const double* rw, int nrow, double* delta, double* dx,
                         double* du) noexcept nogil:
    # Rows: value_i = n.(x_i - c) (target 0), for every atom i.
    # d value_i / d x_ja = n_a (delta_ij - w_j/W)
    #     + w_j sum_{k=1,2} p_ik (d_j v_ka + n_a p_jk) / (lam_0 - lam_k)
    # with p_ik = (x_i - c).v_k and d_j = p_j0 (DERIVATIONS.md).
    cdef double centre[3]
    cdef double lam[3]
    cdef double vec[9]
    cdef double n[3]
    cdef double y[3]
    cdef double wsum = 0.0
    cdef double proj[3 * 64]
    cdef double* pr
    cdef double pj1, pj2, dj, f1, f2, t
    cdef int i, j, a
    if p > 64:
        return 1
    if _plane_fit(p, x, rw, centre, lam, vec):
        return 1
    if lam[1] - lam[0] <= 0.0 or lam[2] - lam[0] <= 0.0:
        return 1
    for a in range(3):
        n[a] = vec[3 * a]
    for i in range(p):
        wsum += rw[i]
        _sub(x + 3 * i, centre, y)
        for a in range(3):
            proj[3 * i + a] = y[0] * vec[a] + y[1] * vec[3 + a] + y[2] * vec[6 + a]
        delta[i] = -proj[3 * i]
    f1 = 1.0 / (lam[0] - lam[1])
    f2 = 1.0 / (lam[0] - lam[2])
    for j in range(p):
        dj = proj[3 * j]
        pj1 = proj[3 * j + 1]
        pj2 = proj[3 * j + 2]
        for i in range(p):
            pr = proj + 3 * i
            for a in range(3):
                t = n[a] * ((1.0 if i == j else 0.0) - rw[j] / wsum)
                t += rw[j] * (pr[1] * (dj * vec[3 * a + 1] + n[a] * pj1) * f1
                              + pr[2] * (dj * vec[3 * a + 2] + n[a] * pj2) * f2)
                dx[(i * p + j) * 3 + a] = t
    return 0


cdef inline int _smallest_eigenvector(const double* m, double* n) noexcept nogil:
    """Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix:
    the eigenvalue in closed form (trigonometric solution of the cubic), the
    vector as the largest cross product of two rows of M - lambda I.  Accurate
    to about eps |M| / (lambda_1 - lambda_0), which is what the residual sum
    of a plane (stationary in n) needs; the design rows use Jacobi."""
    cdef double q = (m[0] + m[4] + m[8]) / 3.0
    cdef double p1 = m[1] * m[1] + m[2] * m[2] + m[5] * m[5]
    cdef double a0 = m[0] - q, a1 = m[4] - q, a2 = m[8] - q
    cdef double p2 = a0 * a0 + a1 * a1 + a2 * a2 + 2.0 * p1
    cdef double pp, r, phi, lam, best, nn
    cdef double rows[9]
    cdef double c[9]
    cdef int k, i
    if p2 <= 0.0:
        return 1
    pp = sqrt(p2 / 6.0)
    r = (a0 * (a1 * a2 - m[5] * m[5]) - m[1] * (m[1] * a2 - m[5] * m[2])
         + m[2] * (m[1] * m[5] - a1 * m[2])) / (2.0 * pp * pp * pp)
    r = min(max(r, -1.0), 1.0)
    phi = acos(r) / 3.0
    lam = q + 2.0 * pp * cos(phi + 2.0 * M_PI / 3.0)
    for i in range(9):
        rows[i] = m[i]
    rows[0] -= lam
    rows[4] -= lam
    rows[8] -= lam
    _cross(rows, rows + 3, c)
    _cross(rows, rows + 6, c + 3)
    _cross(rows + 3, rows + 6, c + 6)
    best = -1.0
    for k in range(3):
        nn = _dot(c + 3 * k, c + 3 * k)
        if nn > best:
            best = nn
            i = k
    if best <= 0.0:
        return 1
    best = sqrt(best)
    for k in range(3):
        n[k] = c[3 * i + k] / best
    return 0


cdef int _planarity_gradient(int p, const double* x, const double* u, const double* par,
                             const double* rw, int nrow, double* esum, double* gx,
                             double* gu) noexcept nogil:
    # sum_i w_i d_i^2 is the smallest eigenvalue; its gradient is 2 w_j d_j n
    # (centre and normal are stationary), so no eigenvector derivative is needed.
    cdef double centre[3]
    cdef double mm[6]
    cdef double m9[9]
    cdef double n[3]
    cdef double y[3]
    cdef double wsum = 0.0, d, e = 0.0, wi
    cdef int i, a
    for a in range(3):
        centre[a] = 0.0
    for a in range(6):
        mm[a] = 0.0
    for i in range(p):
        wsum += rw[i]
        for a in range(3):
            centre[a] += rw[i] * x[3 * i + a]
    if wsum <= 0.0:
        return 1
    for a in range(3):
        centre[a] /= wsum
    for i in range(p):
        wi = rw[i]
        _sub(x + 3 * i, centre, y)
        mm[0] += wi * y[0] * y[0]
        mm[1] += wi * y[0] * y[1]
        mm[2] += wi * y[0] * y[2]
        mm[3] += wi * y[1] * y[1]
        mm[4] += wi * y[1] * y[2]
        mm[5] += wi * y[2] * y[2]
    m9[0] = mm[0]
    m9[1] = mm[1]
    m9[2] = mm[2]
    m9[3] = mm[1]
    m9[4] = mm[3]
    m9[5] = mm[4]
    m9[6] = mm[2]
    m9[7] = mm[4]
    m9[8] = mm[5]
    if _smallest_eigenvector(m9, n):
        return 1
    for i in range(p):
        _sub(x + 3 * i, centre, y)
        d = _dot(y, n)
        e += rw[i] * d * d
        for a in range(3):
            gx[3 * i + a] = 2.0 * rw[i] * d * n[a]
    esum[0] = e
    return 0


cdef int _bond_similarity_rows(int p, const double* x, const double* u, const double* par,
                               const double* rw, int nrow, double* delta, double* dx,
                               double* du) noexcept nogil:
    # Rows: value_l = d_l - mean, mean = sum w_l d_l / W (target 0).
    cdef double e[3 * 32]
    cdef double d[32]
    cdef double wsum = 0.0, mean = 0.0, f
    cdef int l, m, c
    if nrow > 32:
        return 1
    for l in range(nrow):
        d[l] = _unit(x + 6 * l, x + 6 * l + 3, e + 3 * l)
        if d[l] <= 0.0:
            return 1
        wsum += rw[l]
        mean += rw[l] * d[l]
    mean /= wsum
    for l in range(nrow):
        delta[l] = mean - d[l]
        for m in range(nrow):
            f = (1.0 if l == m else 0.0) - rw[m] / wsum
            for c in range(3):
                dx[(l * p + 2 * m) * 3 + c] = -f * e[3 * m + c]
                dx[(l * p + 2 * m + 1) * 3 + c] = f * e[3 * m + c]
    return 0


# ---------------------------------------------------------------------------
# ADP types (u: 6 per atom, U_cart 11,22,33,12,13,23; or 1 per atom, U_iso)

cdef inline double _bond_u_difference(const double* x, const double* u, double* n, double* dm,
                                      double* q) noexcept nogil:
    # The bond from atom 0 to atom 1: its unit vector n, dU = U_0 - U_1 as a
    # full 3x3, and q = dU n.  Returns the bond length (<= 0: degenerate).
    cdef double m0[9]
    cdef double m1[9]
    cdef double d = _unit(x, x + 3, n)
    cdef int c
    if d <= 0.0:
        return d
    _u_matrix(u, m0)
    _u_matrix(u + 6, m1)
    for c in range(9):
        dm[c] = m0[c] - m1[c]
    _matvec(dm, n, q)
    return d


cdef int _rigid_bond_rows(int p, const double* x, const double* u, const double* par,
                          const double* rw, int nrow, double* delta, double* dx,
                          double* du) noexcept nogil:
    # value = n^T U_0 n - n^T U_1 n along the bond direction n (target 0).
    cdef double n[3]
    cdef double dm[9]
    cdef double q[3]
    cdef double z
    cdef int c
    cdef double d = _bond_u_difference(x, u, n, dm, q)
    if d <= 0.0:
        return 1
    z = _dot(n, q)
    delta[0] = -z
    # d value / d x_1 = 2 (I - n n^T) dU n / d
    for c in range(3):
        dx[3 + c] = 2.0 * (q[c] - z * n[c]) / d
        dx[c] = -dx[3 + c]
    _quadratic_form_derivative(n, 1.0, du)
    _quadratic_form_derivative(n, -1.0, du + 6)
    return 0


cdef int _rigu_rows(int p, const double* x, const double* u, const double* par,
                    const double* rw, int nrow, double* delta, double* dx,
                    double* du) noexcept nogil:
    # Rows: the Cartesian components of (U_0 - U_1) n (target 0).  Their sum of
    # squares is dU33^2 + dU13^2 + dU23^2 in any frame with z along the bond,
    # which is what RIGU restrains (Thorn, Dittrich & Sheldrick 2012).
    cdef double n[3]
    cdef double dm[9]
    cdef double q[3]
    cdef int k, c, j
    cdef double* row
    # (a, b) of the six parameters
    cdef int[6] pa = [0, 1, 2, 0, 0, 1]
    cdef int[6] pb = [0, 1, 2, 1, 2, 2]
    cdef double d = _bond_u_difference(x, u, n, dm, q)
    if d <= 0.0:
        return 1
    for k in range(3):
        delta[k] = -q[k]
        # d q_k / d x_1 = (dU (I - n n^T))_k. / d
        for c in range(3):
            dx[k * 6 + 3 + c] = (dm[3 * k + c] - q[k] * n[c]) / d
            dx[k * 6 + c] = -dx[k * 6 + 3 + c]
        row = du + k * 12
        for j in range(6):
            if pa[j] == pb[j]:
                row[j] = n[pa[j]] if k == pa[j] else 0.0
            elif k == pa[j]:
                row[j] = n[pb[j]]
            elif k == pb[j]:
                row[j] = n[pa[j]]
            else:
                row[j] = 0.0
            row[6 + j] = -row[j]
    return 0


cdef int _adp_similarity_rows(int p, const double* x, const double* u, const double* par,
                              const double* rw, int nrow, double* delta, double* dx,
                              double* du) noexcept nogil:
    # Rows: the six components of U_0 - U_1 (target 0); the off-diagonal rows
    # carry twice the weight, so that sum w Delta^2 is w |U_0 - U_1|_F^2.
    cdef int k
    for k in range(6):
        delta[k] = u[6 + k] - u[k]
        du[k * 12 + k] = 1.0
        du[k * 12 + 6 + k] = -1.0
    return 0


cdef int _isotropic_adp_rows(int p, const double* x, const double* u, const double* par,
                             const double* rw, int nrow, double* delta, double* dx,
                             double* du) noexcept nogil:
    # Rows: the six components of U - U_eq I (target 0), weights as for SIMU.
    cdef double ueq = (u[0] + u[1] + u[2]) / 3.0
    cdef int k, j
    for k in range(6):
        if k < 3:
            delta[k] = ueq - u[k]
            for j in range(3):
                du[k * 6 + j] = (1.0 if j == k else 0.0) - 1.0 / 3.0
        else:
            delta[k] = -u[k]
            du[k * 6 + k] = 1.0
    return 0


cdef int _ueq_similarity_rows(int p, const double* x, const double* u, const double* par,
                              const double* rw, int nrow, double* delta, double* dx,
                              double* du) noexcept nogil:
    # Rows: value_i = U_eq,i - mean (weighted mean of the group's U_eq).
    cdef double wsum = 0.0, mean = 0.0, ui, f
    cdef int i, j, c
    for i in range(p):
        wsum += rw[i]
        mean += rw[i] * (u[6 * i] + u[6 * i + 1] + u[6 * i + 2]) / 3.0
    mean /= wsum
    for i in range(p):
        ui = (u[6 * i] + u[6 * i + 1] + u[6 * i + 2]) / 3.0
        delta[i] = mean - ui
        for j in range(p):
            f = ((1.0 if i == j else 0.0) - rw[j] / wsum) / 3.0
            for c in range(3):
                du[(i * p + j) * 6 + c] = f
    return 0


cdef int _fixed_ueq_rows(int p, const double* x, const double* u, const double* par,
                         const double* rw, int nrow, double* delta, double* dx,
                         double* du) noexcept nogil:
    cdef int c
    delta[0] = par[0] - (u[0] + u[1] + u[2]) / 3.0
    for c in range(3):
        du[c] = 1.0 / 3.0
    return 0


cdef inline double _ellipsoid_volume(const double* u, double* g) noexcept nogil:
    """(4 pi / 3) sqrt(det U) and its derivative with respect to the six
    parameters (off-diagonals counted twice); -1 when U is not positive
    definite."""
    cdef double c11 = u[1] * u[2] - u[5] * u[5]
    cdef double c22 = u[0] * u[2] - u[4] * u[4]
    cdef double c33 = u[0] * u[1] - u[3] * u[3]
    cdef double c12 = u[4] * u[5] - u[3] * u[2]
    cdef double c13 = u[3] * u[5] - u[1] * u[4]
    cdef double c23 = u[3] * u[4] - u[0] * u[5]
    cdef double det = u[0] * c11 + u[3] * c12 + u[4] * c13
    cdef double v, f
    if u[0] <= 0.0 or c33 <= 0.0 or det <= 0.0:
        return -1.0
    v = 4.0 * M_PI / 3.0 * sqrt(det)
    f = 0.5 * v / det
    g[0] = f * c11
    g[1] = f * c22
    g[2] = f * c33
    g[3] = 2.0 * f * c12
    g[4] = 2.0 * f * c13
    g[5] = 2.0 * f * c23
    return v


cdef int _volume_similarity_rows(int p, const double* x, const double* u, const double* par,
                                 const double* rw, int nrow, double* delta, double* dx,
                                 double* du) noexcept nogil:
    # Rows: value_i = V_i - mean, V = (4 pi/3) sqrt(det U_cart).
    cdef double v[64]
    cdef double g[6 * 64]
    cdef double wsum = 0.0, mean = 0.0, f
    cdef int i, j, c
    if p > 64:
        return 1
    for i in range(p):
        v[i] = _ellipsoid_volume(u + 6 * i, g + 6 * i)
        if v[i] < 0.0:
            return 2
        wsum += rw[i]
        mean += rw[i] * v[i]
    mean /= wsum
    for i in range(p):
        delta[i] = mean - v[i]
        for j in range(p):
            f = (1.0 if i == j else 0.0) - rw[j] / wsum
            for c in range(6):
                du[(i * p + j) * 6 + c] = f * g[6 * j + c]
    return 0


cdef int _b_similarity_rows(int p, const double* x, const double* u, const double* par,
                            const double* rw, int nrow, double* delta, double* dx,
                            double* du) noexcept nogil:
    delta[0] = u[1] - u[0]
    du[0] = 1.0
    du[1] = -1.0
    return 0


# ---------------------------------------------------------------------------
# dispatch

cdef rows_fn[17] ROWS
cdef grad_fn[17] GRADS
ROWS[BOND] = _bond_rows
ROWS[ANGLE] = _angle_rows
ROWS[DIHEDRAL] = _dihedral_rows
ROWS[CHIRALITY] = _chirality_rows
ROWS[PLANARITY] = _planarity_rows
ROWS[FLAT] = _flat_rows
ROWS[BOND_SIMILARITY] = _bond_similarity_rows
ROWS[NONBONDED] = _nonbonded_rows
ROWS[BUMP] = _bump_rows
ROWS[RIGID_BOND] = _rigid_bond_rows
ROWS[RIGU] = _rigu_rows
ROWS[ADP_SIMILARITY] = _adp_similarity_rows
ROWS[ISOTROPIC_ADP] = _isotropic_adp_rows
ROWS[UEQ_SIMILARITY] = _ueq_similarity_rows
ROWS[FIXED_UEQ] = _fixed_ueq_rows
ROWS[VOLUME_SIMILARITY] = _volume_similarity_rows
ROWS[B_SIMILARITY] = _b_similarity_rows
for _k in range(N_KINDS):
    GRADS[_k] = NULL
GRADS[PLANARITY] = _planarity_gradient

# atoms and rows per proxy where the type fixes them (0: variable)
cdef int[17] FIXED_ATOMS
cdef int[17] FIXED_ROWS
for _k, (_atoms, _rows) in enumerate([(2, 1), (3, 1), (4, 1), (4, 1), (0, 0), (0, 0), (0, 0),
                                      (2, 1), (2, 1), (2, 1), (2, 3), (2, 6), (1, 6), (0, 0),
                                      (1, 1), (0, 0), (2, 1)]):
    FIXED_ATOMS[_k] = _atoms
    FIXED_ROWS[_k] = _rows


# ---------------------------------------------------------------------------
# drivers

cdef inline void _place(int p, const int* atom_index, const int* atom_op,
                        const double* atom_trans, const double* sites,
                        const double* u, int nu, const double* rot,
                        const double* urot, double* xs, double* us) noexcept nogil:
    """Place the p atoms of a proxy: x' = R_cart x + t, U' = T(R_cart) U."""
    cdef int a, c, k
    cdef long long i
    cdef const double* r
    cdef const double* xi
    cdef const double* ui
    for a in range(p):
        i = atom_index[a]
        xi = sites + 3 * i
        if atom_op[a] < 0:
            for c in range(3):
                xs[3 * a + c] = xi[c] + atom_trans[3 * a + c]
        else:
            r = rot + 9 * atom_op[a]
            for c in range(3):
                xs[3 * a + c] = (r[3 * c] * xi[0] + r[3 * c + 1] * xi[1]
                                 + r[3 * c + 2] * xi[2] + atom_trans[3 * a + c])
        if nu == 0:
            continue
        ui = u + nu * i
        if nu == 1 or atom_op[a] < 0:
            for c in range(nu):
                us[nu * a + c] = ui[c]
        else:
            r = urot + 36 * atom_op[a]
            for c in range(6):
                us[6 * a + c] = 0.0
                for k in range(6):
                    us[6 * a + c] += r[6 * c + k] * ui[k]


cdef inline void _map_back_site(int op, const double* rot, const double* g,
                                double* out) noexcept nogil:
    """Add R_cart^T g to out: a gradient on a mate, moved to its atom."""
    cdef const double* r
    cdef int c
    if op < 0:
        for c in range(3):
            out[c] += g[c]
        return
    r = rot + 9 * op
    for c in range(3):
        out[c] += r[c] * g[0] + r[3 + c] * g[1] + r[6 + c] * g[2]


cdef inline void _map_back_u(int op, int nu, const double* urot, const double* g,
                             double* out) noexcept nogil:
    """Add T(R_cart)^T g to out (U_iso, nu = 1, is unchanged by symmetry)."""
    cdef const double* r
    cdef int c, k
    if op < 0 or nu == 1:
        for c in range(nu):
            out[c] += g[c]
        return
    r = urot + 36 * op
    for c in range(6):
        for k in range(6):
            out[c] += r[6 * k + c] * g[k]


cdef inline void _zero(double* a, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        a[i] = 0.0


cdef inline int _proxy_gradient(rows_fn rows, grad_fn grad, int p, int nrow, int nu,
                                const double* xs, const double* us, const double* par,
                                const double* rw, double* delta, double* dx, double* du,
                                double* gx, double* gu, double* e) noexcept nogil:
    """sum w Delta^2 of one placed proxy (in e) and its gradient with respect to
    the placed sites (gx, 3p) and ADPs (gu, nu p); from the type's gradient
    function when it has one, else from its rows.  When e is 0 the gradient
    is zero and gx, gu are left undefined."""
    cdef int status, r, q
    cdef int n3 = 3 * p, nn = nu * p
    cdef double f, total = 0.0
    cdef bint first = True
    if grad != NULL:
        return grad(p, xs, us, par, rw, nrow, e, gx, gu)
    _zero(dx, n3 * nrow)
    _zero(du, nn * nrow)
    status = rows(p, xs, us, par, rw, nrow, delta, dx, du)
    if status != 0:
        return status
    for r in range(nrow):
        if delta[r] == 0.0:
            continue
        f = rw[r] * delta[r]
        total += f * delta[r]
        f = -2.0 * f
        if first:
            for q in range(n3):
                gx[q] = f * dx[r * n3 + q]
            for q in range(nn):
                gu[q] = f * du[r * nn + q]
            first = False
        else:
            for q in range(n3):
                gx[q] += f * dx[r * n3 + q]
            for q in range(nn):
                gu[q] += f * du[r * nn + q]
    e[0] = total
    return 0


cdef enum:
    CHUNK_SIZE = 512    # proxies per work item of the residual-sum driver


cdef struct Proxies:
    # the arrays of one restraint type, as raw pointers (see proxies.py)
    const long long* proxy_ptr
    const long long* row_ptr
    const int* atom_index
    const int* atom_op
    const double* atom_trans
    const double* row_weight
    const double* params
    int n_params
    const double* target     # params[:, 0], contiguous
    const double* rot
    const double* urot
    const double* sites
    const double* u
    int nu
    bint simple          # no operations and no shifts at all
    int kind


ctypedef int (*chunk_fn)(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                         int max_atoms, int max_rows, double* grad_sites,
                         double* grad_u, double* e, long long* bad) noexcept nogil


cdef int _chunk(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                int max_atoms, int max_rows, double* grad_sites, double* grad_u,
                double* e_out, long long* bad) noexcept nogil:
    """Residual sum and gradient of proxies k0..k1-1 of any type, added into
    e_out and the gradient arrays (on failure the proxy goes to bad[0] and its
    status is returned).  The type's functions and shape come from the
    dispatch tables; proxies without symmetry mates of the commonest types
    take the direct loops further down instead."""
    cdef rows_fn rows = ROWS[d.kind]
    cdef grad_fn grad = GRADS[d.kind]
    cdef int fixed_p = FIXED_ATOMS[d.kind], fixed_rows = FIXED_ROWS[d.kind]
    cdef int nu = d.nu
    cdef int nuw = nu if nu else 1
    cdef double* xs = buf
    cdef double* us = xs + 3 * max_atoms
    cdef double* delta = us + nuw * max_atoms
    cdef double* dx = delta + max_rows
    cdef double* du = dx + max_rows * max_atoms * 3
    cdef double* gx = du + max_rows * max_atoms * nuw
    cdef double* gu = gx + 3 * max_atoms
    cdef Py_ssize_t k
    cdef long long a0, r0, i
    cdef int p, nrow, a, c, status
    cdef double e, total = 0.0
    cdef const double* xi
    for k in range(k0, k1):
        a0 = d.proxy_ptr[k]
        p = fixed_p if fixed_p else <int> (d.proxy_ptr[k + 1] - a0)
        r0 = d.row_ptr[k]
        nrow = fixed_rows if fixed_rows else <int> (d.row_ptr[k + 1] - r0)
        if d.simple:
            for a in range(p):
                xi = d.sites + 3 * d.atom_index[a0 + a]
                xs[3 * a] = xi[0]
                xs[3 * a + 1] = xi[1]
                xs[3 * a + 2] = xi[2]
                for c in range(nu):
                    us[nu * a + c] = d.u[nu * d.atom_index[a0 + a] + c]
        else:
            _place(p, d.atom_index + a0, d.atom_op + a0, d.atom_trans + 3 * a0, d.sites,
                   d.u, nu, d.rot, d.urot, xs, us)
        status = _proxy_gradient(rows, grad, p, nrow, nu, xs, us, d.params + d.n_params * k,
                                 d.row_weight + r0, delta, dx, du, gx, gu, &e)
        if status != 0:
            bad[0] = k
            e_out[0] += total
            return status
        if e == 0.0:
            continue
        total += e
        for a in range(p):
            i = d.atom_index[a0 + a]
            if d.simple:
                for c in range(3):
                    grad_sites[3 * i + c] += gx[3 * a + c]
                for c in range(nu):
                    grad_u[nu * i + c] += gu[nu * a + c]
            else:
                _map_back_site(d.atom_op[a0 + a], d.rot, gx + 3 * a, grad_sites + 3 * i)
                if nu:
                    _map_back_u(d.atom_op[a0 + a], nu, d.urot, gu + nu * a,
                                grad_u + nu * i)
    e_out[0] += total
    return 0


# Residual sums of the fixed-size geometry types when no atom is a symmetry
# mate: the atoms are read straight from the sites, pair types reject
# distant pairs from d^2 alone, and the row function is called directly on
# a local copy.  Same mathematics as the generic path (the row functions).

cdef inline void _gather(const double* sites, const int* idx, int p,
                         double* x) noexcept nogil:
    cdef int a
    cdef const double* s
    for a in range(p):
        s = sites + 3 * idx[a]
        x[3 * a] = s[0]
        x[3 * a + 1] = s[1]
        x[3 * a + 2] = s[2]


cdef inline void _scatter(double* gs, const int* idx, int p, const double* dx,
                          double f) noexcept nogil:
    cdef int a
    cdef double* g
    for a in range(p):
        g = gs + 3 * idx[a]
        g[0] += f * dx[3 * a]
        g[1] += f * dx[3 * a + 1]
        g[2] += f * dx[3 * a + 2]


cdef int _bond_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                    int max_atoms, int max_rows, double* gs, double* gu, double* e_out,
                    long long* bad) noexcept nogil:
    cdef Py_ssize_t k
    cdef double e[3]
    cdef double dist, delta, f, total = 0.0
    cdef double* gi
    cdef double* gj
    cdef long long i, j
    for k in range(k0, k1):
        i = d.atom_index[2 * k]
        j = d.atom_index[2 * k + 1]
        dist = _unit(d.sites + 3 * i, d.sites + 3 * j, e)
        if dist <= 0.0:
            bad[0] = k
            e_out[0] += total
            return 1
        delta = d.params[d.n_params * k] - dist
        f = d.row_weight[k] * delta
        total += f * delta
        f *= 2.0
        gi = gs + 3 * i
        gj = gs + 3 * j
        gi[0] += f * e[0]
        gi[1] += f * e[1]
        gi[2] += f * e[2]
        gj[0] -= f * e[0]
        gj[1] -= f * e[1]
        gj[2] -= f * e[2]
    e_out[0] += total
    return 0


cdef inline int _pair_fast(rows_fn rows, const Proxies* d, Py_ssize_t k0, Py_ssize_t k1,
                           double* gs, double* e_out, long long* bad) noexcept nogil:
    """Pair types active only below a distance params[k, 0] (nonbonded, bump)."""
    cdef Py_ssize_t k
    cdef double x[6]
    cdef double dx[6]
    cdef double delta, d0, d2, t, f, total = 0.0
    cdef const double* xi
    cdef const double* xj
    cdef const int* idx
    cdef int c
    for k in range(k0, k1):
        idx = d.atom_index + 2 * k
        xi = d.sites + 3 * idx[0]
        xj = d.sites + 3 * idx[1]
        d2 = 0.0
        for c in range(3):
            t = xj[c] - xi[c]
            d2 += t * t
        d0 = d.target[k]
        if d2 >= d0 * d0:
            continue
        for c in range(3):
            x[c] = xi[c]
            x[3 + c] = xj[c]
        if rows(2, x, NULL, d.params + d.n_params * k, d.row_weight + k, 1, &delta, dx,
                NULL):
            bad[0] = k
            e_out[0] += total
            return 1
        if delta == 0.0:    # d = d0 to rounding: the row left dx unset
            continue
        f = d.row_weight[k] * delta
        total += f * delta
        _scatter(gs, idx, 2, dx, -2.0 * f)
    e_out[0] += total
    return 0


cdef inline int _fixed_fast(rows_fn rows, int p, const Proxies* d, Py_ssize_t k0,
                            Py_ssize_t k1, double* gs, double* e_out,
                            long long* bad) noexcept nogil:
    """One-row types with p <= 4 atoms (angle, dihedral, chirality)."""
    cdef Py_ssize_t k
    cdef double x[12]
    cdef double dx[12]
    cdef double delta, f, total = 0.0
    cdef const int* idx
    cdef int c
    for k in range(k0, k1):
        idx = d.atom_index + p * k
        _gather(d.sites, idx, p, x)
        for c in range(3 * p):
            dx[c] = 0.0
        if rows(p, x, NULL, d.params + d.n_params * k, d.row_weight + k, 1, &delta, dx,
                NULL):
            bad[0] = k
            e_out[0] += total
            return 1
        f = d.row_weight[k] * delta
        total += f * delta
        _scatter(gs, idx, p, dx, -2.0 * f)
    e_out[0] += total
    return 0


cdef int _nonbonded_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                         int max_atoms, int max_rows, double* gs, double* gu,
                         double* e_out, long long* bad) noexcept nogil:
    cdef Py_ssize_t k
    cdef double v[3]
    cdef double d2, d0, dist, delta, dvalue, f, total = 0.0
    cdef const double* xi
    cdef const double* xj
    cdef double* gi
    cdef double* gj
    cdef int i, j, c, n_active = 0, q
    # Most pairs of a neighbour list lie beyond d0, in no predictable order:
    # first list the active ones without a branch, then evaluate those.
    cdef int active[CHUNK_SIZE]
    for k in range(k0, k1):
        xi = d.sites + 3 * d.atom_index[2 * k]
        xj = d.sites + 3 * d.atom_index[2 * k + 1]
        v[0] = xj[0] - xi[0]
        v[1] = xj[1] - xi[1]
        v[2] = xj[2] - xi[2]
        d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
        d0 = d.target[k]
        active[n_active] = <int> (k - k0)
        n_active += d2 < d0 * d0
    for q in range(n_active):
        k = k0 + active[q]
        i = d.atom_index[2 * k]
        j = d.atom_index[2 * k + 1]
        xi = d.sites + 3 * i
        xj = d.sites + 3 * j
        v[0] = xj[0] - xi[0]
        v[1] = xj[1] - xi[1]
        v[2] = xj[2] - xi[2]
        d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
        if d2 <= 0.0:
            bad[0] = k
            e_out[0] += total
            return 1
        dist = sqrt(d2)
        delta = _prolsq(dist, d.params + d.n_params * k, &dvalue)
        f = d.row_weight[k] * delta
        total += f * delta
        # gradient of w Delta^2 on x_j: -2 w Delta (d value / d d) v / d
        f = -2.0 * f * dvalue / dist
        gi = gs + 3 * i
        gj = gs + 3 * j
        for c in range(3):
            gi[c] -= f * v[c]
            gj[c] += f * v[c]
    e_out[0] += total
    return 0


cdef int _bump_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                    int max_atoms, int max_rows, double* gs, double* gu,
                    double* e, long long* bad) noexcept nogil:
    return _pair_fast(_bump_rows, d, k0, k1, gs, e, bad)


cdef int _angle_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                     int max_atoms, int max_rows, double* gs, double* gu,
                     double* e_out, long long* bad) noexcept nogil:
    cdef Py_ssize_t k
    cdef double g[9]
    cdef double theta, delta, f, total = 0.0
    cdef const int* idx
    for k in range(k0, k1):
        idx = d.atom_index + 3 * k
        theta = _angle(d.sites + 3 * idx[0], d.sites + 3 * idx[1], d.sites + 3 * idx[2],
                       g, g + 3, g + 6)
        if theta < 0.0:
            bad[0] = k
            e_out[0] += total
            return 1
        delta = d.target[k] - theta
        f = d.row_weight[k] * delta
        total += f * delta
        _scatter(gs, idx, 3, g, -2.0 * f)
    e_out[0] += total
    return 0


cdef int _dihedral_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                        int max_atoms, int max_rows, double* gs, double* gu,
                        double* e_out, long long* bad) noexcept nogil:
    cdef Py_ssize_t k
    cdef double g[12]
    cdef double phi, delta, f, fd, total = 0.0
    cdef const int* idx
    for k in range(k0, k1):
        idx = d.atom_index + 4 * k
        phi = _dihedral(d.sites + 3 * idx[0], d.sites + 3 * idx[1], d.sites + 3 * idx[2],
                        d.sites + 3 * idx[3], g)
        if phi != phi:
            bad[0] = k
            e_out[0] += total
            return 1
        delta = _dihedral_delta(phi, d.params + d.n_params * k, &fd)
        f = d.row_weight[k] * delta
        total += f * delta
        _scatter(gs, idx, 4, g, -2.0 * f * fd)
    e_out[0] += total
    return 0


cdef int _chirality_fast(const Proxies* d, Py_ssize_t k0, Py_ssize_t k1, double* buf,
                         int max_atoms, int max_rows, double* gs, double* gu,
                         double* e, long long* bad) noexcept nogil:
    return _fixed_fast(_chirality_rows, 4, d, k0, k1, gs, e, bad)


cdef chunk_fn[17] FAST
for _k in range(N_KINDS):
    FAST[_k] = NULL
FAST[BOND] = _bond_fast
FAST[NONBONDED] = _nonbonded_fast
FAST[BUMP] = _bump_fast
FAST[ANGLE] = _angle_fast
FAST[DIHEDRAL] = _dihedral_fast
FAST[CHIRALITY] = _chirality_fast




cdef class ResidualSum:
    """The residual-sum kernel of one restraint type, bound once to its proxy
    arrays (which it keeps alive), so that a call only converts the sites,
    ADPs and gradient arrays."""
    cdef Proxies d
    cdef object arrays
    cdef int kind, max_atoms, max_rows, nu
    cdef Py_ssize_t m

    def __init__(self, int kind, const long long[::1] proxy_ptr,
                 const long long[::1] row_ptr, const int[::1] atom_index,
                 const int[::1] atom_op, const double[:, ::1] atom_trans,
                 const double[::1] row_weight, const double[:, ::1] params,
                 const double[::1] target, const double[:, :, ::1] rot_cart,
                 const double[:, :, ::1] u_rot, int nu, bint simple, int max_atoms,
                 int max_rows):
        self.arrays = (proxy_ptr, row_ptr, atom_index, atom_op, atom_trans, row_weight,
                       params, target, rot_cart, u_rot)
        self.kind = kind
        self.m = proxy_ptr.shape[0] - 1
        self.nu = nu
        self.max_atoms = max_atoms
        self.max_rows = max_rows
        if self.m == 0:
            return
        self.d.proxy_ptr = &proxy_ptr[0]
        self.d.row_ptr = &row_ptr[0]
        self.d.atom_index = &atom_index[0]
        self.d.atom_op = &atom_op[0]
        self.d.atom_trans = &atom_trans[0, 0]
        self.d.row_weight = &row_weight[0]
        self.d.params = &params[0, 0]
        self.d.n_params = params.shape[1]
        self.d.target = &target[0]
        self.d.rot = &rot_cart[0, 0, 0] if rot_cart.shape[0] else NULL
        self.d.urot = &u_rot[0, 0, 0] if u_rot.shape[0] else NULL
        self.d.nu = nu
        self.d.simple = simple
        self.d.kind = kind

    def __call__(self, const double[:, ::1] sites_cart, const double[:, ::1] u,
                 double[:, :, ::1] grad_sites, double[:, :, ::1] grad_u, int n_threads):
        """Weighted residual sum and gradient.

        grad_sites (n_threads, n, 3) and grad_u (n_threads, n, nu) are
        per-thread accumulators the gradient is added into (the caller sums
        axis 0).  Returns (sum, first failing proxy or -1, its status).
        """
        cdef Py_ssize_t m = self.m
        cdef Proxies d = self.d
        cdef chunk_fn run = (FAST[self.kind] if d.simple and FAST[self.kind] != NULL
                             else _chunk)
        cdef int nu = self.nu
        cdef int nuw = nu if nu else 1
        cdef int max_atoms = self.max_atoms, max_rows = self.max_rows
        cdef Py_ssize_t n_chunks = (m + CHUNK_SIZE - 1) // CHUNK_SIZE
        cdef Py_ssize_t c, k1
        cdef int tid, status
        cdef double total = 0.0
        cdef double e
        cdef long long kbad
        cdef double* buf
        cdef long long bad = m
        cdef int bad_status = 0
        cdef long long[::1] bads
        cdef int[::1] statuses
        cdef Py_ssize_t size = (3 * max_atoms + nuw * max_atoms + max_rows
                                + max_rows * max_atoms * (3 + nuw)
                                + max_atoms * (3 + nuw))
        cdef double dummy = 0.0
        if m == 0:
            return 0.0, -1, 0
        if u.shape[1] != nu or (nu and u.shape[0] != sites_cart.shape[0]):
            raise ValueError("u does not match the proxies' ADP kind or the sites")
        if (grad_sites.shape[0] < n_threads or grad_sites.shape[1] != sites_cart.shape[0]
                or (nu and grad_u.shape[0] < n_threads)):
            raise ValueError("gradient accumulators do not match the sites or threads")
        d.sites = &sites_cart[0, 0]
        d.u = &u[0, 0] if nu else NULL
        bads = np.full(n_chunks, m, dtype=np.int64)
        statuses = np.zeros(n_chunks, dtype=np.int32)
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            buf = <double*> malloc(size * sizeof(double))
            for c in prange(n_chunks, schedule='static'):
                e = 0.0
                kbad = m
                k1 = min((c + 1) * CHUNK_SIZE, m)
                status = run(&d, c * CHUNK_SIZE, k1, buf, max_atoms, max_rows,
                             &grad_sites[tid, 0, 0],
                             &grad_u[tid, 0, 0] if nu else &dummy, &e, &kbad)
                total += e
                if status != 0:
                    bads[c] = kbad
                    statuses[c] = status
            free(buf)
        for c in range(n_chunks):
            if bads[c] < bad:
                bad = bads[c]
                bad_status = statuses[c]
        return total, (bad if bad < m else -1), bad_status


def design_rows(int kind,
                const long long[::1] proxy_ptr, const long long[::1] row_ptr,
                const int[::1] atom_index, const int[::1] atom_op,
                const double[:, ::1] atom_trans, const int[::1] atom_slot,
                const double[::1] row_weight, const double[:, ::1] params,
                const double[:, :, ::1] rot_cart, const double[:, :, ::1] u_rot,
                const double[:, ::1] sites_cart, const double[:, ::1] u,
                const double[:, ::1] site_post, const double[:, ::1] u_post,
                const long long[::1] site_indptr, long long[::1] site_indices,
                double[::1] site_data, const long long[::1] u_indptr,
                long long[::1] u_indices, double[::1] u_data, double[::1] deltas,
                bint want_rows, int max_atoms, int max_rows, int n_threads):
    """Deltas and CSR design rows (d value / d parameter) of one restraint type.

    The CSR arrays are preallocated by the caller from the number of distinct
    atoms per proxy (atom_slot gives each proxy atom its position among them).
    site_post (3,3) and u_post (6,6) multiply each atom's derivative block on
    the left (identity, or A^T and T(A)^T for fractional sites and U*).
    Returns (first failing proxy or -1, its status).
    """
    cdef Py_ssize_t m = proxy_ptr.shape[0] - 1
    cdef int nu = u.shape[1]
    cdef rows_fn rows = ROWS[kind]
    cdef Py_ssize_t k
    cdef int tid, p, nrow, r, a, c, cc, status, slot
    cdef long long a0, r0, bad = m, pos, i
    cdef int bad_status = 0
    cdef double* buf
    cdef double* xs
    cdef double* us
    cdef double* dx
    cdef double* du
    cdef double* tmpx
    cdef double* tmpu
    cdef const double* rot = &rot_cart[0, 0, 0] if rot_cart.shape[0] else NULL
    cdef const double* urot = &u_rot[0, 0, 0] if u_rot.shape[0] else NULL
    cdef const double* up = &u[0, 0] if u.shape[0] and nu else NULL
    cdef int nuw = nu if nu else 1
    cdef bint has_sites = site_indptr[site_indptr.shape[0] - 1] > 0
    cdef long long[::1] bads = np.full(n_threads, m, dtype=np.int64)
    cdef int[::1] statuses = np.zeros(n_threads, dtype=np.int32)
    cdef Py_ssize_t size = (3 * max_atoms + nuw * max_atoms
                            + max_rows * max_atoms * (3 + nuw) + 3 + 6)
    if m == 0:
        return -1, 0
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        buf = <double*> malloc(size * sizeof(double))
        xs = buf
        us = xs + 3 * max_atoms
        dx = us + nuw * max_atoms
        du = dx + max_rows * max_atoms * 3
        tmpx = du + max_rows * max_atoms * nuw
        tmpu = tmpx + 3
        for k in prange(m, schedule='static'):
            a0 = proxy_ptr[k]
            p = <int> (proxy_ptr[k + 1] - a0)
            r0 = row_ptr[k]
            nrow = <int> (row_ptr[k + 1] - r0)
            _place(p, &atom_index[a0], &atom_op[a0], &atom_trans[a0, 0],
                   &sites_cart[0, 0], up, nu, rot, urot, xs, us)
            _zero(dx, 3 * p * nrow)
            _zero(du, nu * p * nrow)
            status = rows(p, xs, us, &params[k, 0], &row_weight[r0], nrow,
                          &deltas[r0], dx, du)
            if status != 0:
                if k < bads[tid]:
                    bads[tid] = k
                    statuses[tid] = status
                continue
            if not want_rows:
                continue
            for r in range(nrow):
                if has_sites:
                    for pos in range(site_indptr[r0 + r], site_indptr[r0 + r + 1]):
                        site_data[pos] = 0.0
                if nu:
                    for pos in range(u_indptr[r0 + r], u_indptr[r0 + r + 1]):
                        u_data[pos] = 0.0
                for a in range(p):
                    slot = atom_slot[a0 + a]
                    i = atom_index[a0 + a]
                    if has_sites:
                        for c in range(3):
                            tmpx[c] = 0.0
                        _map_back_site(atom_op[a0 + a], rot, dx + (r * p + a) * 3, tmpx)
                        pos = site_indptr[r0 + r] + 3 * slot
                        for c in range(3):
                            site_indices[pos + c] = 3 * i + c
                            for cc in range(3):
                                site_data[pos + c] += site_post[c, cc] * tmpx[cc]
                    if nu:
                        for c in range(nu):
                            tmpu[c] = 0.0
                        _map_back_u(atom_op[a0 + a], nu, urot, du + (r * p + a) * nu, tmpu)
                        pos = u_indptr[r0 + r] + nu * slot
                        for c in range(nu):
                            u_indices[pos + c] = nu * i + c
                            if nu == 1:
                                u_data[pos] += tmpu[0]
                            else:
                                for cc in range(6):
                                    u_data[pos + c] += u_post[c, cc] * tmpu[cc]
        free(buf)
    for tid in range(n_threads):
        if bads[tid] < bad:
            bad = bads[tid]
            bad_status = statuses[tid]
    return (bad if bad < m else -1), bad_status


# ---------------------------------------------------------------------------
# neighbour search

def close_pairs(const double[:, ::1] centres, const double[:, ::1] images,
                double cutoff):
    """All (centre, image) index pairs closer than ``cutoff`` (Cartesian),
    by a cell list over the images' bounding box.

    Returns (centre_index int64 (q,), image_index int64 (q,), distance (q,)).
    """
    cdef Py_ssize_t nc = centres.shape[0], ni = images.shape[0]
    cdef double lo[3]
    cdef double hi[3]
    cdef long long dims[3]
    cdef long long cell, ncell, q, count, start, end, t
    cdef Py_ssize_t i, j
    cdef int a, ox, oy, oz
    cdef long long cx[3]
    cdef long long nb[3]
    cdef double d2, dd, cut2 = cutoff * cutoff
    if ni == 0 or nc == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    for a in range(3):
        lo[a] = images[0, a]
        hi[a] = images[0, a]
    for j in range(ni):
        for a in range(3):
            lo[a] = min(lo[a], images[j, a])
            hi[a] = max(hi[a], images[j, a])
    for a in range(3):
        dims[a] = min(<long long> ((hi[a] - lo[a]) / cutoff) + 1, 1024)
    ncell = dims[0] * dims[1] * dims[2]
    cdef long long[::1] head = np.zeros(ncell + 1, np.int64)
    cdef long long[::1] order = np.empty(ni, np.int64)
    cdef long long[::1] cell_of = np.empty(ni, np.int64)
    cdef double width[3]
    for a in range(3):
        width[a] = max((hi[a] - lo[a]) / dims[a], cutoff) if dims[a] > 1 else 1e300
    with nogil:
        for j in range(ni):
            cell = 0
            for a in range(3):
                t = <long long> ((images[j, a] - lo[a]) / width[a])
                t = min(max(t, 0), dims[a] - 1)
                cell = cell * dims[a] + t
            cell_of[j] = cell
            head[cell + 1] += 1
        for cell in range(ncell):
            head[cell + 1] += head[cell]
        for j in range(ni):
            order[head[cell_of[j]]] = j
            head[cell_of[j]] += 1
        for cell in range(ncell, 0, -1):
            head[cell] = head[cell - 1]
        head[0] = 0
    out_c = []
    out_i = []
    out_d = []
    cdef long long cap = 1024
    cdef long long n_out
    cdef long long[::1] oc
    cdef long long[::1] oi
    cdef double[::1] od
    while True:
        oc = np.empty(cap, np.int64)
        oi = np.empty(cap, np.int64)
        od = np.empty(cap)
        n_out = 0
        with nogil:
            for i in range(nc):
                for a in range(3):
                    t = <long long> floor((centres[i, a] - lo[a]) / width[a])
                    cx[a] = t
                for ox in range(-1, 2):
                    nb[0] = cx[0] + ox
                    if nb[0] < 0 or nb[0] >= dims[0]:
                        continue
                    for oy in range(-1, 2):
                        nb[1] = cx[1] + oy
                        if nb[1] < 0 or nb[1] >= dims[1]:
                            continue
                        for oz in range(-1, 2):
                            nb[2] = cx[2] + oz
                            if nb[2] < 0 or nb[2] >= dims[2]:
                                continue
                            cell = (nb[0] * dims[1] + nb[1]) * dims[2] + nb[2]
                            for q in range(head[cell], head[cell + 1]):
                                j = order[q]
                                d2 = 0.0
                                for a in range(3):
                                    dd = images[j, a] - centres[i, a]
                                    d2 = d2 + dd * dd
                                if d2 < cut2:
                                    if n_out < cap:
                                        oc[n_out] = i
                                        oi[n_out] = j
                                        od[n_out] = sqrt(d2)
                                    n_out += 1
        if n_out <= cap:
            break
        cap = n_out
    return (np.asarray(oc)[:n_out].copy(), np.asarray(oi)[:n_out].copy(),
            np.asarray(od)[:n_out].copy())

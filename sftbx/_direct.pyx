# cython: language_level=3
"""Direct-summation structure factors and their derivatives (compiled core).

Everything here takes plain arrays; sftbx/__init__.py unpacks sgtbx objects
and scatterer tables into them.  The model, for one reflection h:

    F(h) = K(h) P(h) sum_a w_a f_a(s) g_a(h),   w_a = occ_a * site_weight_a

with f_a = f0_type(s) + f'_a + i f''_a, K the centring factor (n_c when h.c
is an integer for every centring vector c, else exactly 0), and

    non-centric          g = sum_r T_r exp(2 pi i (hR_r x + h t_r))
    centric, t_inv = 0   g = sum_r 2 T_r cos(2 pi (hR_r x + h t_r)),        P = 1
    centric elsewhere    g = sum_r 2 T_r cos(2 pi (hR_r x + h t_r - h t_inv / 2)),
                         P = exp(i pi h t_inv)

where r runs over the primitive operations (one per coset of centring and, in
centric groups, inversion) and T_r = exp(-2 pi^2 (hR_r) U* (hR_r)^T) or
exp(-2 pi^2 s^2 u_iso).  Derivatives reuse the same sums (see _sfkernel.h):
d g / d x_k = 2 pi i sum_r T_r e_r (hR_r)_k, d g / d U*_kl = -2 pi^2 (2 - delta_kl)
sum_r T_r e_r (hR_r)_k (hR_r)_l, d g / d u_iso = -2 pi^2 s^2 g, and for
centric groups each of these becomes twice its real part.

A derivative of a real quantity Y(A, B), F = A + iB, with respect to a
parameter p is Re(c dF/dp) with c = dY/dA - i dY/dB; the kernels below take c
per reflection (gradient mode) or form it from F (design rows).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport cos, sin, sqrt, fabs, floor, isfinite, M_PI
from libc.string cimport memset

import threading

import numpy as np

cdef extern from "_sfkernel.h" nogil:
    int SFK_N_REAL
    int SFK_N_VALUE
    int SFK_N_SITE
    int SFK_N_ANISO
    void sfk_atom_sums(int nb, int n_ops, const double *hr, const double *ht,
                       const double *site, const double *u_star, int n_acc, int real,
                       double *acc)
    void sfk_add_atom_to_f(int nb, int centric, double w, double fp, double fdp,
                           const double *f0, const double *acc, const double *tiso,
                           double *fr, double *fi)
    void sfk_atom_derivatives(int nb, int centric, double w, double sw, double fp,
                              double fdp, const double *f0, const double *s2,
                              const double *acc, const double *tiso,
                              const double *cr, const double *ci, double *d)
    void sfk_exp(int n, double scale, const double *x, double *y)
    void sfk_sincos_2pi(int n, const double *u, double *s, double *c)

cdef enum:
    # Reflections per inner block: the C loops run over this many at a time.
    NB = 64
    # Columns of a parameter map, per atom.
    N_SLOTS = 13
    SLOT_X = 0
    SLOT_U_ISO = 3
    SLOT_U_STAR = 4
    SLOT_OCC = 10
    SLOT_FP = 11
    SLOT_FDP = 12

cdef double TWO_PI = 2.0 * M_PI
cdef double TWO_PI_SQ = 2.0 * M_PI * M_PI

cdef enum:
    # What Y the design rows are for.
    Y_FC_SQ = 0
    Y_FC = 1

KIND_FC_SQ = Y_FC_SQ
KIND_FC = Y_FC


cdef struct Problem:
    int m
    int n_ops
    int n_centring
    int path              # 0 non-centric, 1 centric at the origin, 2 centric elsewhere
    int n_atoms
    int n_types
    int n_gauss
    const int *hkl        # (m, 3)
    const int *rot        # (n_ops, 3, 3)
    const double *tr      # (n_ops, 3)
    const double *cen     # (n_centring, 3)
    double t_inv[3]
    double gstar[9]
    const int *type_index
    const double *ff_a    # (n_types, n_gauss)
    const double *ff_b
    const double *ff_c    # (n_types,)
    const double *sites   # (n_atoms, 3)
    const double *u_iso
    const double *u_star  # (n_atoms, 6)
    const unsigned char *aniso
    const double *occ
    const double *site_weight
    const double *fp
    const double *fdp


cdef struct Block:
    int j0
    int nb
    double *hr            # (n_ops, 3, nb)
    double *ht            # (n_ops, nb)
    double *s2            # (nb,)
    double *kr            # (nb,) K P, real and imaginary parts
    double *ki
    double *f0            # (n_types, nb)
    double *tmp           # (nb,)


cdef Py_ssize_t _block_doubles(const Problem *p) noexcept nogil:
    """Doubles of a Block (hr, ht, s2, kr, ki, f0, tmp); each kernel's own
    scratch follows, from tmp + NB on."""
    return NB * (4 * p.n_ops + 4 + p.n_types)


cdef void _block_bind(const Problem *p, Block *b, double *mem) noexcept nogil:
    b.hr = mem
    b.ht = b.hr + 3 * NB * p.n_ops
    b.s2 = b.ht + NB * p.n_ops
    b.kr = b.s2 + NB
    b.ki = b.kr + NB
    b.f0 = b.ki + NB
    b.tmp = b.f0 + NB * p.n_types


cdef void _block_setup(const Problem *p, Block *b, int j0, int nb) noexcept nogil:
    """Per-reflection quantities shared by all atoms: h R, h t, s^2, the
    centring and inversion factor K P, and the form factors f0."""
    cdef int j, r, i, k, c, t, g
    cdef double h[3]
    cdef double d, s2, half_ht_inv
    cdef int ok
    b.j0 = j0
    b.nb = nb
    for j in range(nb):
        for k in range(3):
            h[k] = p.hkl[3 * (j0 + j) + k]
        s2 = 0.0
        for i in range(3):
            for k in range(3):
                s2 = s2 + h[i] * p.gstar[3 * i + k] * h[k]
        b.s2[j] = s2
        ok = 1
        for c in range(p.n_centring):
            d = h[0] * p.cen[3 * c] + h[1] * p.cen[3 * c + 1] + h[2] * p.cen[3 * c + 2]
            if fabs(d - floor(d + 0.5)) > 1e-6:
                ok = 0
        half_ht_inv = 0.0
        if p.path == 2:
            half_ht_inv = 0.5 * (h[0] * p.t_inv[0] + h[1] * p.t_inv[1] + h[2] * p.t_inv[2])
            b.kr[j] = ok * p.n_centring * cos(TWO_PI * half_ht_inv)
            b.ki[j] = ok * p.n_centring * sin(TWO_PI * half_ht_inv)
        else:
            b.kr[j] = ok * p.n_centring
            b.ki[j] = 0.0
        for r in range(p.n_ops):
            for i in range(3):
                b.hr[(3 * r + i) * nb + j] = (h[0] * p.rot[9 * r + i] + h[1] * p.rot[9 * r + 3 + i]
                                              + h[2] * p.rot[9 * r + 6 + i])
            b.ht[r * nb + j] = (h[0] * p.tr[3 * r] + h[1] * p.tr[3 * r + 1]
                                + h[2] * p.tr[3 * r + 2] - half_ht_inv)
    for t in range(p.n_types):
        for j in range(nb):
            b.f0[t * nb + j] = p.ff_c[t]
        for g in range(p.n_gauss):
            if p.ff_a[t * p.n_gauss + g] == 0.0:
                continue
            sfk_exp(nb, -0.25 * p.ff_b[t * p.n_gauss + g], b.s2, b.tmp)
            for j in range(nb):
                b.f0[t * nb + j] += p.ff_a[t * p.n_gauss + g] * b.tmp[j]


cdef const double *_atom_sums(const Problem *p, const Block *b, int a, int n_acc,
                              double *acc, double *tiso) noexcept nogil:
    """The operation sums of atom a (see _sfkernel.h) into acc; for an
    isotropic atom its Debye-Waller factor per reflection into tiso.  Returns
    tiso, or NULL for an anisotropic atom (whose factor is in the sums)."""
    if p.aniso[a]:
        sfk_atom_sums(b.nb, p.n_ops, b.hr, b.ht, p.sites + 3 * a, p.u_star + 6 * a,
                      n_acc, p.path != 0, acc)
        return NULL
    sfk_atom_sums(b.nb, p.n_ops, b.hr, b.ht, p.sites + 3 * a, NULL,
                  SFK_N_SITE if n_acc > SFK_N_SITE else n_acc, p.path != 0, acc)
    sfk_exp(b.nb, -TWO_PI_SQ * p.u_iso[a], b.s2, tiso)
    return tiso


cdef inline void _add_atom_to_f(const Problem *p, const Block *b, int a, const double *acc,
                                const double *tiso, double *fr, double *fi) noexcept nogil:
    """fr + i fi += w_a f_a g_a (before the factor K P)."""
    sfk_add_atom_to_f(b.nb, p.path != 0, p.occ[a] * p.site_weight[a], p.fp[a], p.fdp[a],
                      b.f0 + b.nb * p.type_index[a], acc, tiso, fr, fi)


cdef void _add_atom_terms(const Problem *p, const Block *b, int a, const double *acc,
                          const double *tiso, const double *cr, const double *ci,
                          const int *cols, double *d, double *out,
                          Py_ssize_t out_stride, bint assign) noexcept nogil:
    """out[j * out_stride + cols[slot]] += Re(c_j dF_j / d p_slot) for the
    parameters of atom a (cols[slot] < 0: not a parameter), or = when
    ``assign``; c_j = cr + i ci already includes the factor K P of the
    reflection.  d: scratch (13, nb)."""
    cdef int j, k, col, n_active = 0, nb = b.nb
    cdef int active_slot[N_SLOTS]
    cdef int active_col[N_SLOTS]
    cdef double total
    cdef double *o
    cdef double sw = p.site_weight[a]
    sfk_atom_derivatives(nb, p.path != 0, p.occ[a] * sw, sw, p.fp[a], p.fdp[a],
                         b.f0 + nb * p.type_index[a], b.s2, acc, tiso, cr, ci, d)
    for k in range(N_SLOTS):
        col = cols[k]
        if col < 0 or (k == SLOT_U_ISO and tiso == NULL) or \
                (SLOT_U_STAR <= k < SLOT_OCC and tiso != NULL):
            continue
        active_slot[n_active] = k
        active_col[n_active] = col
        n_active += 1
    if out_stride == 0:
        for k in range(n_active):
            total = 0.0
            for j in range(nb):
                total = total + d[active_slot[k] * nb + j]
            out[active_col[k]] += total
        return
    # row by row: an atom's columns are usually adjacent in a row
    for j in range(nb):
        o = out + j * out_stride
        if assign:
            for k in range(n_active):
                o[active_col[k]] = d[active_slot[k] * nb + j]
        else:
            for k in range(n_active):
                o[active_col[k]] += d[active_slot[k] * nb + j]


cdef void _f_calc_block(const Problem *p, Block *b, double *acc, double *tiso,
                        double *fr, double *fi, double *f_out) noexcept nogil:
    cdef int a, j
    cdef double r, i
    cdef const double *t
    memset(fr, 0, sizeof(double) * b.nb)
    memset(fi, 0, sizeof(double) * b.nb)
    for a in range(p.n_atoms):
        t = _atom_sums(p, b, a, SFK_N_REAL if p.path != 0 else SFK_N_VALUE, acc, tiso)
        _add_atom_to_f(p, b, a, acc, t, fr, fi)
    for j in range(b.nb):
        r = b.kr[j] * fr[j] - b.ki[j] * fi[j]
        i = b.kr[j] * fi[j] + b.ki[j] * fr[j]
        f_out[2 * (b.j0 + j)] = r
        f_out[2 * (b.j0 + j) + 1] = i


cdef int _n_acc(const Problem *p, int a) noexcept nogil:
    return SFK_N_ANISO if p.aniso[a] else SFK_N_SITE


cdef object _problem_arrays(Problem *p, hkl, rotations, translations, centring, bint centric,
                            t_inv, gstar, type_index, ff_a, ff_b, ff_c, sites_frac, u_iso,
                            u_star, aniso, occupancies, site_weights, fp, fdp):
    """Check shapes and dtypes once and fill the Problem; returns the arrays
    (kept alive by the caller for as long as p is used)."""
    f8, i4, c = np.float64, np.int32, np.ascontiguousarray
    A = dict(hkl=c(hkl, i4), rot=c(rotations, i4), tr=c(translations, f8), cen=c(centring, f8),
             t_inv=c(np.zeros(3) if t_inv is None else t_inv, f8), gstar=c(gstar, f8),
             type_index=c(type_index, i4), ff_a=c(ff_a, f8), ff_b=c(ff_b, f8), ff_c=c(ff_c, f8),
             sites=c(sites_frac, f8), u_iso=c(u_iso, f8), u_star=c(u_star, f8),
             aniso=c(aniso, np.uint8), occ=c(occupancies, f8), sw=c(site_weights, f8),
             fp=c(fp, f8), fdp=c(fdp, f8))
    arrays = A
    shape = A["sites"].shape
    n = shape[0] if len(shape) == 2 else -1
    shape = A["rot"].shape
    k = shape[0] if len(shape) == 3 else -1
    # (the module is compiled without wraparound or bounds checks: index
    # shape tuples only where their length is known)
    ff = A["ff_a"].shape
    n_types = ff[0] if len(ff) == 2 else -1
    n_gauss = ff[1] if len(ff) == 2 else -1
    m = A["hkl"].shape[0] if A["hkl"].ndim == 2 else -1
    n_c = A["cen"].shape[0] if A["cen"].ndim == 2 else -1
    expected = (("hkl", (m, 3)), ("rot", (k, 3, 3)), ("tr", (k, 3)),
                ("cen", (n_c, 3)), ("t_inv", (3,)), ("gstar", (3, 3)),
                ("type_index", (n,)), ("ff_a", (n_types, n_gauss)), ("ff_b", (n_types, n_gauss)),
                ("ff_c", (n_types,)), ("sites", (n, 3)), ("u_iso", (n,)), ("u_star", (n, 6)),
                ("aniso", (n,)), ("occ", (n,)), ("sw", (n,)), ("fp", (n,)), ("fdp", (n,)))
    for name, want in expected:
        if A[name].shape != want:
            raise ValueError(f"{name}: expected shape {want}, got {A[name].shape}")
    if n < 1 or k < 1 or n_c < 1:
        raise ValueError("need at least one atom, one operation and one centring vector")
    if m >= 2**31:
        raise ValueError("too many reflections for one call")
    cdef const int[:, ::1] hkl_v = A["hkl"]
    cdef const int[:, :, ::1] rot_v = A["rot"]
    cdef const double[:, ::1] tr_v = A["tr"], cen_v = A["cen"], g_v = A["gstar"]
    cdef const double[::1] tinv_v = A["t_inv"]
    cdef const int[::1] ti_v = A["type_index"]
    cdef const double[:, ::1] ffa_v = A["ff_a"], ffb_v = A["ff_b"]
    cdef const double[::1] ffc_v = A["ff_c"]
    cdef const double[:, ::1] sites_v = A["sites"], ustar_v = A["u_star"]
    cdef const double[::1] uiso_v = A["u_iso"], occ_v = A["occ"], sw_v = A["sw"]
    cdef const double[::1] fp_v = A["fp"], fdp_v = A["fdp"]
    cdef const unsigned char[::1] an_v = A["aniso"]
    cdef int i
    p.m = hkl_v.shape[0]
    p.n_ops = k
    p.n_centring = cen_v.shape[0]
    p.n_atoms = n
    p.n_types = ffa_v.shape[0]
    p.n_gauss = ffa_v.shape[1]
    p.hkl = &hkl_v[0, 0] if p.m > 0 else NULL
    p.rot = &rot_v[0, 0, 0]
    p.tr = &tr_v[0, 0]
    p.cen = &cen_v[0, 0]
    for i in range(3):
        p.t_inv[i] = tinv_v[i]
    for i in range(9):
        p.gstar[i] = g_v[i // 3, i % 3]
    if not centric:
        p.path = 0
    elif p.t_inv[0] == 0.0 and p.t_inv[1] == 0.0 and p.t_inv[2] == 0.0:
        p.path = 1
    else:
        p.path = 2
    p.type_index = &ti_v[0]
    p.ff_a = &ffa_v[0, 0] if p.n_gauss > 0 else NULL
    p.ff_b = &ffb_v[0, 0] if p.n_gauss > 0 else NULL
    p.ff_c = &ffc_v[0]
    p.sites = &sites_v[0, 0]
    p.u_iso = &uiso_v[0]
    p.u_star = &ustar_v[0, 0]
    p.aniso = &an_v[0]
    p.occ = &occ_v[0]
    p.site_weight = &sw_v[0]
    p.fp = &fp_v[0]
    p.fdp = &fdp_v[0]
    for i in range(n):
        if not 0 <= p.type_index[i] < p.n_types:
            raise ValueError(f"type_index[{i}] = {p.type_index[i]} is not a row of the "
                             f"form-factor table")
    cdef int bad = _first_bad_atom(p)
    if bad >= 0:
        raise BadAtom(bad)
    return arrays


class BadAtom(ValueError):
    """An atom with a value that is not finite; args[0] is its index."""


cdef int _first_bad_atom(const Problem *p) noexcept nogil:
    """Index of the first atom with a value that is not finite, or -1.  An
    ADP that is not positive definite is used as it is (its Debye-Waller
    factor exceeds 1 for some h; Scatterers.validate warns about it)."""
    cdef int a, k
    cdef const double *u
    for a in range(p.n_atoms):
        for k in range(3):
            if not isfinite(p.sites[3 * a + k]):
                return a
        if not (isfinite(p.occ[a]) and isfinite(p.fp[a]) and isfinite(p.fdp[a])
                and isfinite(p.site_weight[a])):
            return a
        if p.aniso[a]:
            u = p.u_star + 6 * a
            for k in range(6):
                if not isfinite(u[k]):
                    return a
        elif not isfinite(p.u_iso[a]):
            return a
    return -1


def _columns(columns, int n_atoms):
    """The parameter map as int32 (n_atoms, N_SLOTS), checked."""
    cols = np.ascontiguousarray(columns, dtype=np.int32)
    if cols.shape != (n_atoms, N_SLOTS):
        raise ValueError(f"columns: expected shape ({n_atoms}, {N_SLOTS}), got {cols.shape}")
    return cols


cdef class _Workspace:
    """Per-thread scratch memory: one row of doubles and one Block per OpenMP
    thread."""
    cdef object data
    cdef object blocks
    cdef double[:, ::1] data_v
    cdef unsigned char[::1] blocks_v
    cdef int n_threads
    cdef Py_ssize_t n_doubles

    def __init__(self, int n_threads, Py_ssize_t n_doubles):
        self.n_threads = n_threads
        self.n_doubles = n_doubles
        self.data = np.empty((n_threads, n_doubles), dtype=np.float64)
        self.blocks = np.empty(n_threads * sizeof(Block), dtype=np.uint8)
        self.data_v = self.data
        self.blocks_v = self.blocks

    cdef Block *start(self, int tid, const Problem *p, int ib) noexcept nogil:
        """Thread tid's Block, bound to its memory and set up for the ib-th
        block of NB reflections (b.nb of them)."""
        cdef Block *b = (<Block *> &self.blocks_v[0]) + tid
        _block_bind(p, b, &self.data_v[tid, 0])
        _block_setup(p, b, ib * NB, min(NB, p.m - ib * NB))
        return b


# One workspace per Python thread, reused across calls (fresh pages for every
# call would cost more than a small block of reflections).
_cache = threading.local()


cdef _Workspace _workspace(int n_threads, Py_ssize_t n_doubles):
    cdef _Workspace ws = getattr(_cache, "workspace", None)
    if ws is None or ws.n_threads < n_threads or ws.n_doubles < n_doubles:
        ws = _Workspace(n_threads, n_doubles)
        _cache.workspace = ws
    return ws


def f_calc(hkl, rotations, translations, centring, bint centric, t_inv, gstar, type_index,
           ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso, occupancies, site_weights,
           fp, fdp, int n_threads=1):
    """Structure factors F(h) by direct summation.

    Parameters
    ----------
    hkl : int32 (m, 3)
    rotations : int32 (k, 3, 3)
        Primitive operations, one per coset of centring (and, when
        ``centric``, inversion: then the proper ones).
    translations : float64 (k, 3)
    centring : float64 (n_c, 3)
        Centring vectors, the first one zero.
    centric : bool
    t_inv : float64 (3,) or None
        Translation of the inversion (-I, t_inv) when ``centric``.
    gstar : float64 (3, 3)
        Reciprocal metric; s^2 = h G* h^T.
    type_index : int32 (n,)
        Row of the form-factor table of each atom.
    ff_a, ff_b : float64 (n_types, n_gauss); ff_c : float64 (n_types,)
        f0(s) = sum_g a_g exp(-b_g s^2 / 4) + c.
    sites_frac : float64 (n, 3)
    u_iso : float64 (n,); u_star : float64 (n, 6); aniso : bool (n,)
    occupancies : float64 (n,)
    site_weights : float64 (n,)
        multiplicity / order_z of each site.
    fp, fdp : float64 (n,)
    n_threads : int

    Returns
    -------
    complex128 (m,)
    """
    cdef Problem p
    keep = _problem_arrays(&p, hkl, rotations, translations, centring, centric, t_inv, gstar,
                           type_index, ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso,
                           occupancies, site_weights, fp, fdp)
    out = np.zeros(p.m, dtype=np.complex128)
    cdef double[:, ::1] out_v = out.view(np.float64).reshape(p.m, 2)
    cdef double *out_ptr = &out_v[0, 0] if p.m > 0 else NULL
    cdef int n_blocks = (p.m + NB - 1) // NB
    cdef int ib, tid
    cdef Block *b
    n_threads = max(1, n_threads)
    # after the Block: acc (SFK_N_VALUE rows), tiso, fr, fi
    cdef _Workspace ws = _workspace(n_threads, _block_doubles(&p) + (SFK_N_VALUE + 3) * NB)
    for ib in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="dynamic"):
        tid = threadid()
        b = ws.start(tid, &p, ib)
        _f_calc_block(&p, b, b.tmp + NB, b.tmp + (SFK_N_VALUE + 1) * NB,
                      b.tmp + (SFK_N_VALUE + 2) * NB, b.tmp + (SFK_N_VALUE + 3) * NB, out_ptr)
    return out


def design_rows(hkl, rotations, translations, centring, bint centric, t_inv, gstar, type_index,
                ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso, occupancies, site_weights,
                fp, fdp, columns, int kind, double[:, ::1] rows, double[::1] y_calc,
                extinction_eps=None, double extinction_x=0.0, int extinction_column=-1,
                bint assign=False, int n_threads=1):
    """Rows dY/dp of the design matrix for every reflection of ``hkl``.

    The arguments up to ``fdp`` are those of :func:`f_calc`.

    Parameters
    ----------
    columns : int32 (n, 13)
        Parameter map: the column of each atom's x, y, z, u_iso, U*11, U*22,
        U*33, U*12, U*13, U*23, occupancy, f', f'' (-1: not a parameter).
        Columns may repeat (their derivatives add up).
    kind : int
        KIND_FC_SQ (Y = |F|^2) or KIND_FC (Y = |F|).
    rows : float64 (m, n_params), OUT
        Overwritten.
    y_calc : float64 (m,), OUT
        Y for each reflection (extinction applied when given).
    extinction_eps : float64 (m,) or None
        SHELXL's 0.001 lambda^3 / sin(2 theta) per reflection; when given,
        |F|^2 is replaced by |F|^2 (1 + x eps |F|^2)^(-1/2), x = extinction_x.
    extinction_column : int
        Column of x in ``rows`` (-1: x not refined).
    assign : bool
        The caller guarantees that every column of ``rows`` is the column of
        exactly one derivative (of an anisotropic atom's U*, an isotropic
        atom's u_iso, the other slots, or x): rows are then written without
        being zeroed first.
    n_threads : int
    """
    cdef Problem p
    keep = _problem_arrays(&p, hkl, rotations, translations, centring, centric, t_inv, gstar,
                           type_index, ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso,
                           occupancies, site_weights, fp, fdp)
    cols_arr = _columns(columns, p.n_atoms)
    if rows.shape[0] != p.m or y_calc.shape[0] != p.m:
        raise ValueError(f"rows and y_calc must have {p.m} rows, got {rows.shape[0]} and "
                         f"{y_calc.shape[0]}")
    cdef Py_ssize_t n_params = rows.shape[1]
    if cols_arr.max(initial=-1) >= n_params or extinction_column >= n_params:
        raise ValueError(f"a parameter column is beyond the {n_params} columns of rows")
    if kind not in (KIND_FC_SQ, KIND_FC):
        raise ValueError(f"kind must be {KIND_FC_SQ} (|F|^2) or {KIND_FC} (|F|), got {kind}")
    cdef const int[:, ::1] cols_v = cols_arr
    cdef bint use_ext = extinction_eps is not None
    eps_arr = np.ascontiguousarray(extinction_eps if use_ext else np.zeros(p.m), dtype=np.float64)
    if eps_arr.shape != (p.m,):
        raise ValueError(f"extinction_eps: expected shape ({p.m},), got {eps_arr.shape}")
    cdef const double[::1] eps_v = eps_arr
    if p.m == 0:
        return
    cdef int n_blocks = (p.m + NB - 1) // NB
    cdef int ib, nb, a, j, tid
    cdef double *accs
    cdef double *tisos
    cdef double *d
    cdef const double *t
    cdef double *fr
    cdef double *fi
    cdef double *cr
    cdef double *ci
    cdef double fre, fim, i_sq, mod, yy, d_i, d_x, q, ex, re_c, im_c
    cdef Block *b
    cdef Py_ssize_t acc_doubles = <Py_ssize_t> NB * ((SFK_N_ANISO + 1) * p.n_atoms + N_SLOTS)
    n_threads = max(1, n_threads)
    cdef _Workspace ws = _workspace(n_threads, _block_doubles(&p) + 5 * NB + acc_doubles)
    cdef int x_col = extinction_column
    cdef double x = extinction_x
    cdef double *rows_ptr = &rows[0, 0] if n_params > 0 else NULL
    flags = np.zeros(1, dtype=np.int32)   # set when 1 + x eps |F|^2 <= 0
    cdef int[::1] flags_v = flags
    for ib in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="dynamic"):
        tid = threadid()
        b = ws.start(tid, &p, ib)
        nb = b.nb
        fr = b.tmp + NB
        fi = fr + NB
        cr = fi + NB
        ci = cr + NB
        accs = ci + NB
        tisos = accs + <Py_ssize_t> NB * SFK_N_ANISO * p.n_atoms
        d = tisos + <Py_ssize_t> NB * p.n_atoms
        memset(fr, 0, sizeof(double) * NB)
        memset(fi, 0, sizeof(double) * NB)
        for a in range(p.n_atoms):
            t = _atom_sums(&p, b, a, _n_acc(&p, a), accs + <Py_ssize_t> a * SFK_N_ANISO * nb,
                           tisos + a * nb)
            _add_atom_to_f(&p, b, a, accs + <Py_ssize_t> a * SFK_N_ANISO * nb, t, fr, fi)
        for j in range(nb):
            fre = b.kr[j] * fr[j] - b.ki[j] * fi[j]
            fim = b.kr[j] * fi[j] + b.ki[j] * fr[j]
            i_sq = fre * fre + fim * fim
            # Y and dY/d(|F|^2), dY/dx
            d_x = 0.0
            if use_ext:
                q = 1.0 + x * eps_v[b.j0 + j] * i_sq
                if not q > 0.0:
                    flags_v[0] = 1
                    q = 1.0
                ex = 1.0 / sqrt(q)
                yy = i_sq * ex
                d_i = ex / q * (1.0 + 0.5 * x * eps_v[b.j0 + j] * i_sq)
                d_x = -0.5 * eps_v[b.j0 + j] * i_sq * i_sq * ex / q
            else:
                yy = i_sq
                d_i = 1.0
            if kind == Y_FC:
                mod = sqrt(yy)
                if mod > 0.0:
                    d_i = d_i / (2.0 * mod)
                    d_x = d_x / (2.0 * mod)
                else:
                    d_i = 0.0
                    d_x = 0.0
                yy = mod
            y_calc[b.j0 + j] = yy
            # c = dY/dA - i dY/dB = 2 d_i (A - iB), times K P
            re_c = 2.0 * d_i * fre
            im_c = -2.0 * d_i * fim
            cr[j] = re_c * b.kr[j] - im_c * b.ki[j]
            ci[j] = re_c * b.ki[j] + im_c * b.kr[j]
            if assign:
                if x_col >= 0:
                    rows_ptr[(b.j0 + j) * n_params + x_col] = d_x
            else:
                memset(rows_ptr + (b.j0 + j) * n_params, 0, sizeof(double) * n_params)
                if x_col >= 0:
                    rows_ptr[(b.j0 + j) * n_params + x_col] += d_x
        for a in range(p.n_atoms):
            _add_atom_terms(&p, b, a, accs + <Py_ssize_t> a * SFK_N_ANISO * nb,
                            NULL if p.aniso[a] else tisos + a * nb, cr, ci, &cols_v[a, 0], d,
                            rows_ptr + b.j0 * n_params, n_params, assign)
    if flags[0]:
        raise ValueError(f"extinction: 1 + x eps |F|^2 <= 0 for some reflection (x = {x})")


def gradients(hkl, rotations, translations, centring, bint centric, t_inv, gstar, type_index,
              ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso, occupancies, site_weights,
              fp, fdp, columns, dT_dA, dT_dB, int n_params, int n_threads=1):
    """Gradient of a scalar target T(A, B) summed over reflections.

    The arguments up to ``fdp`` are those of :func:`f_calc`; ``columns`` is
    the parameter map of :func:`design_rows`.

    Parameters
    ----------
    dT_dA, dT_dB : float64 (m,)
        Partial derivatives of the target with respect to A = Re F and
        B = Im F of each reflection.
    n_params : int
        Length of the gradient.

    Returns
    -------
    float64 (n_params,)
    """
    cdef Problem p
    keep = _problem_arrays(&p, hkl, rotations, translations, centring, centric, t_inv, gstar,
                           type_index, ff_a, ff_b, ff_c, sites_frac, u_iso, u_star, aniso,
                           occupancies, site_weights, fp, fdp)
    cols_arr = _columns(columns, p.n_atoms)
    if cols_arr.max(initial=-1) >= n_params:
        raise ValueError(f"a parameter column is beyond n_params = {n_params}")
    da = np.ascontiguousarray(dT_dA, dtype=np.float64)
    db = np.ascontiguousarray(dT_dB, dtype=np.float64)
    if da.shape != (p.m,) or db.shape != (p.m,):
        raise ValueError(f"dT_dA and dT_dB: expected shape ({p.m},), got {da.shape}, {db.shape}")
    cdef const double[::1] da_v = da, db_v = db
    cdef const int[:, ::1] cols_v = cols_arr
    n_threads = max(1, n_threads)
    partial = np.zeros((n_threads, max(n_params, 1)), dtype=np.float64)
    cdef double[:, ::1] partial_v = partial
    cdef int n_blocks = (p.m + NB - 1) // NB
    cdef int ib, nb, a, j, tid
    cdef double *acc
    cdef double *d
    cdef const double *t
    cdef double *tiso
    cdef double *cr
    cdef double *ci
    cdef Block *b
    cdef _Workspace ws = _workspace(n_threads, _block_doubles(&p) + NB * (4 + SFK_N_ANISO + N_SLOTS))
    for ib in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="static"):
        tid = threadid()
        b = ws.start(tid, &p, ib)
        nb = b.nb
        cr = b.tmp + NB
        ci = cr + NB
        tiso = ci + NB
        acc = tiso + NB
        d = acc + NB * SFK_N_ANISO
        for j in range(nb):   # c = (dT/dA - i dT/dB) K P
            cr[j] = da_v[b.j0 + j] * b.kr[j] + db_v[b.j0 + j] * b.ki[j]
            ci[j] = da_v[b.j0 + j] * b.ki[j] - db_v[b.j0 + j] * b.kr[j]
        for a in range(p.n_atoms):
            t = _atom_sums(&p, b, a, _n_acc(&p, a), acc, tiso)
            _add_atom_terms(&p, b, a, acc, t, cr, ci, &cols_v[a, 0], d, &partial_v[tid, 0], 0,
                            False)
    return partial.sum(axis=0)[:n_params]


def sincos_2pi(u):
    """sin(2 pi u) and cos(2 pi u) by the vectorised kernel (for tests).

    Parameters
    ----------
    u : float64 (n,)
        Phases in turns.

    Returns
    -------
    s, c : float64 (n,)
    """
    cdef const double[::1] u_v = np.ascontiguousarray(u, dtype=np.float64)
    s = np.empty(u_v.shape[0])
    c = np.empty(u_v.shape[0])
    cdef double[::1] s_v = s, c_v = c
    if u_v.shape[0]:
        sfk_sincos_2pi(u_v.shape[0], &u_v[0], &s_v[0], &c_v[0])
    return s, c


def exp_scaled(x, double scale=1.0):
    """exp(scale x) by the vectorised kernel (for tests), float64 (n,)."""
    cdef const double[::1] x_v = np.ascontiguousarray(x, dtype=np.float64)
    y = np.empty(x_v.shape[0])
    cdef double[::1] y_v = y
    if x_v.shape[0]:
        sfk_exp(x_v.shape[0], scale, &x_v[0], &y_v[0])
    return y

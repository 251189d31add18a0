/* The innermost loops of the FFT path's density sampling (_fft.pyx): the
 * lines of one plane of an atom, FFTL_NT Gaussian terms at once.  Along a
 * line each term's exponential e follows e <- e r, r <- r qk (r its ratio to
 * the next point, qk = exp(-Q22) the ratio of successive ratios); from one
 * line to the next the line's first values follow e <- e rj, rj <- rj qj,
 * r <- r sk (sk = exp(-Q12)).  With GCC or Clang the terms are held in pairs
 * in vector registers (generic vector extensions: SSE2 on x86-64, NEON on
 * arm64); other compilers get the same loops on one term at a time. */
#ifndef SFTBX_FFTLINE_H
#define SFTBX_FFTLINE_H

#include <stddef.h>
#include <string.h>

#define FFTL_NT 6

#if defined(__GNUC__) || defined(__clang__)
typedef double fftl_v __attribute__((vector_size(16)));
#define FFTL_W 2
static inline double fftl_hsum(fftl_v s) { return s[0] + s[1]; }
#else
typedef double fftl_v;
#define FFTL_W 1
static inline double fftl_hsum(fftl_v s) { return s; }
#endif
#define FFTL_NV (FFTL_NT / FFTL_W)

/* prefetch distance in lines (1 to 4 measured: 2 best, by a little) */
#define FFTL_AHEAD 2

/* Ask the cache for the points k0..k0+n-1 (wrapping at n2) of a row of
 * `size`-byte values: lines of an atom jump from row to row, which the
 * processor's own prefetching does not foresee. */
static inline void fftl_prefetch(const char *row, ptrdiff_t k0, ptrdiff_t n, ptrdiff_t n2,
                                 ptrdiff_t size)
{
#if defined(__GNUC__) || defined(__clang__)
    ptrdiff_t end = k0 + n - 1, k;
    if (end >= n2) {
        for (k = k0; k < n2; k += 64 / size) __builtin_prefetch(row + k * size, 1);
        __builtin_prefetch(row + (n2 - 1) * size, 1);
        k0 = 0;
        end -= n2;
    }
    for (k = k0; k < end; k += 64 / size) __builtin_prefetch(row + k * size, 1);
    __builtin_prefetch(row + end * size, 1);
#else
    (void)row; (void)k0; (void)n; (void)n2; (void)size;
#endif
}

static inline void fftl_load(fftl_v *v, const double *x) { memcpy(v, x, sizeof(double) * FFTL_NT); }
static inline void fftl_store(double *x, const fftl_v *v) { memcpy(x, v, sizeof(double) * FFTL_NT); }

/* n steps along one axis: e *= r, r *= q, and the ratios along up to two
 * other axes follow, o1 *= s1, o2 *= s2 (o1, o2 may be NULL) */
static inline void fftl_walk(ptrdiff_t n, double *e, double *r, const double *q,
                             double *o1, const double *s1, double *o2, const double *s2)
{
    fftl_v E[FFTL_NV], R[FFTL_NV], Q[FFTL_NV], O[FFTL_NV], S[FFTL_NV];
    int g;
    ptrdiff_t k;
    if (n <= 0) return;
    fftl_load(E, e); fftl_load(R, r); fftl_load(Q, q);
    for (k = 0; k < n; ++k)
        for (g = 0; g < FFTL_NV; ++g) { E[g] *= R[g]; R[g] *= Q[g]; }
    fftl_store(e, E); fftl_store(r, R);
    if (o1) {
        fftl_load(O, o1); fftl_load(S, s1);
        for (k = 0; k < n; ++k)
            for (g = 0; g < FFTL_NV; ++g) O[g] *= S[g];
        fftl_store(o1, O);
    }
    if (o2) {
        fftl_load(O, o2); fftl_load(S, s2);
        for (k = 0; k < n; ++k)
            for (g = 0; g < FFTL_NV; ++g) O[g] *= S[g];
        fftl_store(o2, O);
    }
}

/* The lines of one plane, n_lines lines (d1 = d1_first + l) of n_points
 * points (d2 = d2_first + k); ej, rj, rkj are the values, the ratios along
 * j and the ratios along k at the first point of the first line.  Line l is
 * row (wj + l) mod n1 of the plane, its points the columns from kk on,
 * wrapping at n2.
 * With grid non-NULL: grid[row, column] += sum_g amp[g] e[g].
 * Otherwise, with m = map[row, column], per term g the sums over the plane
 * of m e, d1 m e, d1^2 m e, d2 m e, d1 d2 m e, d2^2 m e are added to
 * sums[FFTL_NT * 0..5 + g]. */
static inline void fftl_plane(ptrdiff_t n_lines, ptrdiff_t n_points, ptrdiff_t kk,
                              ptrdiff_t wj, ptrdiff_t n1, ptrdiff_t n2, double *grid,
                              const float *map, const double *amp, double d1_first,
                              double d2_first, const double *ej, const double *rj,
                              const double *rkj, const double *qj, const double *qk,
                              const double *sk, double *sums)
{
    fftl_v E[FFTL_NV], RJ[FFTL_NV], RK[FFTL_NV], QJ[FFTL_NV], QK[FFTL_NV], SK[FFTL_NV];
    fftl_v e[FFTL_NV], r[FFTL_NV], A[FFTL_NV], P[6][FFTL_NV], L0[FFTL_NV], L1[FFTL_NV];
    fftl_v L2[FFTL_NV], s, v, zero = {0};
    int g, m;
    ptrdiff_t l, k, c;
    fftl_load(E, ej); fftl_load(RJ, rj); fftl_load(RK, rkj);
    fftl_load(QJ, qj); fftl_load(QK, qk); fftl_load(SK, sk);
    if (grid) fftl_load(A, amp);
    else for (m = 0; m < 6; ++m) fftl_load(P[m], sums + FFTL_NT * m);
    for (l = 0; l < n_lines; ++l) {
        if (l + FFTL_AHEAD < n_lines) {
            ptrdiff_t w = wj + FFTL_AHEAD;
            while (w >= n1) w -= n1;
            if (grid) fftl_prefetch((const char *)(grid + w * n2), kk, n_points, n2, sizeof(double));
            else fftl_prefetch((const char *)(map + w * n2), kk, n_points, n2, sizeof(float));
        }
        for (g = 0; g < FFTL_NV; ++g) { e[g] = E[g]; r[g] = RK[g]; }
        c = kk;
        if (grid) {
            double *row = grid + wj * n2;
            for (k = 0; k < n_points; ++k) {
                s = A[0] * e[0];
                for (g = 1; g < FFTL_NV; ++g) s += A[g] * e[g];
                row[c] += fftl_hsum(s);
                for (g = 0; g < FFTL_NV; ++g) { e[g] *= r[g]; r[g] *= QK[g]; }
                if (++c == n2) c = 0;
            }
        } else {
            const float *row = map + wj * n2;
            double d1 = d1_first + l, d2 = d2_first;
            for (g = 0; g < FFTL_NV; ++g) { L0[g] = zero; L1[g] = zero; L2[g] = zero; }
            for (k = 0; k < n_points; ++k) {
                double mv = row[c];
                for (g = 0; g < FFTL_NV; ++g) {
                    v = mv * e[g];
                    L0[g] += v;
                    v = v * d2;
                    L1[g] += v;
                    L2[g] += v * d2;
                    e[g] *= r[g];
                    r[g] *= QK[g];
                }
                d2 += 1;
                if (++c == n2) c = 0;
            }
            for (g = 0; g < FFTL_NV; ++g) {
                P[0][g] += L0[g];
                P[1][g] += d1 * L0[g];
                P[2][g] += d1 * d1 * L0[g];
                P[3][g] += L1[g];
                P[4][g] += d1 * L1[g];
                P[5][g] += L2[g];
            }
        }
        for (g = 0; g < FFTL_NV; ++g) { E[g] *= RJ[g]; RJ[g] *= QJ[g]; RK[g] *= SK[g]; }
        if (++wj == n1) wj = 0;
    }
    if (!grid) for (m = 0; m < 6; ++m) fftl_store(sums + FFTL_NT * m, P[m]);
}

#endif

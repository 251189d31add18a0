/* The innermost loops of the FFT path's density sampling (_fft.pyx): one
 * line of grid points, FFTL_NT Gaussian terms at once.  e[g] is a term's
 * exponential at the current point, rk[g] its ratio to the next point and
 * qk[g] the ratio of successive ratios.  With GCC or Clang the terms are
 * held in pairs in vector registers (generic vector extensions: SSE2 on
 * x86-64, NEON on arm64, plain scalar code elsewhere); other compilers get
 * the scalar loops. */
#ifndef SFTBX_FFTLINE_H
#define SFTBX_FFTLINE_H

#include <string.h>

#define FFTL_NT 6

#if defined(__GNUC__) || defined(__clang__)
typedef double fftl_v2 __attribute__((vector_size(16)));
#define FFTL_NV (FFTL_NT / 2)

static inline void fftl_load(fftl_v2 *v, const double *x) { memcpy(v, x, sizeof(double) * FFTL_NT); }
static inline void fftl_store(double *x, const fftl_v2 *v) { memcpy(x, v, sizeof(double) * FFTL_NT); }

/* n steps along one axis: e *= r, r *= q, and the ratios along up to two
 * other axes follow, o1 *= s1, o2 *= s2 (o1, o2 may be NULL) */
static inline void fftl_walk(long n, double *e, double *r, const double *q,
                             double *o1, const double *s1, double *o2, const double *s2)
{
    fftl_v2 E[FFTL_NV], R[FFTL_NV], Q[FFTL_NV], O1[FFTL_NV], S1[FFTL_NV], O2[FFTL_NV],
        S2[FFTL_NV];
    int g;
    long k;
    if (n <= 0) return;
    fftl_load(E, e); fftl_load(R, r); fftl_load(Q, q);
    for (k = 0; k < n; ++k)
        for (g = 0; g < FFTL_NV; ++g) { E[g] *= R[g]; R[g] *= Q[g]; }
    fftl_store(e, E); fftl_store(r, R);
    if (o1) {
        fftl_load(O1, o1); fftl_load(S1, s1);
        for (k = 0; k < n; ++k)
            for (g = 0; g < FFTL_NV; ++g) O1[g] *= S1[g];
        fftl_store(o1, O1);
    }
    if (o2) {
        fftl_load(O2, o2); fftl_load(S2, s2);
        for (k = 0; k < n; ++k)
            for (g = 0; g < FFTL_NV; ++g) O2[g] *= S2[g];
        fftl_store(o2, O2);
    }
}

/* row[kk..] += sum_g amp[g] e[g] over n points, kk wrapping at n2 */
static inline void fftl_add(long n, long kk, long n2, double *row, const double *amp,
                            double *e, double *rk, const double *qk)
{
    fftl_v2 E[FFTL_NV], R[FFTL_NV], Q[FFTL_NV], A[FFTL_NV], s;
    int g;
    long k;
    fftl_load(E, e); fftl_load(R, rk); fftl_load(Q, qk); fftl_load(A, amp);
    for (k = 0; k < n; ++k) {
        s = A[0] * E[0] + A[1] * E[1] + A[2] * E[2];
        row[kk] += s[0] + s[1];
        for (g = 0; g < FFTL_NV; ++g) { E[g] *= R[g]; R[g] *= Q[g]; }
        if (++kk == n2) kk = 0;
    }
}

/* l0[g] += sum m e[g], l1[g] += sum m e[g] d2, l2[g] += sum m e[g] d2^2 over n
 * points starting at offset d2, m = row[kk..] */
static inline void fftl_moments(long n, long kk, long n2, const float *row, double d2,
                                double *e, double *rk, const double *qk,
                                double *l0, double *l1, double *l2)
{
    fftl_v2 E[FFTL_NV], R[FFTL_NV], Q[FFTL_NV], L0[FFTL_NV], L1[FFTL_NV], L2[FFTL_NV], v;
    int g;
    long k;
    fftl_load(E, e); fftl_load(R, rk); fftl_load(Q, qk);
    fftl_load(L0, l0); fftl_load(L1, l1); fftl_load(L2, l2);
    for (k = 0; k < n; ++k) {
        double m = row[kk];
        for (g = 0; g < FFTL_NV; ++g) {
            v = m * E[g];
            L0[g] += v;
            v = v * d2;
            L1[g] += v;
            L2[g] += v * d2;
            E[g] *= R[g];
            R[g] *= Q[g];
        }
        d2 += 1;
        if (++kk == n2) kk = 0;
    }
    fftl_store(l0, L0); fftl_store(l1, L1); fftl_store(l2, L2);
}

#else

static inline void fftl_walk(long n, double *e, double *r, const double *q,
                             double *o1, const double *s1, double *o2, const double *s2)
{
    long k;
    int g;
    for (k = 0; k < n; ++k)
        for (g = 0; g < FFTL_NT; ++g) {
            e[g] *= r[g]; r[g] *= q[g];
            if (o1) o1[g] *= s1[g];
            if (o2) o2[g] *= s2[g];
        }
}

static inline void fftl_add(long n, long kk, long n2, double *row, const double *amp,
                            double *e, double *rk, const double *qk)
{
    long k;
    int g;
    for (k = 0; k < n; ++k) {
        double s = 0;
        for (g = 0; g < FFTL_NT; ++g) { s += amp[g] * e[g]; e[g] *= rk[g]; rk[g] *= qk[g]; }
        row[kk] += s;
        if (++kk == n2) kk = 0;
    }
}

static inline void fftl_moments(long n, long kk, long n2, const float *row, double d2,
                                double *e, double *rk, const double *qk,
                                double *l0, double *l1, double *l2)
{
    long k;
    int g;
    for (k = 0; k < n; ++k) {
        double m = row[kk];
        for (g = 0; g < FFTL_NT; ++g) {
            double v = m * e[g];
            l0[g] += v; l1[g] += v * d2; l2[g] += v * d2 * d2;
            e[g] *= rk[g]; rk[g] *= qk[g];
        }
        d2 += 1;
        if (++kk == n2) kk = 0;
    }
}

#endif
#endif

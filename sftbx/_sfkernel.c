/* Vectorised inner loops of the direct structure-factor summation; see
 * _sfkernel.h.  Everything is branch-free inside the loops over reflections
 * (selections are written as conditional expressions the compiler turns into
 * blends), so that "#pragma omp simd" and -O3 give full-width vector code.
 *
 * sin/cos: the phase u is kept in turns, so the range reduction is exact:
 * u - round(u) in [-1/2, 1/2], then a quadrant q = round(4u) and a remainder
 * r = u - q/4 in [-1/8, 1/8] (both exact in binary floating point), z = 2 pi r
 * in [-pi/4, pi/4], and the Cephes minimax polynomials for sin and cos on that
 * interval (relative error about 1e-16).
 * exp: Cephes' argument reduction x = n ln 2 + r with a two-part ln 2, the
 * Taylor polynomial of exp(r) to degree 12 (no division, so it vectorises
 * cheaply), and 2^n built from its bit pattern; arguments below -708 give
 * exactly 0.
 */
#include <stdint.h>
#include <string.h>

#include "_sfkernel.h"

/* Clones need GCC's target_clones and glibc's ifunc; elsewhere (Clang, musl,
 * other architectures) the portable code is compiled once. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) \
    && defined(__GLIBC__) && !defined(SFTBX_NO_CLONES)
#define SFK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SFK_CLONES
#endif

#define SFK_TWO_PI 6.283185307179586476925286766559
#define SFK_TWO_PI_SQ 19.739208802178717237668981999752

/* Round to nearest for |x| < 2^51 without a library call. */
static inline double sfk_round(double x)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    return (x + magic) - magic;
}

static inline void sfk_sincos_turns(double u, double *s_out, double *c_out)
{
    u -= sfk_round(u);
    const double q = sfk_round(4.0 * u);
    const double z = SFK_TWO_PI * (u - 0.25 * q);
    const double zz = z * z;
    double ps = 1.58962301576546568060e-10;
    ps = ps * zz - 2.50507477628578072866e-8;
    ps = ps * zz + 2.75573136213857245213e-6;
    ps = ps * zz - 1.98412698295895385996e-4;
    ps = ps * zz + 8.33333333332211858878e-3;
    ps = ps * zz - 1.66666666666666307295e-1;
    const double sz = z + z * zz * ps;
    double pc = -1.13585365213876817300e-11;
    pc = pc * zz + 2.08757008419747316778e-9;
    pc = pc * zz - 2.75573141792967388112e-7;
    pc = pc * zz + 2.48015872888517045348e-5;
    pc = pc * zz - 1.38888888888730564116e-3;
    pc = pc * zz + 4.16666666666665929218e-2;
    const double cz = 1.0 - 0.5 * zz + zz * zz * pc;
    /* sin(z + q pi/2), cos(z + q pi/2) for q in {-2, -1, 0, 1, 2} */
    const int odd = (q == 1.0) | (q == -1.0);
    const double s0 = odd ? cz : sz;
    const double c0 = odd ? sz : cz;
    *s_out = ((q < -0.5) | (q > 1.5)) ? -s0 : s0;
    *c_out = ((q > 0.5) | (q < -1.5)) ? -c0 : c0;
}

static inline double sfk_exp1(double x)
{
    const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    const double n = sfk_round(1.4426950408889634073599 * xc);
    double r = xc - n * 6.93145751953125e-1;
    r -= n * 1.42860682030941723212e-6;
    /* Taylor series to r^12 on |r| <= ln(2)/2: truncation below 2e-16 */
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    const double e = p * r + 1.0;
    /* 2^n: n + 1023 sits in the low mantissa bits of (n + 1023) + 1.5 * 2^52 */
    const double biased = (n + 1023.0) + 6755399441055744.0;
    uint64_t bits;
    memcpy(&bits, &biased, sizeof bits);
    bits <<= 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -708.0 ? 0.0 : e * scale;
}

SFK_CLONES
void sfk_exp(int n, double scale, const double *x, double *y)
{
#pragma omp simd
    for (int j = 0; j < n; ++j)
        y[j] = sfk_exp1(scale * x[j]);
}

SFK_CLONES
void sfk_sincos_2pi(int n, const double *u, double *s, double *c)
{
#pragma omp simd
    for (int j = 0; j < n; ++j) {
        double sj, cj;
        sfk_sincos_turns(u[j], &sj, &cj);
        s[j] = sj;
        c[j] = cj;
    }
}

SFK_CLONES
void sfk_add_atom_to_f(int nb, int centric, double w, double fp, double fdp,
                       const double *f0, const double *acc, const double *tiso,
                       double *restrict fr, double *restrict fi)
{
    const double wfi = w * fdp;
    if (centric) {
#pragma omp simd
        for (int j = 0; j < nb; ++j) {
            const double g = 2.0 * acc[j] * (tiso ? tiso[j] : 1.0);
            fr[j] += w * (f0[j] + fp) * g;
            fi[j] += wfi * g;
        }
    } else {
#pragma omp simd
        for (int j = 0; j < nb; ++j) {
            const double t = tiso ? tiso[j] : 1.0;
            const double gr = acc[j] * t, gi = acc[nb + j] * t;
            const double wfr = w * (f0[j] + fp);
            fr[j] += wfr * gr - wfi * gi;
            fi[j] += wfr * gi + wfi * gr;
        }
    }
}

/* Re(a z), where z = b on the non-centric path and z = 2 Re(b) on a centric one. */
#define SFK_RE_MUL(ar, ai, br, bi) (centric ? 2.0 * (ar) * (br) : (ar) * (br) - (ai) * (bi))

static inline __attribute__((always_inline))
void sfk_derivatives_body(int nb, int centric, int aniso, double w, double sw, double fp,
                          double fdp, const double *restrict f0,
                          const double *restrict s2, const double *restrict acc,
                          const double *restrict tiso, const double *restrict cr,
                          const double *restrict ci, double *restrict d)
{
    const double tp = SFK_TWO_PI;
#pragma omp simd
    for (int j = 0; j < nb; ++j) {
        const double t = aniso ? 1.0 : tiso[j];
        const double gr = acc[j] * t, gi = acc[nb + j] * t;
        const double ffr = f0[j] + fp;
        const double pfr = cr[j] * ffr - ci[j] * fdp;      /* c f */
        const double pfi = cr[j] * fdp + ci[j] * ffr;
        const double qr = w * pfr, qi = w * pfi;           /* c w f */
        /* d g / d x_k = 2 pi i G_k */
        d[j] = SFK_RE_MUL(qr, qi, -tp * t * acc[3 * nb + j], tp * t * acc[2 * nb + j]);
        d[nb + j] = SFK_RE_MUL(qr, qi, -tp * t * acc[5 * nb + j], tp * t * acc[4 * nb + j]);
        d[2 * nb + j] = SFK_RE_MUL(qr, qi, -tp * t * acc[7 * nb + j], tp * t * acc[6 * nb + j]);
        if (aniso) {
            /* d g / d U*_kl = -2 pi^2 (2 - delta_kl) G_kl */
            for (int k = 0; k < 6; ++k) {
                const double factor = k < 3 ? -SFK_TWO_PI_SQ : -2.0 * SFK_TWO_PI_SQ;
                d[(4 + k) * nb + j] = factor * SFK_RE_MUL(qr, qi, acc[(8 + 2 * k) * nb + j],
                                                          acc[(9 + 2 * k) * nb + j]);
            }
        } else {
            d[3 * nb + j] = -SFK_TWO_PI_SQ * s2[j] * SFK_RE_MUL(qr, qi, gr, gi);
        }
        d[10 * nb + j] = sw * SFK_RE_MUL(pfr, pfi, gr, gi);
        d[11 * nb + j] = w * SFK_RE_MUL(cr[j], ci[j], gr, gi);
        d[12 * nb + j] = w * SFK_RE_MUL(-ci[j], cr[j], gr, gi);   /* d f / d f'' = i */
    }
}

SFK_CLONES
void sfk_atom_derivatives(int nb, int centric, double w, double sw, double fp,
                          double fdp, const double *f0, const double *s2,
                          const double *acc, const double *tiso,
                          const double *cr, const double *ci, double *d)
{
    const int aniso = tiso == NULL;
    if (centric) {
        if (aniso)
            sfk_derivatives_body(nb, 1, 1, w, sw, fp, fdp, f0, s2, acc, tiso, cr, ci, d);
        else
            sfk_derivatives_body(nb, 1, 0, w, sw, fp, fdp, f0, s2, acc, tiso, cr, ci, d);
    } else {
        if (aniso)
            sfk_derivatives_body(nb, 0, 1, w, sw, fp, fdp, f0, s2, acc, tiso, cr, ci, d);
        else
            sfk_derivatives_body(nb, 0, 0, w, sw, fp, fdp, f0, s2, acc, tiso, cr, ci, d);
    }
}

/* The body for one operation, specialised at compile time on what to sum. */
static inline __attribute__((always_inline))
void sfk_op(int nb, const double *restrict h0, const double *restrict h1,
            const double *restrict h2, const double *restrict ht,
            const double *site, const double *u_star, int n_acc, int aniso, int real,
            int first, double *restrict acc)
{
    const double x0 = site[0], x1 = site[1], x2 = site[2];
    double u11 = 0, u22 = 0, u33 = 0, u12 = 0, u13 = 0, u23 = 0;
    if (aniso) {
        u11 = -SFK_TWO_PI_SQ * u_star[0];
        u22 = -SFK_TWO_PI_SQ * u_star[1];
        u33 = -SFK_TWO_PI_SQ * u_star[2];
        u12 = -2.0 * SFK_TWO_PI_SQ * u_star[3];
        u13 = -2.0 * SFK_TWO_PI_SQ * u_star[4];
        u23 = -2.0 * SFK_TWO_PI_SQ * u_star[5];
    }
    double *restrict a = acc;
    /* the first operation assigns, so the sums need no zeroing */
#define SFK_ACC(index, value) a[index] = (first ? 0.0 : a[index]) + (value)
#pragma omp simd
    for (int j = 0; j < nb; ++j) {
        const double a0 = h0[j], a1 = h1[j], a2 = h2[j];
        double s, c;
        sfk_sincos_turns(a0 * x0 + a1 * x1 + a2 * x2 + ht[j], &s, &c);
        if (aniso) {
            const double t = sfk_exp1(u11 * a0 * a0 + u22 * a1 * a1 + u33 * a2 * a2
                                      + u12 * a0 * a1 + u13 * a0 * a2 + u23 * a1 * a2);
            c *= t;
            s *= t;
        }
        /* with real set, only the sums a centric group needs: Re G, Im G_k, Re G_kl */
        SFK_ACC(j, c);
        if (n_acc >= SFK_N_VALUE && !real)
            SFK_ACC(nb + j, s);
        if (n_acc >= SFK_N_SITE) {
            SFK_ACC(3 * nb + j, s * a0);
            SFK_ACC(5 * nb + j, s * a1);
            SFK_ACC(7 * nb + j, s * a2);
            if (!real) {
                SFK_ACC(2 * nb + j, c * a0);
                SFK_ACC(4 * nb + j, c * a1);
                SFK_ACC(6 * nb + j, c * a2);
            }
        }
        if (n_acc >= SFK_N_ANISO) {
            const double c0 = c * a0, c1 = c * a1;
            SFK_ACC(8 * nb + j, c0 * a0);
            SFK_ACC(10 * nb + j, c1 * a1);
            SFK_ACC(12 * nb + j, c * a2 * a2);
            SFK_ACC(14 * nb + j, c0 * a1);
            SFK_ACC(16 * nb + j, c0 * a2);
            SFK_ACC(18 * nb + j, c1 * a2);
            if (!real) {
                const double s0 = s * a0, s1 = s * a1;
                SFK_ACC(9 * nb + j, s0 * a0);
                SFK_ACC(11 * nb + j, s1 * a1);
                SFK_ACC(13 * nb + j, s * a2 * a2);
                SFK_ACC(15 * nb + j, s0 * a1);
                SFK_ACC(17 * nb + j, s0 * a2);
                SFK_ACC(19 * nb + j, s1 * a2);
            }
        }
    }
}
#undef SFK_ACC

#define SFK_OP(N, ANISO, REAL) \
    (r == 0 ? sfk_op(nb, h0, h1, h2, t, site, u_star, N, ANISO, REAL, 1, acc) \
            : sfk_op(nb, h0, h1, h2, t, site, u_star, N, ANISO, REAL, 0, acc))

SFK_CLONES
void sfk_atom_sums(int nb, int n_ops, const double *hr, const double *ht,
                   const double *site, const double *u_star, int n_acc, int real,
                   double *acc)
{
    const int aniso = u_star != NULL;
    if (n_acc == SFK_N_REAL) {
        n_acc = SFK_N_VALUE;
        real = 1;
    }
    for (int r = 0; r < n_ops; ++r) {
        const double *h0 = hr + (size_t)r * 3 * nb;
        const double *h1 = h0 + nb, *h2 = h1 + nb, *t = ht + (size_t)r * nb;
        if (aniso) {
            if (n_acc == SFK_N_ANISO)
                real ? SFK_OP(SFK_N_ANISO, 1, 1) : SFK_OP(SFK_N_ANISO, 1, 0);
            else if (n_acc == SFK_N_SITE)
                real ? SFK_OP(SFK_N_SITE, 1, 1) : SFK_OP(SFK_N_SITE, 1, 0);
            else
                real ? SFK_OP(SFK_N_VALUE, 1, 1) : SFK_OP(SFK_N_VALUE, 1, 0);
        } else {
            if (n_acc >= SFK_N_SITE)
                real ? SFK_OP(SFK_N_SITE, 0, 1) : SFK_OP(SFK_N_SITE, 0, 0);
            else
                real ? SFK_OP(SFK_N_VALUE, 0, 1) : SFK_OP(SFK_N_VALUE, 0, 0);
        }
    }
}

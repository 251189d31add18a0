/* Vectorised inner loops of the direct structure-factor summation.
 *
 * The Cython core (_direct.pyx) does the bookkeeping: blocks of reflections,
 * symmetry, form factors, weights and the chain rule.  The few loops that
 * run once per (atom, operation, reflection) live here, in plain C, written
 * so that the compiler vectorises them over reflections: phases in turns,
 * a branch-free polynomial sin/cos of 2 pi u and a branch-free exp.  On x86-64
 * with GCC and glibc the functions are cloned for AVX-512, AVX2 and the
 * baseline and the best clone is picked at load time; elsewhere the same
 * source compiles to the portable scalar (or baseline-vector) code.
 */
#ifndef SFTBX_SFKERNEL_H
#define SFTBX_SFKERNEL_H

/* Number of accumulator rows sfk_atom_sums fills, by mode. */
#define SFK_N_REAL 1          /* Re G only (centric groups, values only)          */
#define SFK_N_VALUE 2         /* G = sum_r T_r exp(2 pi i u_r): Re, Im           */
#define SFK_N_SITE 8          /* + G_k = sum_r T_r exp(2 pi i u_r) (hR)_k, k=0..2 */
#define SFK_N_ANISO 20        /* + G_kl = sum_r T_r exp(2 pi i u_r) (hR)_k (hR)_l */

/* Sums over the operations r of one atom for nb reflections.
 *
 * hr     [n_ops][3][nb]  h R_r in turns (row vector times rotation)
 * ht     [n_ops][nb]     h t_r (minus h t_inv / 2 for centric groups), turns
 * site   [3]             fractional site x
 * u_star [6] or NULL     U* (11,22,33,12,13,23) for an anisotropic atom; NULL
 *                        for an isotropic one (T_r = 1, applied by the caller)
 * n_acc                  SFK_N_REAL, SFK_N_VALUE, SFK_N_SITE or SFK_N_ANISO (the last only
 *                        with u_star): which sums to form
 * real                   nonzero: form only the parts a centric group uses
 *                        (Re G, Im G_k, Re G_kl); the other rows are left
 *                        untouched
 * acc    [n_acc][nb]     OUT, overwritten; row 2m is Re, 2m+1 is Im of sum m,
 *                        sums in the order G, G_0, G_1, G_2, G_00, G_11, G_22,
 *                        G_01, G_02, G_12
 * with u_r = hR_r x + h t_r and T_r = exp(-2 pi^2 (hR_r) U* (hR_r)^T).
 */
void sfk_atom_sums(int nb, int n_ops, const double *hr, const double *ht,
                   const double *site, const double *u_star, int n_acc, int real,
                   double *acc);

/* fr + i fi += w f g for one atom (the structure factor before the factor
 * K P of the reflection), with f = f0[j] + fp + i fdp and
 *   non-centric  g = (acc[0][j] + i acc[1][j]) tiso[j]
 *   centric      g = 2 acc[0][j] tiso[j]
 * tiso NULL means 1 (anisotropic atom). */
void sfk_add_atom_to_f(int nb, int centric, double w, double fp, double fdp,
                       const double *f0, const double *acc, const double *tiso,
                       double *fr, double *fi);

/* The 13 derivatives Re(c_j dF_j/dp) of one atom, p = x, y, z, u_iso, U*11,
 * U*22, U*33, U*12, U*13, U*23, occupancy, f', f'' (the slots of a parameter
 * map), into d[13][nb]; rows for u_iso (anisotropic atom) or U* (isotropic
 * atom) are left untouched.  c = cr + i ci includes the factor K P; w is
 * occupancy * site weight, sw the site weight; s2 = |h*|^2; acc holds the
 * sums of sfk_atom_sums (SFK_N_ANISO rows when anisotropic, else SFK_N_SITE);
 * tiso as for sfk_add_atom_to_f. */
void sfk_atom_derivatives(int nb, int centric, double w, double sw, double fp,
                          double fdp, const double *f0, const double *s2,
                          const double *acc, const double *tiso,
                          const double *cr, const double *ci, double *d);

/* y[j] = exp(scale * x[j]) for j < n (scale * x <= 709 expected). */
void sfk_exp(int n, double scale, const double *x, double *y);

/* s[j] = sin(2 pi u[j]), c[j] = cos(2 pi u[j]). */
void sfk_sincos_2pi(int n, const double *u, double *s, double *c);

#endif

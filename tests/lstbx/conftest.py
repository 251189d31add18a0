"""Synthetic non-linear least-squares problems with an unknown overall scale
factor, and helpers that build lstbx equations for them blockwise."""

import numpy as np
import pytest

import lstbx


class Problem:
    """y_obs = k_true * model(x_true) (+ noise), weights 1/sigma^2.

    ``model(x)`` returns (y_calc (m,), design rows dy_calc/dx (m, n))."""

    def __init__(self, name, model, x_true, x_start, k_true, t, noise, seed=0):
        self.name = name
        self.model = model
        self.t = t
        self.x_true = np.asarray(x_true, dtype=float)
        self.x_start = np.asarray(x_start, dtype=float)
        self.n = self.x_true.size
        self.k_true = k_true
        y, _ = model(self.x_true)
        sigma = noise * np.abs(y).max() + 1e-3 * np.abs(y)
        rng = np.random.default_rng(seed)
        self.y_obs = k_true * (y + (rng.standard_normal(y.size) * sigma if noise else 0.0))
        self.weights = 1.0 / (k_true * sigma) ** 2

    def noise_free(self):
        return Problem(self.name + " (noise-free)", self.model, self.x_true,
                       self.x_start, self.k_true, self.t, 0.0)

    def equations(self, x, scale="separable", block=50, **kwargs):
        """Finalised NormalEquations at x (for scale="parameter", K = x[-1])."""
        x = np.asarray(x, dtype=float)
        if scale == "parameter":
            kwargs["scale_factor"] = x[-1]
            x = x[:-1]
        y_calc, rows = self.model(x)
        ne = lstbx.NormalEquations(self.n, scale=scale, **kwargs)
        for s in range(0, y_calc.size, block):
            ne.add_block(self.y_obs[s:s + block], self.weights[s:s + block],
                         y_calc[s:s + block], rows[s:s + block])
        ne.finalise()
        return ne

    def objective(self, x, scale="separable"):
        """L by plain NumPy: separable K* for scale="separable", K = x[-1]
        for scale="parameter"."""
        x = np.asarray(x, dtype=float)
        if scale == "parameter":
            y, _ = self.model(x[:-1])
            k = x[-1]
        else:
            y, _ = self.model(x)
            w = self.weights
            k = np.dot(w * y, self.y_obs) / np.dot(w * y, y)
        return float(np.sum(self.weights * (self.y_obs - k * y) ** 2))


def two_exponentials(x, t):
    b1, a2, b2 = x
    e1, e2 = np.exp(-b1 * t), np.exp(-b2 * t)
    return e1 + a2 * e2, np.column_stack([-t * e1, e2, -a2 * t * e2])


def gaussian_peaks(x, t):
    mu1, s1, h2, mu2, s2, background = x
    g1 = np.exp(-0.5 * ((t - mu1) / s1) ** 2)
    g2 = np.exp(-0.5 * ((t - mu2) / s2) ** 2)
    y = g1 + h2 * g2 + background
    rows = np.column_stack([
        g1 * (t - mu1) / s1 ** 2, g1 * (t - mu1) ** 2 / s1 ** 3,
        g2, h2 * g2 * (t - mu2) / s2 ** 2, h2 * g2 * (t - mu2) ** 2 / s2 ** 3,
        np.ones_like(t)])
    return y, rows


def intensities_1d(x, h):
    """|F|^2 of a 1-d 'crystal': atom 0 at the origin with B0, atoms 1 and 2
    at x1, x2 with B1, B2; scattering factors 6, 7, 8; F = sum f exp(2 pi i h
    x - B h^2 / 4 / 100)."""
    x1, x2, b0, b1, b2 = x
    f = np.array([6.0, 7.0, 8.0])
    positions = np.array([0.0, x1, x2])
    bs = np.array([b0, b1, b2])
    s2 = h[:, None] ** 2 / 400.0
    amplitude = f[None, :] * np.exp(-bs[None, :] * s2)
    phase = 2 * np.pi * h[:, None] * positions[None, :]
    fa = np.sum(amplitude * np.cos(phase), axis=1)
    fb = np.sum(amplitude * np.sin(phase), axis=1)
    # dF/dx_j = 2 pi i h F_j; dF/dB_j = -s^2 F_j
    da = -2 * np.pi * h[:, None] * amplitude * np.sin(phase)
    db = 2 * np.pi * h[:, None] * amplitude * np.cos(phase)
    dfa_db = -s2 * amplitude * np.cos(phase)
    dfb_db = -s2 * amplitude * np.sin(phase)
    y = fa ** 2 + fb ** 2
    d_sites = 2 * (fa[:, None] * da + fb[:, None] * db)[:, 1:]
    d_b = 2 * (fa[:, None] * dfa_db + fb[:, None] * dfb_db)
    return y, np.column_stack([d_sites, d_b])


def make_problems():
    t = np.linspace(0.0, 10.0, 301)
    u = np.linspace(-4.0, 6.0, 401)
    h = np.arange(1.0, 41.0)
    return [
        Problem("two exponentials", lambda x: two_exponentials(x, t),
                [0.3, 0.6, 1.7], [0.25, 0.9, 1.2], 3.7, t, 0.01, seed=1),
        Problem("two gaussian peaks", lambda x: gaussian_peaks(x, u),
                [0.0, 0.8, 0.5, 2.0, 1.1, 0.05], [0.2, 1.0, 0.3, 2.3, 0.9, 0.0],
                0.02, u, 0.01, seed=2),
        Problem("1-d intensities", lambda x: intensities_1d(x, h),
                [0.23, 0.61, 1.5, 2.5, 2.0], [0.225, 0.615, 1.0, 2.0, 2.5],
                40.0, h, 0.01, seed=3),
    ]


@pytest.fixture(scope="session")
def problems():
    return make_problems()

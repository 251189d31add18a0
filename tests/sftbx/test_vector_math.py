"""The vectorised sin/cos and exp of the compiled kernel against NumPy."""

import numpy as np

from sftbx import _direct


def test_sincos_of_turns():
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.uniform(-0.5, 0.5, 20000), rng.uniform(-300, 300, 20000),
                        np.arange(-8, 9) / 8.0, [0.125 + 1e-17, -0.375, 1e-300, -0.0]])
    s, c = _direct.sincos_2pi(u)
    # reference: the exact reduction of u to [-1/2, 1/2] first, then NumPy
    r = u - np.round(u)
    assert np.abs(s - np.sin(2 * np.pi * r)).max() <= 4e-16
    assert np.abs(c - np.cos(2 * np.pi * r)).max() <= 4e-16
    quarter = np.arange(-8, 9) / 4.0
    s, c = _direct.sincos_2pi(quarter)
    assert np.array_equal(np.abs(s) + np.abs(c), np.ones(len(quarter)))


def test_exp():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-700, 0, 20000), rng.uniform(-1, 1, 20000), [0.0, -1e-300]])
    y = _direct.exp_scaled(x)
    assert np.abs(y / np.exp(x) - 1).max() <= 4e-16
    assert np.array_equal(_direct.exp_scaled([-709.0, -1e5, -np.inf]), np.zeros(3))
    assert np.allclose(_direct.exp_scaled([2.0, -3.0], -0.5), np.exp([-1.0, 1.5]), rtol=4e-16)

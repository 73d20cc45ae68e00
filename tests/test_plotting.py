"""Shared drawing helpers (gammalimit.plotting) draw what they say."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gammalimit.plotting import decade_ticks, reference_slope, surface  # noqa: E402


def test_reference_slope_and_ticks():
    fig, ax = plt.subplots()
    h = np.array([0.4, 0.2, 0.1, 0.05])
    reference_slope(ax, h, 3.0, 2, "two")
    line = ax.get_lines()[-1]
    assert np.allclose(line.get_ydata(), 3.0 * (h / 0.4) ** 2) and line.get_label() == "two"
    assert ax.get_xscale() == ax.get_yscale() == "log"
    decade_ticks(ax, h)
    assert list(ax.get_xticks()) == [0.05, 0.1, 0.2]
    plt.close(fig)


def test_surface_returns_a_colour_map_of_the_density():
    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    u = np.linspace(0, 2 * np.pi, 9)
    a, b = np.meshgrid(u, u, indexing="ij")
    points = np.stack([(2 + np.cos(b)) * np.cos(a), (2 + np.cos(b)) * np.sin(a), np.sin(b)], -1)
    mappable = surface(ax, points, np.cos(a))
    assert mappable.norm.vmin == -1 and mappable.norm.vmax == 1
    plt.close(fig)

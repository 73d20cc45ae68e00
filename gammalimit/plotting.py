"""Small matplotlib helpers that several studies share (studies/*.py).

Only drawing: no numbers are computed here. matplotlib is imported by the
callers (inside ``plot``), so importing this module does not import it.
"""

from __future__ import annotations

import numpy as np


def reference_slope(ax, h, y0: float, order: float, label: str, style: str = "k:", lw: float = 1.0) -> None:
    """Draw ``y0 (h / h[0])^order`` on log-log axes: a guide line of slope ``order``
    through ``(h[0], y0)``; ``h`` ``shape=[k]``."""
    h = np.asarray(h, float)
    ax.loglog(h, y0 * (h / h[0]) ** order, style, lw=lw, label=label)


def decade_ticks(ax, h, ticks=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0)) -> None:
    """A log x-axis with plain labels at the ``ticks`` within the range of ``h``."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = [t for t in ticks if min(h) * 0.9 <= t <= max(h) * 1.1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])


def surface(ax, points, density, n_lines: int = 8):
    """A closed parametrised surface in 3-D, coloured by ``density``, with the
    images of about ``n_lines`` coordinate lines of each family.

    Parameters
    ----------
    ax : a 3-D matplotlib axes
    points : array_like, shape=[n+1, n+1, 3]
        The surface on a closed chart grid; it is centred and turned to its
        principal axes for a readable view.
    density : array_like, shape=[n+1, n+1]

    Returns
    -------
    matplotlib.cm.ScalarMappable
        For a colour bar.
    """
    from matplotlib import cm, colors

    P, D = np.asarray(points), np.asarray(density)
    P = P - P.reshape(-1, 3).mean(0)
    _, _, Vt = np.linalg.svd(P.reshape(-1, 3), full_matrices=False)
    P = P @ Vt.T
    norm = colors.Normalize(D.min(), D.max())
    ax.plot_surface(P[..., 0], P[..., 1], P[..., 2], facecolors=cm.viridis(norm(D)), rstride=1, cstride=1,
                    linewidth=0, antialiased=True, shade=False, alpha=0.55)
    n = P.shape[0] - 1
    for i in range(0, n, max(1, n // n_lines)):
        ax.plot(*P[i, :, :].T, color="k", lw=0.4, alpha=0.7)
        ax.plot(*P[:, i, :].T, color="0.3", lw=0.4, alpha=0.5, ls="--")
    lim = np.abs(P).max()
    for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        set_lim(-lim, lim)
    return cm.ScalarMappable(norm=norm, cmap="viridis")

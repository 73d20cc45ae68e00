"""A global start: the encoder pre-fitted to an Isomap embedding of training points.

``L_delta`` sees pairs at scale ``delta`` only, so it cannot tell a fold from
an unrolling away from the crease: an encoder that starts folded (the PCA
projection of a Swiss roll lays its layers on top of each other) stays folded.
As UMAP starts from a spectral embedding, the trainer can start from a global
one (docs/theory.md, section 8): Isomap (scikit-learn) embeds ``start_points``
training points so that their Euclidean distances match shortest-path
distances in their ``k``-nearest-neighbour graph, which approximate geodesic
distances; the encoder is fitted to these codes by least squares, then trained
on ``L_delta`` as usual. The codes of an Isomap embedding are close to an
isometric embedding of a flat manifold (the roll), so the fit also starts the
encoder at the right scale.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..manifolds.base import DTYPE

#: The global starts a config may ask for ("none": the encoder's own initialisation; "auto": "isomap"
#: where the initial encoder folds M, as the fold check after training measures it, else "none").
STARTS = ("auto", "none", "isomap")

#: The fit runs at this multiple of the training rates. Measured on 1500 Swiss-roll samples
#: (relative RMS residual after 300 / 500 steps): 64x64 MLP 0.30 / 0.060 at 1x, 0.023 / 0.021 at 10x;
#: 128x128 MLP 0.054 / 0.032 at 1x, 0.020 / 0.019 at 10x.
START_LR_RATIO = 10.0


def start_points(manifold, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` training points for the start ``shape=[k, n]``: distinct samples of a point cloud
    (all of them if it has at most ``k``), or ``k`` points drawn from a manifold."""
    samples = getattr(manifold, "points", None)
    if samples is not None:
        if len(samples) <= k:
            return samples
        return samples[torch.randperm(len(samples), generator=generator)[:k]]
    return manifold.sample(k, generator=generator)


def isomap_codes(points: torch.Tensor, latent_dim: int, neighbours: int) -> torch.Tensor:
    """Isomap codes of ``points`` ``shape=[k, n]`` in ``R^latent_dim`` ``shape=[k, latent_dim]``
    (scikit-learn's :class:`~sklearn.manifold.Isomap`, dense eigensolver: deterministic).

    Raises
    ------
    ValueError
        If the neighbour graph is disconnected (Isomap's distances are then
        infinite): more ``neighbours`` or more points are needed.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.manifold import Isomap
    from sklearn.neighbors import kneighbors_graph

    X = points.detach().to(DTYPE).cpu().numpy()
    if len(X) <= neighbours + latent_dim:
        raise ValueError(f"the isomap start needs more than start_neighbors + latent_dim = "
                         f"{neighbours + latent_dim} points, got {len(X)}")
    parts, _ = connected_components(kneighbors_graph(X, neighbours), directed=False)
    if parts > 1:
        raise ValueError(f"the {neighbours}-nearest-neighbour graph of the {len(X)} start points has {parts} "
                         "components, so Isomap's geodesic distances are infinite; raise start_neighbors or "
                         "start_points")
    codes = Isomap(n_neighbors=neighbours, n_components=latent_dim, eigen_solver="dense").fit_transform(X)
    return torch.from_numpy(np.ascontiguousarray(codes)).to(DTYPE)


def fit_codes(model: torch.nn.Module, points: torch.Tensor, codes: torch.Tensor, *, steps: int, lr: float,
              param_groups: list[dict]) -> dict:
    """Fit ``model(points) ~ codes`` by full-batch Adam on the mean squared error, in place.

    Codes are centred first (an encoder's offset is free). Returns the
    record: ``relative_rms`` of the residual (RMS residual over RMS code) at
    the end, the steps, and the seconds.
    """
    t0 = time.perf_counter()
    param = next(model.parameters())
    x = points.to(device=param.device, dtype=param.dtype)
    target = (codes - codes.mean(0)).to(device=param.device, dtype=param.dtype)
    groups = [dict(g, lr=g["lr"] * lr / param_groups[0]["lr"]) for g in param_groups]
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = (out - out.mean(0) - target).pow(2).sum(-1).mean()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        out = model(x)
        residual = (out - out.mean(0) - target).pow(2).sum(-1).mean()
    return {"relative_rms": float(torch.sqrt(residual / target.pow(2).sum(-1).mean())), "steps": steps,
            "seconds": time.perf_counter() - t0}


def global_start(model: torch.nn.Module, manifold, config, param_groups: list[dict]) -> dict | None:
    """Apply the config's global start to a freshly initialised ``model`` (in place).

    Returns the record written to ``result.json`` (method, points, neighbours,
    the fit's ``relative_rms``, seconds), or ``None`` for ``start="none"``.
    With ``start="auto"`` the initial encoder (the PCA start) first goes
    through :func:`~gammalimit.train.evaluation.fold_check`: where it folds
    ``M`` the Isomap start follows, else nothing changes (the record then says
    ``method="none"`` and why). The points come from a generator seeded with
    ``config.seed + 1`` (the encoder's own weights use ``config.seed``), so a
    run is reproducible; the check draws from its own seeded generators, so a
    run it leaves alone is bit for bit a ``start="none"`` run.
    """
    if config.start == "none":
        return None
    t0 = time.perf_counter()
    check = None
    if config.start == "auto":
        check = initial_folds(model, manifold, config)
        if not check["warning"]:
            return {"method": "none", "chosen_by": "auto", "initial_folds": check,
                    "seconds": time.perf_counter() - t0}
    g = torch.Generator().manual_seed(config.seed + 1)
    points = start_points(manifold, config.start_points, g)
    codes = isomap_codes(points, config.latent_dim, config.start_neighbors)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        fit = fit_codes(model, points, codes, steps=config.start_steps, lr=START_LR_RATIO * config.lr,
                        param_groups=param_groups)
    record = {"method": "isomap", "points": len(points), "neighbors": config.start_neighbors, **fit,
              "seconds": time.perf_counter() - t0}
    if check is not None:
        record.update(chosen_by="auto", initial_folds=check)
    return record


def initial_folds(model: torch.nn.Module, manifold, config) -> dict:
    """The fold check of the freshly initialised encoder (no warning raised: it decides, it does not warn)."""
    import warnings

    from .evaluation import fold_check
    from .networks import float64_copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fold_check(float64_copy(model), manifold, config.delta, strategy=config.strategy,
                          seed=config.seed + 2)

"""Image manifolds draw pairs in chart coordinates (no inverse chart per point); the pairs equal
those of the generic route (exp and contains on ambient points) to round-off."""

import pytest
import torch

from gammalimit import PeriodicBlob, RotatingEllipse, TranslatingBlob, sample_pairs


class Generic:
    """A manifold without its chart sampler: :func:`sample_pairs` takes the generic route."""

    def __init__(self, manifold):
        self._manifold = manifold

    def __getattr__(self, name):
        if name == "pairs_in_chart":
            raise AttributeError(name)
        return getattr(self._manifold, name)

    def __repr__(self):
        return repr(self._manifold)


@pytest.mark.parametrize("make", [lambda: RotatingEllipse(n_pixels=16), lambda: TranslatingBlob(n_pixels=16),
                                  lambda: PeriodicBlob(n_pixels=16)], ids=["ellipse", "blob", "periodic"])
@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("strategy, qmc", [("shell", True), ("ball", False)])
def test_chart_pairs_equal_the_generic_route(make, antithetic, strategy, qmc):
    M = make()
    a = sample_pairs(M, 256, 0.05, strategy=strategy, antithetic=antithetic, qmc=qmc, seed=7)
    b = sample_pairs(Generic(M), 256, 0.05, strategy=strategy, antithetic=antithetic, qmc=qmc, seed=7)
    assert len(a) == len(b) and a.n_rejected == b.n_rejected
    for field in ("x", "y", "midpoint", "dist", "v", "r"):
        assert torch.allclose(getattr(a, field), getattr(b, field), rtol=0, atol=1e-12), field
    # the pairs lie on M at the drawn distance
    assert torch.allclose(M.dist(a.x, a.y), a.dist, rtol=1e-9, atol=0)
    assert M.contains(a.y).all() and M.contains(a.midpoint).all()


def test_the_box_rejects_what_leaves_it():
    M = TranslatingBlob(n_pixels=16)
    pairs = sample_pairs(M, 512, 0.2, antithetic=True, seed=1)
    assert pairs.n_rejected > 0  # delta = 0.2 is large against the box: many candidates leave it
    assert M.contains(pairs.y).all()


def test_the_trainer_records_sampling_and_step_time(tmp_path):
    import json

    from gammalimit.train import TrainConfig, train

    config = TrainConfig(manifold="rotating-ellipse", n_pixels=16, steps=4, batch_size=32, hidden=(8,), warmup=1,
                         limit="none", eval_pairs=16)
    result = train(config, out=tmp_path / "run", progress=False)
    timing = json.loads((tmp_path / "run" / "result.json").read_text())["timing"]
    assert timing == result.timing and timing["steps"] == 4
    assert 0 < timing["seconds_sampling"] < timing["seconds_step"]


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("qmc", [False, True])
def test_one_chart_call_equals_the_blocks_joined(antithetic, qmc):
    """sample_pairs on a chart manifold without boundary renders every block at once: the same bits as
    the blocks of iter_pairs joined."""
    from gammalimit.sampling import PairSample, iter_pairs

    M = RotatingEllipse(n_pixels=16)
    n = 1 << 16  # several blocks of 2^14 pairs at 16 x 16 pixels
    a = sample_pairs(M, n, 0.02, antithetic=antithetic, qmc=qmc, qmc_replicates=2, seed=5)
    b = PairSample.concat(list(iter_pairs(M, n, 0.02, antithetic=antithetic, qmc=qmc, qmc_replicates=2, seed=5)))
    for field in ("x", "y", "midpoint", "dist", "v", "r", "replicate"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field

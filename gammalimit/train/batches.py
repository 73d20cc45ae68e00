"""Where a training run's pairs come from: the seeds of its steps and of its pair pool, the sampling
arguments of a step, and, under ``torchrun``, each process's share of a step's batch and of the pool.

A run is a function of its config: step ``s`` draws its batch with :func:`step_seed` ``(seed, s)``
(:func:`step_sampling`), and a run on samples draws its pool once, with :func:`pool_seed`. Under K
processes the shares make up exactly the single-process batch and pool (:func:`step_pairs`,
:func:`draw_pool`).
"""

from __future__ import annotations

import numpy as np

from .. import distributed
from ..sampling import PairSample, iter_blocks, sample_pairs


def step_seed(seed: int, step: int) -> int:
    """Seed of the training pairs of step ``step`` of a run with seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(step), 0x7A1]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def step_sampling(config, step: int) -> dict:
    """The keyword arguments of :func:`~gammalimit.sampling.sample_pairs` (besides the source, ``n`` and
    ``delta``) that draw step ``step``'s batch of a run with ``config``: two QMC replicates (with
    ``qmc``) scrambled once by the run's seed and shifted by the step's (:func:`step_seed`), and no
    tangents (the loss does not need them)."""
    c = config
    return dict(strategy=c.strategy, antithetic=c.antithetic, qmc=c.qmc, qmc_replicates=2,
                seed=step_seed(c.seed, step), scramble_seed=c.seed if c.qmc else None, tangents=False)


def pool_seed(seed: int) -> int:
    """Seed of the pair pool of a run on samples with seed ``seed`` (apart from every step's seed)."""
    state = np.random.SeedSequence([int(seed), 0x9001]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def draw_pool(config, cloud, progress: bool = False) -> PairSample:
    """The pair pool of a run with ``config`` on the samples ``cloud``, ``PointCloud.pair_pool`` bit for
    bit; ``progress`` draws a bar (on rank 0). Under K processes each
    rank draws the pool's blocks ``i`` with ``i % K = rank`` and every rank gathers all of them in
    block order (``torch.distributed``), so the pool takes about 1/K of the time; the cloud's
    :attr:`~gammalimit.PointCloud.last_fit` becomes the last block's, as in one process."""
    c = config
    owns = distributed.owns if distributed.world_size() > 1 else None
    blocks = cloud.pool_blocks(c.delta, c.pool_pairs, strategy=c.strategy, seed=pool_seed(c.seed), owns=owns,
                               progress=progress and distributed.is_main())
    parts = distributed.gather_in_order([(i, (block, dict(cloud.last_fit))) for i, block in blocks])
    cloud.last_fit = parts[-1][1]
    return PairSample.concat([block for block, _ in parts])


def step_pairs(config, source, step: int) -> PairSample:
    """This process's pairs of step ``step`` of a run with ``config``, drawn from ``source`` (the
    manifold or the pool): the whole batch of ``sample_pairs`` with the step's
    seed, or under K processes its share, so that the shares make up exactly that batch.

    With QMC and K dividing its 2 replicates, rank ``r`` draws only the replicates ``i`` with
    ``i % K = r`` (independent Sobol sequences, :func:`gammalimit.sampling.iter_blocks`: the same
    pairs, bit for bit, without drawing the others'); otherwise every rank draws the whole batch and
    takes rows ``r::K`` (``batch_size`` must then be a multiple of K, checked at the start).
    """
    c = config
    kw = step_sampling(c, step)
    k = distributed.world_size()
    if k > 1 and c.qmc and 2 % k == 0:
        return PairSample.concat([b for _, b in iter_blocks(source, c.batch_size, c.delta, owns=distributed.owns,
                                                            **kw)])
    pairs = sample_pairs(source, c.batch_size, c.delta, **kw)
    if k == 1:
        return pairs
    rows = slice(distributed.rank(), None, k)
    return PairSample(pairs.x[rows], pairs.y[rows], pairs.midpoint[rows], pairs.dist[rows], None,
                      pairs.r[rows], pairs.delta, False, pairs.replicate[rows], pairs.n_rejected)

def check_shares(config) -> None:
    """Equal shares of every step's batch (the mean of the ranks' means is then the batch mean):
    ``ValueError`` naming a valid ``batch_size`` otherwise."""
    c, k = config, distributed.world_size()
    if k > 1 and not (c.qmc and 2 % k == 0):
        n = c.batch_size + (c.batch_size % 2 if c.antithetic else 0)
        if n % k:
            raise ValueError(f"batch_size = {c.batch_size} must be a multiple of the {k} processes (each takes "
                             f"an equal share of every step's pairs); use batch_size = {k * -(-n // k)}")

"""Neural peers: regularised autoencoders in one trainer, architecture and budget (issue 14).

Four autoencoders ``D o phi`` on a data manifold, each minimising

    E_x |D(phi(x)) - x|^2  +  weight * R

with one regulariser ``R`` of the literature, written from its paper's formula:

- ``"plain"``: ``R = 0`` (:func:`gammalimit.autoencoder.train_plain_autoencoder`);
- ``"geometric"``: the Geometric Autoencoder's determinant loss
  (:func:`log_det_variance`; Nazari, Damrich & Hamprecht, ICML 2023);
- ``"isometric"``: the relaxed distortion measure of the isometrically
  regularised autoencoder (:func:`relaxed_distortion`; Lee, Yoon, Son & Park,
  ICLR 2022);
- ``"gamma"``: this project's ``L_delta`` (docs/theory.md, section 2) on pairs
  drawn from the manifold, ``pair_terms(phi, pairs, penalty).total(lam).mean()``
  (:func:`gamma_regulariser`).

The first two regularisers act on the decoder's pull-back metric at the codes,

    G(z) = J(z)^T J(z),   J(z) = dD/dz (z)   shape=[ambient_dim, latent_dim],

the metric that ``D`` induces on the latent space (:func:`pullback_metric`);
``L_delta`` acts on the encoder alone. Every peer shares the encoder
(:func:`gammalimit.train.build_encoder` of one :class:`~gammalimit.train.TrainConfig`:
architecture and initial weights), the decoder (:func:`gammalimit.autoencoder.build_decoder`
of one :class:`~gammalimit.autoencoder.DecoderConfig`), the points of every step,
the optimiser (one AdamW, one warm-up/cosine schedule) and the number of steps:
the loop is :func:`gammalimit.autoencoder._train_reconstruction`. Training is
float32; :func:`gammalimit.autoencoder.reconstruction_error` and the measures
are float64.
"""

from __future__ import annotations

import torch
from torch.func import jacfwd, vmap

from .autoencoder import DecoderConfig, ReconstructionResult, _train_reconstruction, build_decoder
from .loss import pair_terms
from .sampling import sample_pairs
from .train import TrainConfig, build_encoder, step_sampling, step_seed
from .validation import check_count, check_positive, check_real

__all__ = ["PEERS", "DEFAULT_WEIGHTS", "pullback_metric", "log_det_variance", "relaxed_distortion",
           "mixup_codes", "gamma_regulariser", "make_regulariser", "train_neural_peer"]

#: The peers, in the order the studies report them.
PEERS = ("plain", "geometric", "isometric", "gamma")

#: Default regularisation weights (not tuned per manifold: pass ``weight`` to change them).
DEFAULT_WEIGHTS = {"plain": 0.0, "geometric": 0.1, "isometric": 1.0, "gamma": 1.0}

#: The mix-up range of the relaxed distortion's augmented codes (Lee et al. 2022, section 4: eta = 0.2).
MIXUP_ETA = 0.2


def pullback_metric(decoder, codes: torch.Tensor) -> torch.Tensor:
    """The decoder's pull-back metric ``G(z) = J^T J``, ``J = dD/dz``, at each code.

    Differentiable in ``decoder``'s parameters and in ``codes`` (forward-mode
    Jacobian by ``torch.func.jacfwd``: ``latent_dim`` passes).

    Parameters
    ----------
    decoder : callable
        ``shape=[k, latent_dim] -> shape=[k, ambient_dim]``, one point at a time.
    codes : tensor, shape=[k, latent_dim]

    Returns
    -------
    tensor, shape=[k, latent_dim, latent_dim]
    """
    J = vmap(jacfwd(lambda z: decoder(z[None])[0]))(codes)
    return J.transpose(1, 2) @ J


def log_det_variance(G: torch.Tensor) -> torch.Tensor:
    """The Geometric Autoencoder's determinant loss (Nazari, Damrich & Hamprecht,
    "Geometric Autoencoders -- What You See is What You Decode", ICML 2023,
    section 4.2):

        L_det = Var_i [ log det G(z_i) ]

    over the codes ``z_i`` of the batch, ``G`` the decoder's pull-back metric
    (``det G`` the squared "generalised Jacobian determinant" of the decoder).
    It vanishes when the decoder scales every area element by the same factor
    (not necessarily isometric: any ``D`` with constant ``det G``). Natural
    logarithm (the reference code's ``log10`` is this divided by ``ln 10``,
    the variance by ``ln(10)^2``); the unbiased batch variance, as ``torch.var``
    in the reference code; ``log det`` by Cholesky.

    Parameters
    ----------
    G : tensor, shape=[k, m, m], k >= 2
        Symmetric positive definite.

    Returns
    -------
    tensor, scalar
    """
    L = torch.linalg.cholesky(G)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return torch.var(logdet)


def relaxed_distortion(G: torch.Tensor) -> torch.Tensor:
    """The relaxed distortion measure (Lee, Yoon, Son & Park, "Regularized
    Autoencoders for Isometric Representation Learning", ICLR 2022, eq. (7),
    with the identity as the latent metric), normalised to vanish at its minimum:

        F = m E[tr(G^2)] / E[tr(G)]^2 - 1  >= 0

    over the batch of (augmented, :func:`mixup_codes`) codes. By Cauchy-Schwarz
    ``tr(G^2) >= tr(G)^2 / m`` with equality iff ``G = c I``, and
    ``E[tr G^2] >= ...`` is tight only if ``tr G`` is constant: ``F = 0`` iff
    ``G(z) = c I`` with one ``c`` for every ``z``, i.e. ``D`` is a scaled
    isometry. The paper's ``E[tr G^2] / E[tr G]^2`` is ``(F + 1) / m``: the
    same minimiser, the gradient scaled by ``1/m``. Traces are exact here (the
    reference code estimates them with one Hutchinson probe ``v ~ N(0, I)``:
    ``|Jv|^2`` and ``|J^T J v|^2``, whose means are these).

    Parameters
    ----------
    G : tensor, shape=[k, m, m]

    Returns
    -------
    tensor, scalar
    """
    m = G.shape[-1]
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    tr2 = (G * G.transpose(-1, -2)).sum((-2, -1))
    return m * tr2.mean() / tr.mean() ** 2 - 1


def mixup_codes(codes: torch.Tensor, generator: torch.Generator, eta: float = MIXUP_ETA) -> torch.Tensor:
    """Augmented codes ``a z_i + (1 - a) z_pi(i)``, ``a ~ U[-eta, 1 + eta]``, ``pi`` a
    random permutation (Lee et al. 2022, section 4: the regulariser is evaluated
    also between and slightly beyond the codes of the data), ``shape=[k, m]``."""
    k = codes.shape[0]
    perm = torch.randperm(k, generator=generator)
    a = (torch.rand(k, 1, generator=generator, dtype=torch.float64) * (1 + 2 * eta) - eta).to(codes.dtype)
    return a * codes + (1 - a) * codes[perm]


def gamma_regulariser(encoder, pairs, lam: float, penalty="squared") -> torch.Tensor:
    """``L_delta`` on a batch of pairs: ``pair_terms(encoder, pairs, penalty).total(lam).mean()``
    (docs/theory.md, section 2), differentiable in the encoder's parameters."""
    return pair_terms(encoder, pairs, penalty).total(lam).mean()


def make_regulariser(kind: str, encoder_config: TrainConfig, manifold, seed: int):
    """The regulariser ``(encoder, decoder, x, codes, step) -> scalar`` of ``kind``
    (``None`` for ``"plain"``). Step ``s`` draws its randomness (mix-up, pairs)
    from ``step_seed(seed, s)``: a run is a function of its configuration."""
    if kind == "plain":
        return None
    if kind == "geometric":
        return lambda encoder, decoder, x, codes, step: log_det_variance(pullback_metric(decoder, codes))
    if kind == "isometric":
        def isometric(encoder, decoder, x, codes, step):
            g = torch.Generator().manual_seed(step_seed(seed, step))
            return relaxed_distortion(pullback_metric(decoder, mixup_codes(codes, g)))
        return isometric
    if kind == "gamma":
        c = encoder_config

        def gamma(encoder, decoder, x, codes, step):
            pairs = sample_pairs(manifold, c.batch_size, c.delta, **step_sampling(c, step))
            return gamma_regulariser(encoder, pairs, c.lam, c.penalty)
        return gamma
    raise ValueError(f"unknown neural peer {kind!r}; allowed: {list(PEERS)}")


def train_neural_peer(kind: str, encoder_config: TrainConfig, decoder_config: DecoderConfig | None = None, *,
                      weight: float | None = None, steps: int | None = None,
                      encoder_lr: float | None = None) -> ReconstructionResult:
    """Train the autoencoder ``kind`` (module docstring) jointly on reconstruction and its regulariser.

    ``kind="plain"`` is :func:`gammalimit.autoencoder.train_plain_autoencoder`
    step for step (the same call underneath).

    Parameters
    ----------
    kind : {"plain", "geometric", "isometric", "gamma"}
    encoder_config : TrainConfig
        The manifold, the encoder's architecture and initial weights (its
        ``seed``); for ``"gamma"`` also ``delta``, ``lam``, ``penalty``, the
        pair sampling and ``batch_size`` pairs per step.
    decoder_config : DecoderConfig, optional
        The decoder, the points per step (``batch_size``), ``lr`` and the
        schedule, the seed of the decoder's weights and of the points.
    weight : float >= 0, optional
        Of the regulariser; default :data:`DEFAULT_WEIGHTS`\\ ``[kind]``.
    steps : int, optional
        Default ``encoder_config.steps + decoder_config.steps`` (the budget of
        the ``L_delta`` encoder and its decoder together, as for the plain
        autoencoder).
    encoder_lr : float, optional
        Default ``decoder_config.lr``.

    Returns
    -------
    ReconstructionResult
        ``encoder``, ``decoder`` (float32), ``losses`` (the total per step),
        ``regulariser_losses`` (``R`` per step; empty for ``"plain"``), float64
        reconstruction errors before and after.
    """
    if kind not in PEERS:
        raise ValueError(f"unknown neural peer {kind!r}; allowed: {list(PEERS)}")
    if not isinstance(encoder_config, TrainConfig):
        raise TypeError(f"encoder_config must be a TrainConfig, got {type(encoder_config).__name__}")
    config = decoder_config or DecoderConfig()
    if not isinstance(config, DecoderConfig):
        raise TypeError(f"decoder_config must be a DecoderConfig, got {type(config).__name__}")
    weight = DEFAULT_WEIGHTS[kind] if weight is None else check_real(weight, "weight", minimum=0.0, strict=False)
    steps = encoder_config.steps + config.steps if steps is None else check_count(steps, "steps")
    encoder_lr = config.lr if encoder_lr is None else check_positive(encoder_lr, "encoder_lr")
    manifold = encoder_config.make_manifold()
    encoder = build_encoder(encoder_config, manifold)
    decoder = build_decoder(encoder, manifold, config)
    regulariser = make_regulariser(kind, encoder_config, manifold, config.seed)
    return _train_reconstruction(encoder, decoder, manifold, config, steps, encoder_lr=encoder_lr,
                                 regulariser=regulariser, weight=weight)

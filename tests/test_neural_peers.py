"""Neural peers (gammalimit.neural_peers): each regulariser on a case with a known
answer, the joint loss against its parts, and a few training steps of each peer."""

import math

import pytest
import torch

from gammalimit import Sphere, sample_pairs
from gammalimit.autoencoder import DecoderConfig, _points, build_decoder, train_plain_autoencoder
from gammalimit.neural_peers import (PEERS, gamma_regulariser, log_det_variance, make_regulariser, mixup_codes,
                                     pullback_metric, relaxed_distortion, train_neural_peer)
from gammalimit.train import TrainConfig, build_encoder, step_sampling, step_seed

DT = torch.float64


def _orthonormal(n, m, seed=0):
    q, _ = torch.linalg.qr(torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=DT))
    return q


def _codes(k=64, m=2, seed=1):
    return torch.randn(k, m, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_linear_decoder_pullback_metric_is_AtA_and_its_log_det_is_constant():
    A = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=DT)
    z = _codes(m=3)
    G = pullback_metric(lambda c: c @ A.T + 1.0, z)
    assert torch.allclose(G, (A.T @ A).expand(64, 3, 3), atol=1e-13, rtol=0)
    assert float(log_det_variance(G)) < 1e-26


def test_log_det_variance_by_hand():
    """D(z) = (e^{z1} u, z2 w), u, w orthonormal: G = diag(e^{2 z1}, 1), so
    log det G = 2 z1 and L_det = Var(2 z1) = 4 Var(z1)."""
    U = _orthonormal(5, 2)
    z = _codes()
    G = pullback_metric(lambda c: torch.exp(c[:, :1]) * U[:, 0] + c[:, 1:] * U[:, 1], z)
    assert torch.allclose(G[:, 0, 0], torch.exp(2 * z[:, 0]), rtol=1e-13)
    assert float(log_det_variance(G)) == pytest.approx(4 * float(torch.var(z[:, 0])), rel=1e-12)


def test_relaxed_distortion_vanishes_exactly_for_a_conformal_linear_decoder():
    A = 3.0 * _orthonormal(6, 2)
    G = pullback_metric(lambda c: c @ A.T, _codes())
    assert abs(float(relaxed_distortion(G))) < 1e-14


def test_relaxed_distortion_of_a_non_conformal_linear_decoder_by_hand():
    """Columns orthogonal with norms 2 and 1: G = diag(4, 1),
    F = 2 (16 + 1) / (4 + 1)^2 - 1 = 9/25; the log-det variance is still 0."""
    Q = _orthonormal(6, 2)
    A = Q * torch.tensor([2.0, 1.0], dtype=DT)
    G = pullback_metric(lambda c: c @ A.T, _codes())
    assert float(relaxed_distortion(G)) == pytest.approx(9 / 25, rel=1e-13)
    assert float(log_det_variance(G)) < 1e-26


def test_relaxed_distortion_sees_a_varying_scale():
    """G = c(z) I is conformal at every z but not a scaled isometry unless c is constant:
    F = 2 E[2 c^2] / E[2 c]^2 - 1 = Var(c) / E[c]^2 (population moments)."""
    z = _codes()
    c = torch.exp(z[:, 0])
    G = c[:, None, None] * torch.eye(2, dtype=DT)
    expected = float((c**2).mean() / c.mean() ** 2 - 1)
    assert float(relaxed_distortion(G)) == pytest.approx(expected, rel=1e-12)


def test_mixup_codes_lie_on_lines_through_pairs_of_codes_and_are_reproducible():
    z = _codes(k=16)
    a = mixup_codes(z, torch.Generator().manual_seed(5))
    assert torch.equal(a, mixup_codes(z, torch.Generator().manual_seed(5)))
    # each augmented code is z_i + s (z_j - z_i) for some j and s in [-0.2, 1.2]
    for i in range(16):
        d = z - z[i]
        s = ((a[i] - z[i]) @ d.T) / (d * d).sum(-1).clamp_min(1e-300)
        resid = torch.linalg.vector_norm(z[i] + s[:, None] * d - a[i], dim=-1)
        j = int(torch.argmin(resid + 1e3 * (s < -0.2 - 1e-12) + 1e3 * (s > 1.2 + 1e-12)))
        assert float(resid[j]) < 1e-12


def test_gamma_regulariser_is_the_discrete_loss_by_hand():
    """For phi = 0.9 id on the unit sphere (an nn.Module, float64) the regulariser is
    mean((|phi(x)-phi(y)|^2 - d^2)^2 / delta^4 + lam |phi(x)+phi(y)-2 phi(av)|^2 / delta^4)."""
    S, delta, lam = Sphere(1.0), 0.1, 0.5
    phi = torch.nn.Linear(3, 3, bias=False, dtype=DT)
    with torch.no_grad():
        phi.weight.copy_(0.9 * torch.eye(3, dtype=DT))
    pairs = sample_pairs(S, 64, delta, seed=3)
    fx, fy, fm = 0.9 * pairs.x, 0.9 * pairs.y, 0.9 * pairs.midpoint
    dist_term = (((fx - fy) ** 2).sum(-1) - pairs.dist**2) ** 2 / delta**4
    bend_term = ((fx + fy - 2 * fm) ** 2).sum(-1) / delta**4
    expected = float((dist_term + lam * bend_term).mean())
    assert float(gamma_regulariser(phi, pairs, lam).detach()) == pytest.approx(expected, rel=1e-12)


ENC = TrainConfig(manifold="translating-blob", n_pixels=16, latent_dim=2, hidden=(32, 32), steps=15, batch_size=64,
                  lam=0.01, seed=4)
DEC = DecoderConfig(hidden=(32, 32), steps=15, batch_size=64, eval_points=64, seed=2)


def test_joint_gamma_loss_is_reconstruction_plus_weight_times_L_delta():
    """The first step's total, recomputed from its parts: the step's points, the
    step's pairs (``step_seed(config.seed, 0)``), the initial networks."""
    weight = 0.3
    result = train_neural_peer("gamma", ENC, DEC, weight=weight, steps=1)
    M = ENC.make_manifold()
    encoder = build_encoder(ENC, M)
    decoder = build_decoder(encoder, M, DEC)
    x = _points(M, DEC.batch_size, step_seed(DEC.seed, 0)).float()
    pairs = sample_pairs(M, ENC.batch_size, ENC.delta, **step_sampling(ENC, 0))
    with torch.no_grad():
        rec = float(((decoder(encoder(x)) - x) ** 2).sum(-1).mean())
        reg = float(gamma_regulariser(encoder, pairs, ENC.lam, ENC.penalty))
        again = float(make_regulariser("gamma", ENC, M, DEC.seed)(encoder, decoder, x, encoder(x), 0))
    assert again == reg
    assert result.regulariser_losses[0] == pytest.approx(reg, rel=1e-6)
    assert result.losses[0] == pytest.approx(rec + weight * reg, rel=1e-6)


def test_plain_peer_is_the_plain_autoencoder_step_for_step():
    a = train_neural_peer("plain", ENC, DEC)
    b = train_plain_autoencoder(ENC, DEC)
    assert a.losses == b.losses and a.regulariser_losses == []
    assert a.error_after == b.error_after


@pytest.mark.parametrize("kind", PEERS)
def test_a_few_steps_reduce_the_loss_and_are_reproducible(kind):
    r = train_neural_peer(kind, ENC, DEC)
    assert len(r.losses) == ENC.steps + DEC.steps and all(math.isfinite(v) for v in r.losses)
    assert sum(r.losses[-5:]) / 5 < r.losses[0]
    if kind != "plain":
        assert len(r.regulariser_losses) == len(r.losses)
        assert sum(r.regulariser_losses[-5:]) / 5 < r.regulariser_losses[0]
    again = train_neural_peer(kind, ENC, DEC, steps=4)
    assert again.losses == train_neural_peer(kind, ENC, DEC, steps=4).losses


@pytest.mark.parametrize("call, error, message", [
    (lambda: train_neural_peer("vae", ENC), ValueError, "unknown neural peer 'vae'"),
    (lambda: train_neural_peer("geometric", "cfg"), TypeError, "TrainConfig"),
    (lambda: train_neural_peer("geometric", ENC, weight=-1.0), ValueError, "weight"),
    (lambda: train_neural_peer("geometric", ENC, DEC, steps=0), ValueError, "steps"),
])
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()

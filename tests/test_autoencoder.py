"""Decoders on frozen encoders, the plain autoencoder baseline, and the
interpolation measures (gammalimit.autoencoder)."""

import math

import pytest
import torch

from gammalimit import Circle, Sphere, SwissRoll, TranslatingBlob, sample_pairs
from gammalimit.autoencoder import (DecoderConfig, build_decoder, fit_decoder, geodesic_interpolant,
                                    interpolation_errors, latent_midpoint_defect, midpoint_defect,
                                    reconstruction_error, train_plain_autoencoder)
from gammalimit.train import TrainConfig, build_encoder, train

ENC = TrainConfig(manifold="sphere", latent_dim=3, delta=0.3, lam=0.01, steps=20, batch_size=32, hidden=(16,),
                  limit="none", warmup=2)
DEC = DecoderConfig(hidden=(32, 32), steps=150, batch_size=64, warmup=10, eval_points=256)


class Map(torch.nn.Module):
    """A fixed function as a module (no parameters)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


@pytest.fixture(scope="module")
def trained_encoder():
    return train(ENC, progress=False, evaluate_final=False).model


def test_decoder_on_frozen_encoder_lowers_reconstruction_error(trained_encoder):
    before = {k: v.clone() for k, v in trained_encoder.state_dict().items()}
    res = fit_decoder(trained_encoder, Sphere(1.0), DEC)
    assert not res.joint and res.steps == DEC.steps and len(res.losses) == DEC.steps
    assert res.error_after < 0.5 * res.error_before
    # the encoder passed in is untouched, and the returned one is frozen at its weights
    for k, v in trained_encoder.state_dict().items():
        assert torch.equal(v, before[k])
        assert torch.equal(res.encoder.state_dict()[k], before[k])
    x = Sphere(1.0).sample(64, generator=torch.Generator().manual_seed(1))
    err = reconstruction_error(res.encoder, res.decoder, x)
    assert err.shape == (64,) and err.dtype == torch.float64 and torch.isfinite(err).all()


def test_decoder_training_is_reproducible(trained_encoder):
    cfg = DecoderConfig(hidden=(8,), steps=15, batch_size=16, warmup=2, eval_points=32)
    a = fit_decoder(trained_encoder, Sphere(1.0), cfg)
    b = fit_decoder(trained_encoder, Sphere(1.0), cfg)
    assert a.losses == b.losses


def test_plain_autoencoder_trains_encoder_and_decoder_jointly():
    res = train_plain_autoencoder(ENC, DEC, steps=150)
    assert res.joint and res.steps == 150
    assert res.error_after < 0.5 * res.error_before
    init = build_encoder(ENC, Sphere(1.0))
    moved = [not torch.equal(p, q) for p, q in zip(res.encoder.parameters(), init.parameters())]
    assert all(moved)
    # same budget by default: the encoder's steps and the decoder's steps together
    cfg = DecoderConfig(hidden=(8,), steps=3, batch_size=8, warmup=0, eval_points=8)
    assert train_plain_autoencoder(ENC, cfg).steps == ENC.steps + cfg.steps


@pytest.mark.parametrize("kw", [dict(steps=0), dict(batch_size=0), dict(hidden=(0,)), dict(lr=-1.0),
                                dict(final_lr_ratio=2.0), dict(seed=-1), dict(warmup=-1), dict(eval_seed=-1)])
def test_decoder_config_rejects_bad_values(kw):
    (name,) = kw
    with pytest.raises(ValueError, match=name):
        DecoderConfig(**kw)


def test_midpoint_defect_of_a_round_circle_closed_form():
    # identity on a circle of radius R: chord of angle a = d/R, defect = tan(a/4)/2
    R, d = 2.0, 1.3
    M = Circle(R)
    pairs = sample_pairs(M, 16, d, seed=0)
    defect = latent_midpoint_defect(lambda x: x, pairs)
    assert torch.allclose(defect, torch.full_like(defect, math.tan(d / R / 4) / 2), rtol=1e-12)


def test_flat_chart_has_no_midpoint_defect():
    M = TranslatingBlob(n_pixels=24)
    pairs = sample_pairs(M, 32, 0.1, seed=1)
    defect = latent_midpoint_defect(lambda x: math.sqrt(M.metric_scale) * M.centres(x), pairs)
    assert float(defect.max()) < 1e-8
    c = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(midpoint_defect(c, -c, torch.zeros_like(c)), torch.zeros(5, dtype=torch.float64))


def test_geodesic_interpolant_runs_along_the_geodesic():
    M = Sphere(1.0)
    pairs = sample_pairs(M, 32, 0.8, seed=2)
    assert torch.allclose(geodesic_interpolant(M, pairs, 0.5), pairs.midpoint, atol=1e-14)
    assert torch.allclose(geodesic_interpolant(M, pairs, 0.0), pairs.x, atol=1e-14)
    assert torch.allclose(geodesic_interpolant(M, pairs, 1.0), pairs.y, atol=1e-13)
    g = geodesic_interpolant(M, pairs, 0.25)
    assert torch.allclose(M.dist(pairs.x, g), 0.25 * pairs.dist, atol=1e-13)


def test_interpolation_errors_vanish_for_a_flat_chart_and_its_inverse():
    # encoder = unrolling (isometric, flat), decoder = the chart: latent lines are geodesics
    M = SwissRoll()
    pairs = sample_pairs(M, 32, 3.0, seed=3)
    err = interpolation_errors(Map(M.unrolled), Map(M.chart.embed), M, pairs)
    assert err.decoded.shape == (3, len(pairs))
    assert float(err.decoded.max()) < 1e-10 and float(err.reconstruction.max()) < 1e-10
    # interpolating the ambient points directly leaves the roll
    assert float(err.ambient_linear.mean()) > 1e-3
    with pytest.raises(ValueError, match="ts"):
        interpolation_errors(Map(M.unrolled), Map(M.chart.embed), M, pairs, ts=(1.5,))


def _bounds_hold(err, tol=1e-12):
    """The triangle inequality between the decoded error, the floor and the decoded defect."""
    lower = (err.decoded - err.reconstruction).abs() <= err.decoded_defect + tol
    upper = err.decoded_defect <= err.decoded + err.reconstruction + tol
    return bool(lower.all() and upper.all())


def test_decoded_defect_sees_the_geometry_not_the_decoder():
    # a flat encoder (the unrolling) and a decoder that is wrong everywhere: the decoded
    # interpolant misses gamma(t) by the decoder's error, but the latent line is the encoded geodesic
    M = SwissRoll()
    pairs = sample_pairs(M, 32, 3.0, seed=4)
    bad_decoder = Map(lambda c: M.chart.embed(c) * (1 + 0.1 * torch.sin(c[:, :1])))
    err = interpolation_errors(Map(M.unrolled), bad_decoder, M, pairs)
    assert err.decoded_defect.shape == err.decoded.shape == (3, len(pairs))
    assert float(err.reconstruction.mean()) > 1e-2 and float(err.decoded.mean()) > 1e-2
    assert float(err.decoded_defect.max()) < 1e-10
    assert _bounds_hold(err)
    # a bent encoder with the exact inverse as its decoder: no floor, and the defect is the error
    bend = lambda u: torch.stack([u[:, 0], u[:, 1] + 0.05 * u[:, 0] ** 2], -1)  # noqa: E731
    unbend = lambda c: torch.stack([c[:, 0], c[:, 1] - 0.05 * c[:, 0] ** 2], -1)  # noqa: E731
    err = interpolation_errors(Map(lambda x: bend(M.unrolled(x))), Map(lambda c: M.chart.embed(unbend(c))), M, pairs)
    assert float(err.reconstruction.max()) < 1e-10
    assert float(err.decoded_defect.mean()) > 1e-3
    assert torch.allclose(err.decoded_defect, err.decoded, atol=1e-10)
    assert _bounds_hold(err)


def test_decoded_defect_bounds_hold_for_trained_networks(trained_encoder):
    res = fit_decoder(trained_encoder, Sphere(1.0), DEC)
    pairs = sample_pairs(Sphere(1.0), 64, 1.0, seed=5)
    err = interpolation_errors(res.encoder, res.decoder, Sphere(1.0), pairs, ts=(0.1, 0.5, 0.9))
    assert _bounds_hold(err)
    assert float(err.decoded_defect.min()) > 0


def test_fresh_decoders_of_different_encoders_start_from_the_same_weights(trained_encoder):
    # the fair comparison: one DecoderConfig gives every frozen encoder the same initial
    # decoder weights; only the code normalisation follows each encoder's codes
    M = Sphere(1.0)
    other = build_encoder(ENC, M)
    a, b = build_decoder(trained_encoder, M, DEC), build_decoder(other, M, DEC)
    for (k, p), (_, q) in zip(a.mlp.state_dict().items(), b.mlp.state_dict().items()):
        assert torch.equal(p, q), k
    assert not torch.equal(a.code_shift, b.code_shift)
    assert torch.equal(a.data_shift, b.data_shift)

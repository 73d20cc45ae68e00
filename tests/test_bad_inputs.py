"""Issue 12, "Nothing silent, nothing lost": every bad input to the public API is a
``ValueError``/``TypeError`` raised where it enters, naming the parameter and what is
allowed. One row per input: ``(label, call, exception type, regex the message must match)``.
"""

import math
import re

import numpy as np
import pytest
import torch
from scipy.special import ellipe

import gammalimit
from gammalimit import (Circle, ClosedCurve, FlatTorus, PeriodicBlob, PointCloud, RotatingEllipse, Sphere,
                        SwissRoll, TranslatingBlob, continuum_loss, discrete_loss, discrete_minus_limit, sample_pairs)
from gammalimit.cli import main
from gammalimit.manifolds import make_manifold

# the numpy-curve rows feed torch tensors to numpy, which warns before the curve is refused
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

S = Sphere()
F64 = torch.float64


def identity(x):
    return x


def torch_curve(*coords):
    """A planar or spatial curve from torch functions of ``t``."""
    return lambda t: torch.stack([c(t) for c in coords], -1)


circle = torch_curve(torch.cos, torch.sin)
figure_eight = torch_curve(torch.sin, lambda t: torch.sin(2 * t))
limacon_with_loop = torch_curve(lambda t: (0.5 + torch.cos(t)) * torch.cos(t), lambda t: (0.5 + torch.cos(t)) * torch.sin(t))
knot_shadow = torch_curve(lambda t: (2 + torch.cos(3 * t)) * torch.cos(2 * t), lambda t: (2 + torch.cos(3 * t)) * torch.sin(2 * t))
segment = torch_curve(torch.zeros_like, torch.sin)
astroid = torch_curve(lambda t: torch.cos(t) ** 3, lambda t: torch.sin(t) ** 3)
wrong_size = torch.nn.Linear(5, 2).to(F64)
W32 = torch.ones(3, 2, dtype=torch.float32)  # float32 weights held by a plain function


def cloud():
    return PointCloud(S.sample(200, generator=torch.Generator().manual_seed(0)), dim=2)


def fit(**kw):
    from gammalimit.estimator import GammaEncoder

    X = S.sample(20, generator=torch.Generator().manual_seed(0)).numpy()
    return GammaEncoder(manifold="sphere", latent_dim=3, delta=0.3, steps=2, batch_size=16, hidden=(8,),
                        warmup=1, **kw).fit(X)


BAD_INPUTS = [
    # ---- ClosedCurve: a closed curve manifold is an embedded, regular circle traversed once
    ("curve: figure eight", lambda: ClosedCurve(figure_eight), ValueError, r"must be simple.*crosses or touches"),
    ("curve: limacon with inner loop", lambda: ClosedCurve(limacon_with_loop), ValueError, r"must be simple"),
    ("curve: planar torus-knot shadow", lambda: ClosedCurve(knot_shadow), ValueError, r"must be simple"),
    ("curve: ellipse(0, 1) (a segment)", lambda: ClosedCurve.ellipse(0, 1), ValueError, r"^a must be finite and > 0, got 0"),
    ("curve: ellipse(1, -2)", lambda: ClosedCurve.ellipse(1, -2), ValueError, r"^b must be finite and > 0"),
    ("curve: segment (0, sin t)", lambda: ClosedCurve(segment), ValueError, r"must be regular.*vanishes at t = 1\.5708"),
    ("curve: astroid (cusps)", lambda: ClosedCurve(astroid), ValueError, r"must be regular.*a cusp"),
    ("curve: circle with period 4 pi", lambda: ClosedCurve(circle, period=4 * math.pi), ValueError,
     r"2 times the curve's minimal period.*pass period=6\.28318"),
    ("curve: circle with period 6 pi", lambda: ClosedCurve(circle, period=6 * math.pi), ValueError, r"traversed 3 times"),
    ("curve: (cos 3t, sin 3t) over 2 pi", lambda: ClosedCurve(torch_curve(lambda t: torch.cos(3 * t), lambda t: torch.sin(3 * t))),
     ValueError, r"3 times the curve's minimal period.*period=2\.0943"),
    ("curve: numpy function", lambda: ClosedCurve(lambda t: np.stack([np.cos(t), np.sin(t)], -1)), TypeError,
     r"curve must return a torch tensor.*got ndarray"),
    ("curve: numpy inside torch.stack", lambda: ClosedCurve(lambda t: torch.stack([np.cos(t), np.sin(t)], -1)),
     TypeError, r"curve must be differentiable by torch.func \(written in torch, not numpy\)"),
    ("curve: float32 points", lambda: ClosedCurve(lambda t: circle(t).float()), TypeError, r"curve must return float64"),
    ("curve: not callable", lambda: ClosedCurve(None), TypeError, r"curve must be a callable"),
    ("curve: period=0", lambda: ClosedCurve(circle, period=0), ValueError, r"^period must be finite and > 0, got 0"),
    ("curve: period=-1", lambda: ClosedCurve(circle, period=-1), ValueError, r"^period must be finite and > 0"),
    ("curve: period=nan", lambda: ClosedCurve(circle, period=math.nan), ValueError, r"^period must be finite"),
    ("curve: period='2pi'", lambda: ClosedCurve(circle, period="2pi"), TypeError, r"^period must be a real number"),
    ("curve: not closed (period 5)", lambda: ClosedCurve(circle, period=5.0), ValueError, r"not closed with period 5"),
    # ---- manifold constructors
    ("Circle('a')", lambda: Circle("a"), TypeError, r"^radius must be a real number, got 'a'"),
    ("Circle(None)", lambda: Circle(None), TypeError, r"^radius must be a real number, got None"),
    ("Circle('2') (a string)", lambda: Circle("2"), TypeError, r"^radius must be a real number, got '2'"),
    ("Circle(True)", lambda: Circle(True), TypeError, r"^radius must be a real number, got True"),
    ("Circle(-1)", lambda: Circle(-1), ValueError, r"^radius must be finite and > 0, got -1"),
    ("Circle(inf)", lambda: Circle(math.inf), ValueError, r"^radius must be finite"),
    ("Sphere(None)", lambda: Sphere(None), TypeError, r"^radius must be a real number"),
    ("FlatTorus(1.0)", lambda: FlatTorus(1.0), TypeError, r"^radii must be a sequence of 2 real numbers > 0 \(R1, R2\), got 1\.0"),
    ("FlatTorus('ab')", lambda: FlatTorus("ab"), TypeError, r"^radii must be a sequence of 2 real numbers"),
    ("FlatTorus((1, 2, 3))", lambda: FlatTorus((1, 2, 3)), ValueError, r"^radii must be .* got 3 values"),
    ("FlatTorus((1, -1))", lambda: FlatTorus((1, -1)), ValueError, r"^radii\[1\] must be finite and > 0"),
    ("SwissRoll(turns=(1.0,))", lambda: SwissRoll(turns=(1.0,)), ValueError, r"^turns must be a sequence of 2 real numbers.* got 1 values"),
    ("SwissRoll(turns=5.0)", lambda: SwissRoll(turns=5.0), TypeError, r"^turns must be a sequence of 2"),
    ("SwissRoll(turns=(0, 1))", lambda: SwissRoll(turns=(0, 1)), ValueError, r"^turns\[0\] must be finite and > 0"),
    ("SwissRoll(turns=(2, 1))", lambda: SwissRoll(turns=(2, 1)), ValueError, r"turns\[0\] < turns\[1\]"),
    ("SwissRoll(turns=(1, inf))", lambda: SwissRoll(turns=(1, math.inf)), ValueError, r"^turns\[1\] must be finite"),
    ("RotatingEllipse(n_pixels=8)", lambda: RotatingEllipse(8), ValueError, r"needs n_pixels >= 9 for its default sigmas.*got n_pixels=8"),
    ("RotatingEllipse(sigmas=(0.1,))", lambda: RotatingEllipse(16, (0.1,)), ValueError, r"^sigmas must be a sequence of 2"),
    ("RotatingEllipse(sigmas=(0.05, 0.1))", lambda: RotatingEllipse(32, (0.05, 0.1)), ValueError, r"sigma_1 > sigma_2"),
    ("TranslatingBlob(n_pixels=10)", lambda: TranslatingBlob(10), ValueError, r"needs n_pixels > 10 for its default sigma"),
    ("PeriodicBlob(n_pixels=4)", lambda: PeriodicBlob(4), ValueError, r"^n_pixels must be an integer >= 8, got 4"),
    # ---- sample_pairs
    ("sample_pairs qmc n=10", lambda: sample_pairs(S, 10, 0.01, qmc=True), ValueError,
     r"qmc=True needs n = 8 \* 2\^k .*got n=10; use n=8 or n=16"),
    ("sample_pairs qmc n=8000", lambda: sample_pairs(S, 8000, 0.01, qmc=True), ValueError, r"use n=4096 or n=8192"),
    ("sample_pairs qmc antithetic n=24", lambda: sample_pairs(S, 24, 0.01, qmc=True, antithetic=True), ValueError,
     r"n = 16 \* 2\^k .*\(v and -v\).*use n=16 or n=32"),
    ("sample_pairs qmc_replicates=3 n=4", lambda: sample_pairs(S, 4, 0.01, qmc=True, qmc_replicates=3), ValueError, r"use n=3 or n=6"),
    ("sample_pairs seed=-1", lambda: sample_pairs(S, 10, 0.1, seed=-1), ValueError, r"^seed must be an integer >= 0, got -1"),
    ("sample_pairs seed=1.5", lambda: sample_pairs(S, 10, 0.1, seed=1.5), TypeError, r"^seed must be an integer, got 1\.5"),
    ("sample_pairs seed='0'", lambda: sample_pairs(S, 10, 0.1, seed="0"), TypeError, r"^seed must be an integer"),
    ("sample_pairs manifold=None", lambda: sample_pairs(None, 10, 0.1), TypeError,
     r"^manifold must be a Manifold .* or a gammalimit.PointCloud, got NoneType None$"),
    ("sample_pairs manifold='sphere'", lambda: sample_pairs("sphere", 10, 0.1), TypeError, r"make_manifold\('sphere'\)"),
    ("sample_pairs manifold=3.0", lambda: sample_pairs(3.0, 10, 0.1), TypeError, r"^manifold must be a Manifold.*got float"),
    ("sample_pairs delta=1e-301", lambda: sample_pairs(S, 10, 1e-301), ValueError, r"^delta=1e-301 is too small: delta\*\*4 underflows.*>= 1\.22e-77"),
    ("sample_pairs delta=1e-80", lambda: sample_pairs(S, 10, 1e-80), ValueError, r"delta\*\*4 underflows"),
    ("sample_pairs delta=0", lambda: sample_pairs(S, 10, 0.0), ValueError, r"^delta must be finite and > 0"),
    ("sample_pairs delta=4 (> inj. radius)", lambda: sample_pairs(S, 10, 4.0), ValueError, r"below the injectivity radius"),
    ("sample_pairs n=1", lambda: sample_pairs(S, 1, 0.1), ValueError, r"^n must be an integer >= 2, got 1"),
    # ---- discrete_loss
    ("discrete_loss seed=-1", lambda: discrete_loss(identity, S, lam=1, delta=0.1, n=10, seed=-1), ValueError,
     r"^seed must be an integer >= 0, got -1"),
    ("discrete_loss manifold=None", lambda: discrete_loss(identity, None, lam=1, delta=0.1, n=10), TypeError,
     r"^manifold must be a Manifold .*or a gammalimit.PairSample of given pairs, got NoneType"),
    ("discrete_loss manifold='sphere'", lambda: discrete_loss(identity, "sphere", lam=1, delta=0.1, n=10), TypeError,
     r"make_manifold\('sphere'\)"),
    ("discrete_loss manifold=42", lambda: discrete_loss(identity, 42, lam=1, delta=0.1, n=10), TypeError, r"^manifold must be"),
    ("discrete_loss Linear(5, 2) on R^3", lambda: discrete_loss(wrong_size, S, lam=1, delta=0.1, n=10), ValueError,
     r"ambient dimension n = 3; phi's first linear layer takes 5 features \(RuntimeError: mat1 and mat2"),
    ("discrete_loss x @ (5x2) on R^3", lambda: discrete_loss(lambda x: x @ torch.ones(5, 2, dtype=F64), S, lam=1, delta=0.1, n=10),
     ValueError, r"cannot be applied to the points of Sphere\(radius=1\.0\): float64 rows of ambient dimension n = 3"),
    ("discrete_loss float32 weights in a function", lambda: discrete_loss(lambda x: x @ W32, S, lam=1, delta=0.1, n=10),
     ValueError, r"phi must accept float64 rows"),
    ("discrete_loss Linear(5, 2) on a cloud", lambda: discrete_loss(wrong_size, cloud(), lam=1, delta=0.3, n=10, strategy="ball"), ValueError,
     r"ambient dimension n = 3; phi's first linear layer takes 5"),
    ("discrete_loss delta=1e-301", lambda: discrete_loss(identity, S, lam=1, delta=1e-301, n=10), ValueError,
     r"delta\*\*4 underflows"),
    ("discrete_loss n=None", lambda: discrete_loss(identity, S, lam=1, delta=0.1), TypeError, r"needs delta and n"),
    ("discrete_loss n=2.5", lambda: discrete_loss(identity, S, lam=1, delta=0.1, n=2.5), ValueError, r"^n must be an integer >= 2"),
    ("discrete_loss lam=-1", lambda: discrete_loss(identity, S, lam=-1, delta=0.1, n=10), ValueError, r"^lam must be finite and >= 0"),
    # ---- continuum_loss and discrete_minus_limit
    ("continuum_loss nodes=2.5", lambda: continuum_loss(identity, S, lam=1, nodes=2.5), TypeError,
     r"^nodes must be an integer >= 2 or a sequence of 2 such integers, got 2\.5"),
    ("continuum_loss nodes='16'", lambda: continuum_loss(identity, S, lam=1, nodes="16"), TypeError, r"^nodes must be an integer"),
    ("continuum_loss nodes=True", lambda: continuum_loss(identity, S, lam=1, nodes=True), TypeError, r"^nodes must be an integer"),
    ("continuum_loss nodes=(16,) on S^2", lambda: continuum_loss(identity, S, lam=1, nodes=(16,)), ValueError, r"^nodes must be"),
    ("continuum_loss float32 function", lambda: continuum_loss(lambda x: x.float(), S, lam=1), TypeError,
     r"phi returned torch.float32 values for float64 points.*must compute in float64"),
    ("continuum_loss Linear(5, 2) on R^3", lambda: continuum_loss(wrong_size, S, lam=1), ValueError,
     r"ambient dimension n = 3; phi's first linear layer takes 5 features"),
    ("continuum_loss manifold='sphere'", lambda: continuum_loss(identity, "sphere", lam=1), TypeError, r"make_manifold\('sphere'\)"),
    ("continuum_loss on a point cloud", lambda: continuum_loss(identity, cloud(), lam=1), TypeError, r"needs a manifold with a chart"),
    ("continuum_loss rtol=-1", lambda: continuum_loss(identity, S, lam=1, rtol=-1), ValueError, r"^rtol must be finite and >= 0"),
    ("continuum_loss max_nodes=0", lambda: continuum_loss(identity, S, lam=1, max_nodes=0), ValueError, r"^max_nodes must be an integer >= 16"),
    ("discrete_minus_limit seed=-1", lambda: discrete_minus_limit(identity, S, delta=0.1, lam=1, n=16, seed=-1), ValueError,
     r"^seed must be an integer >= 0"),
    ("discrete_minus_limit float32 function", lambda: discrete_minus_limit(lambda x: x.float(), S, delta=0.1, lam=1, n=16),
     TypeError, r"phi returned torch.float32"),
    ("discrete_minus_limit manifold=None", lambda: discrete_minus_limit(identity, None, delta=0.1, lam=1, n=16), TypeError,
     r"^manifold must be a Manifold"),
    # ---- PointCloud methods and GammaEncoder seeds
    ("PointCloud.pair_pool seed=-1", lambda: cloud().pair_pool(0.3, 16, seed=-1), ValueError, r"^seed must be an integer >= 0, got -1"),
    ("PointCloud.fit_report seed=-1", lambda: cloud().fit_report(0.3, seed=-1), ValueError, r"^seed must be an integer >= 0"),
    ("GammaEncoder random_state=-1", lambda: fit(random_state=-1), ValueError,
     r"^GammaEncoder: random_state must be an integer >= 0 and <= 4294967295, got -1"),
    ("GammaEncoder random_state=2**32", lambda: fit(random_state=2**32), ValueError, r"random_state must be an integer"),
    ("GammaEncoder random_state=1.5", lambda: fit(random_state=1.5), TypeError,
     r"random_state must be None, an integer in \[0, 2\^32\) or a numpy.random.RandomState, got 1\.5"),
]


@pytest.mark.parametrize("call, error, message", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert type(info.value) is error  # not a subclass (a numpy or torch error that happens to derive from it)


BAD_COMMAND_LINES = [
    # (label, argv, regex of the one stderr line)
    ("sphere --radius 1,2", ["loss", "--manifold", "sphere", "--radius", "1,2"],
     r"--radius takes one value for manifold 'sphere' \(it has one radius\), got 1,2"),
    ("circle --radius 1,2", ["limit", "--manifold", "circle", "--radius", "1,2"], r"--radius takes one value for manifold 'circle'"),
    ("torus --radius 1,2,3", ["limit", "--manifold", "torus", "--radius", "1,2,3"],
     r"--radius takes 1 or 2 values for manifold 'torus' \(its radii\), got 1,2,3"),
    ("trefoil --radius 2", ["limit", "--manifold", "trefoil", "--radius", "2"],
     r"--radius does not apply to manifold 'trefoil', which has no radius; it takes no parameters"),
    ("ellipse --radius 2", ["limit", "--manifold", "ellipse", "--radius", "2"],
     r"--radius does not apply to manifold 'ellipse'.*\['a', 'b'\], are set with --param"),
    ("rotating-ellipse --radius 2", ["limit", "--manifold", "rotating-ellipse", "--radius", "2"],
     r"--radius does not apply to manifold 'rotating-ellipse'"),
    ("rotating-ellipse --n-pixels 8", ["limit", "--manifold", "rotating-ellipse", "--n-pixels", "8"],
     r"needs n_pixels >= 9 for its default sigmas"),
    ("loss --qmc --n 10", ["loss", "--manifold", "circle", "--qmc", "--n", "10"], r"qmc=True needs n = 8 \* 2\^k.*use n=8 or n=16"),
    ("loss --seed -1", ["loss", "--manifold", "circle", "--n", "16", "--seed", "-1"], r"seed must be an integer >= 0, got -1"),
    ("loss --delta 1e-301", ["loss", "--manifold", "circle", "--n", "16", "--delta", "1e-301"], r"delta\*\*4 underflows"),
]


@pytest.mark.parametrize("argv, message", [row[1:] for row in BAD_COMMAND_LINES], ids=[row[0] for row in BAD_COMMAND_LINES])
def test_bad_command_line_is_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err


# ---- what is accepted instead of refused gives the right answer


def test_simple_regular_curves_are_accepted_with_their_length():
    assert ClosedCurve(circle).length == pytest.approx(2 * math.pi, rel=1e-13)
    assert ClosedCurve.ellipse(100, 1).length == pytest.approx(400 * ellipe(1 - 1e-4), rel=1e-8)
    limacon = torch_curve(lambda t: (2 + torch.cos(t)) * torch.cos(t), lambda t: (2 + torch.cos(t)) * torch.sin(t))
    ClosedCurve(limacon)
    knot = torch_curve(lambda t: (2 + torch.cos(3 * t)) * torch.cos(2 * t), lambda t: (2 + torch.cos(3 * t)) * torch.sin(2 * t),
                       lambda t: torch.sin(3 * t))
    ClosedCurve(knot)  # its planar shadow crosses itself; the knot does not
    C = ClosedCurve.trefoil(resolution=16)
    x = C.curve(torch.tensor([0.0, math.pi], dtype=F64))
    assert float(C.dist(x[:1], x[1:])) == pytest.approx(C.length / 2, rel=1e-9)


def test_qmc_gives_exactly_n_pairs():
    for n, antithetic in ((8, False), (16, False), (1024, False), (32, True)):
        assert len(sample_pairs(S, n, 0.01, qmc=True, antithetic=antithetic)) == n


def test_float32_module_in_continuum_loss_is_taken_in_float64_like_discrete_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).float()
    assert next(net.parameters()).dtype == torch.float32
    L32 = continuum_loss(net, S, lam=1, nodes=8).total
    L64 = continuum_loss(net.to(F64), S, lam=1, nodes=8).total
    assert L32 == L64 and math.isfinite(L32)


def test_image_manifolds_work_at_16_pixels_and_are_unchanged_where_they_worked(capsys):
    for M in (RotatingEllipse(16), TranslatingBlob(16), PeriodicBlob(14), RotatingEllipse(11), TranslatingBlob(11)):
        assert M.metric_discretisation_error() < 3e-3, M  # widths of one pixel (manifolds/image_base.py)
    assert main(["limit", "--manifold", "rotating-ellipse", "--n-pixels", "16", "--nodes", "8", "--json"]) == 0
    capsys.readouterr()
    theta = torch.linspace(0, math.pi, 7, dtype=F64)
    assert torch.equal(RotatingEllipse().render(theta), RotatingEllipse(32, (0.1, 0.05)).render(theta))
    assert repr(make_manifold("rotating-ellipse")) == "RotatingEllipse(n_pixels=32, sigmas=(0.1, 0.05))"
    assert repr(make_manifold("translating-blob")) == "TranslatingBlob(n_pixels=32, sigma=0.06, margin=5.0)"
    assert repr(make_manifold("periodic-blob")) == "PeriodicBlob(n_pixels=32, sigma=0.07)"
    # the old defaults stand wherever they were allowed (at least one pixel wide)
    assert RotatingEllipse(20).sigmas == (0.1, 0.05) and RotatingEllipse(16).sigmas == (0.125, 0.0625)
    assert TranslatingBlob(17).sigma == 0.06 and TranslatingBlob(16).sigma == 0.0625
    assert PeriodicBlob(15).sigma == 0.07 and PeriodicBlob(14).sigma == 1 / 14


def test_torus_radius_flag_sets_both_radii_or_each(capsys):
    assert main(["limit", "--manifold", "torus", "--radius", "2", "--nodes", "4", "--json"]) == 0
    assert "FlatTorus(radii=(2.0, 2.0))" in capsys.readouterr().out
    assert main(["limit", "--manifold", "torus", "--radius", "1,2", "--nodes", "4", "--json"]) == 0
    assert "FlatTorus(radii=(1.0, 2.0))" in capsys.readouterr().out


def test_gamma_encoder_is_exported_and_transform_takes_any_point_of_the_ambient_space():
    from gammalimit.estimator import GammaEncoder

    assert gammalimit.GammaEncoder is GammaEncoder
    est = fit(random_state=0)
    off = 1.5 * S.sample(5, generator=torch.Generator().manual_seed(1)).numpy()  # not on the sphere
    with pytest.raises(ValueError, match="do not lie on"):
        fit(random_state=0).fit(off)
    with torch.no_grad():
        expected = est.encoder_(torch.from_numpy(off)).numpy()
    assert np.array_equal(est.transform(off), expected)  # the encoder, a map of R^3, applied as it is

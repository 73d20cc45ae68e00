"""The trainer: it lowers L_delta, resumes bit for bit, and rejects bad input clearly."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from gammalimit import Circle, PointCloud, Sphere, discrete_loss, pair_terms, sample_pairs
from gammalimit.cli import main
from gammalimit.embeddings import exact_continuum_loss, optimal_round_scale
from gammalimit.manifolds import MANIFOLDS, default_delta, make_manifold, manifold_parameters
from gammalimit.penalties import PENALTIES, Bending, Penalty, RatioDistortion
from gammalimit.manifolds.point_cloud import PairPool
from gammalimit.train import (ConvEncoder, MLPEncoder, TrainConfig, Trainer, TrainingDiverged, build_encoder,
                              evaluate, float64_copy, metric_fields, pca_projection, pool_seed, step_sampling, step_seed,
                              train)
from gammalimit.train.data import forget_clouds
from gammalimit.train.stopping import check_loss


def circle_config(**kw):
    base = dict(manifold="circle", latent_dim=2, delta=0.1, lam=0.1, steps=40, batch_size=32, hidden=(16,),
                warmup=5, checkpoint_every=10, eval_pairs=512, seed=3)
    return TrainConfig(**{**base, **kw})


def l_delta(model, config, n=4096):
    return discrete_loss(float64_copy(model), config.make_manifold(), delta=config.delta, lam=config.lam, n=n,
                         antithetic=True, seed=11).total


# --------------------------------------------------------------------------
# training


def test_short_run_lowers_L_delta():
    config = circle_config(init="zero", steps=60, lr=3e-3)
    before = l_delta(build_encoder(config, config.make_manifold()), config)
    result = train(config, progress=False)
    after = l_delta(result.model, config)
    # from the collapsed start (codes ~ 0, L_delta ~ 1) to near the optimum of L
    optimum = exact_continuum_loss(Circle(1.0), optimal_round_scale(1.0, config.lam), lam=config.lam).total
    assert before > 0.5
    assert after < 0.1 * before
    assert after < 5 * optimum
    assert len(result.history) == config.steps
    assert result.evaluation["L_delta"]["total"] == pytest.approx(after, rel=0.05)


def test_short_run_on_an_image_manifold():
    config = TrainConfig(manifold="rotating-ellipse", n_pixels=20, latent_dim=2, delta=0.02, lam=0.01, steps=30,
                         batch_size=32, hidden=(8,), warmup=3, eval_pairs=256, limit="none")
    before = l_delta(build_encoder(config, config.make_manifold()), config, n=512)
    result = train(config, progress=False)
    assert result.evaluation["L_delta"]["total"] < before
    assert result.pairs_per_second > 0


def test_run_is_a_function_of_its_config():
    a = train(circle_config(steps=12), progress=False, evaluate_final=False)
    b = train(circle_config(steps=12), progress=False, evaluate_final=False)
    c = train(circle_config(steps=12, seed=4), progress=False, evaluate_final=False)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.history[-1]["loss"] != c.history[-1]["loss"]


def test_seed_and_default_dtype_do_not_change_the_initial_weights():
    config = circle_config()
    m1 = build_encoder(config, config.make_manifold())
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        m2 = build_encoder(config, config.make_manifold())
    finally:
        torch.set_default_dtype(old)
    assert all(p.dtype == torch.float32 for p in m1.parameters())
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_step_seeds_differ():
    assert len({step_seed(0, s) for s in range(1000)} | {step_seed(1, s) for s in range(1000)}) == 2000


def _first_batch_mean(config, term):
    """The float32 batch mean of ``term`` at the initial weights on step 1's pairs (the trainer's first row)."""
    c = config
    pairs = sample_pairs(c.make_manifold(), c.batch_size, c.delta, **step_sampling(c, 0))
    with torch.no_grad():
        return float(pair_terms(build_encoder(c, c.make_manifold()), pairs, c.penalty)[term].mean())


def test_ratio_penalty_trains_and_records_its_terms(tmp_path):
    config = circle_config(penalty="ratio", steps=6)
    result = train(config, out=tmp_path, progress=False)
    assert all(math.isfinite(r["loss"]) for r in result.history)
    # the rows are the ratio penalty's terms, not the squared ones
    assert result.history[0]["distortion"] == _first_batch_mean(config, "distortion")
    squared = dataclasses.replace(config, penalty="squared")
    assert result.history[0]["distortion"] != _first_batch_mean(squared, "distortion")
    ev = result.evaluation
    assert ev["L_delta"]["penalty"] == "ratio" and set(ev["float32_relative_error"]) == {"total", "distortion",
                                                                                          "bending"}
    assert ev["L"]["total"] == pytest.approx(ev["L"]["distortion"] + config.lam * ev["L"]["bending"], rel=1e-12)
    assert json.loads((tmp_path / "config.json").read_text())["penalty"] == "ratio"


def test_metrics_have_one_column_per_penalty_term(tmp_path, monkeypatch):
    toy = Penalty("toy", (RatioDistortion(name="stretch"), Bending()))
    monkeypatch.setitem(PENALTIES, "toy", toy)
    result = train(circle_config(penalty="toy", steps=3, limit="none"), out=tmp_path, progress=False)
    assert metric_fields("toy") == ("step", "loss", "stretch", "bending", "lr", "pairs", "seconds")
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == metric_fields("toy")
    assert set(result.history[-1]) == set(metric_fields("toy"))
    assert set(result.evaluation["float32_relative_error"]) == {"total", "stretch", "bending"}


# --------------------------------------------------------------------------
# checkpoints and resume


class Interrupt(Exception):
    pass


def _metrics(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_resume_equals_uninterrupted(tmp_path):
    config = circle_config(steps=30, checkpoint_every=10)
    full = train(config, out=tmp_path / "full", progress=False)

    def stop(step, model):
        if step == 17:  # after the checkpoint at step 10: steps 11-17 are lost and redone
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, out=tmp_path / "cut", progress=False, callback=stop, probe_every=1)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 10
    resumed = train(None, out=tmp_path / "cut", resume=True, progress=False)

    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    assert _metrics(tmp_path / "full" / "metrics.csv") == _metrics(tmp_path / "cut" / "metrics.csv")
    ck_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    ck_cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert ck_full["step"] == ck_cut["step"] == 30
    for a, b in zip(ck_full["optimizer"]["state"].values(), ck_cut["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert ck_full["scheduler"] == ck_cut["scheduler"]
    assert resumed.evaluation["L_delta"] == full.evaluation["L_delta"] | {"seconds": resumed.evaluation["L_delta"]["seconds"]}
    saved = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert saved["steps"] == 30 and saved["config"] == config.to_dict()


def test_resume_refuses_another_config_and_fresh_runs_refuse_to_overwrite(tmp_path):
    config = circle_config(steps=10)
    train(config, out=tmp_path, progress=False, evaluate_final=False)
    with pytest.raises(ValueError, match="another configuration.*lr"):
        train(dataclasses.replace(config, lr=0.5), out=tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="checkpoint.pt exists.*resume"):
        train(config, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        train(config, out=tmp_path / "empty", resume=True, progress=False)


# --------------------------------------------------------------------------
# bad input


def test_unknown_manifold():
    with pytest.raises(ValueError, match="manifold must be one of.*rotating-ellipse.*got 'klein'"):
        TrainConfig(manifold="klein")


def test_default_delta_follows_the_manifold_and_is_stored():
    config = circle_config(delta=None)
    assert config.delta == default_delta(Circle(1.0)) == pytest.approx(0.05 * math.pi)
    assert config.to_dict()["delta"] == config.delta
    big = TrainConfig(manifold="sphere", manifold_params={"radius": 2.0}, latent_dim=3)
    assert big.make_manifold().radius == 2.0 and big.delta == default_delta(Sphere(2.0))


def test_manifold_params_go_through_the_registry():
    torus = TrainConfig(manifold="torus", manifold_params={"radii": [1.0, 2.0]}, latent_dim=4)
    assert torus.make_manifold().radii == (1.0, 2.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(torus.to_dict()))) == torus
    with pytest.raises(ValueError, match=r"'swissroll' does not take \['radius'\]"):
        TrainConfig(manifold="swissroll", manifold_params={"radius": 2.0})
    with pytest.raises(ValueError, match="n_pixels field"):
        TrainConfig(manifold="translating-blob", manifold_params={"n_pixels": 20})
    # n_pixels reaches the manifolds that take it; the others ignore it
    assert TrainConfig(manifold="translating-blob", n_pixels=20).make_manifold().n_pixels == 20
    assert repr(TrainConfig(manifold="circle", n_pixels=20).make_manifold()) == repr(Circle(1.0))


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_every_registered_manifold_makes_a_config(name):
    M = make_manifold(name, **({"n_pixels": 20} if "n_pixels" in manifold_parameters(name) else {}))
    config = TrainConfig(manifold=name, latent_dim=M.dim + 1, n_pixels=20, hidden=(4,), steps=1)
    assert repr(config.make_manifold()) == repr(M)
    assert 0 < config.delta < M.injectivity_radius
    model = build_encoder(config, M)
    assert model(M.sample(3, generator=torch.Generator().manual_seed(0)).float()).shape == (3, M.dim + 1)


def test_latent_dim_below_manifold_dim():
    with pytest.raises(ValueError, match="latent_dim = 1 is below the dimension m = 2"):
        TrainConfig(manifold="translating-blob", latent_dim=1)


@pytest.mark.parametrize("field, value, message", [
    ("delta", 4.0, "injectivity radius"),
    ("delta", float("nan"), "finite"),
    ("lam", -1.0, "lam must be finite and >= 0"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("lr", float("inf"), "lr must be finite"),
    ("encoder", "conv", "needs an image manifold"),
    ("batch_size", 48, "power of two"),
    ("init", "pca", None),
    ("penalty", "cubic", "penalty must be one of"),
    ("limit", "exact", "limit must be one of"),
])
def test_bad_config_values(field, value, message):
    if message is None:  # init='pca' without the linear path
        with pytest.raises(ValueError, match="needs linear_skip=True"):
            circle_config(linear_skip=False, init="pca")
        return
    with pytest.raises(ValueError, match=message):
        circle_config(**{field: value})


def test_cuda_device_is_accepted_only_where_one_exists():
    if torch.cuda.is_available():
        assert circle_config(device="cuda").device == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA device"):
            circle_config(device="cuda")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # an absurd learning rate: the first update sends the weights to ~1e30 and the loss overflows
    config = circle_config(lr=1e30, warmup=0, checkpoint_every=1, steps=20)
    with pytest.raises(TrainingDiverged, match=r"training stopped at step 2 of 20: the loss is not finite.*"
                                               r"last good checkpoint \(step 1\) is kept") as info:
        train(config, out=tmp_path, progress=False)
    assert info.value.checkpoint == str(tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_diverging_loss_stops():
    ratio = circle_config(divergence_ratio=2.0).divergence_ratio
    monitor = {"ema": None, "best": math.inf}
    check_loss(torch.tensor(1.0), monitor, ratio)
    with pytest.raises(ValueError, match="exceeds divergence_ratio = 2"):
        for _ in range(50):
            check_loss(torch.tensor(100.0), monitor, ratio)


# --------------------------------------------------------------------------
# encoders, evaluation, progress


def test_conv_encoder_on_images():
    config = TrainConfig(manifold="translating-blob", n_pixels=20, encoder="conv", channels=(4, 8), hidden=(16,),
                         steps=3, batch_size=16, warmup=1, eval_pairs=64, limit="none")
    M = config.make_manifold()
    model = build_encoder(config, M)
    assert isinstance(model, ConvEncoder)
    x = M.sample(5, generator=torch.Generator().manual_seed(0)).float()
    assert model(x).shape == (5, 2)
    result = train(config, progress=False)
    assert math.isfinite(result.evaluation["L_delta"]["total"])


def test_pca_start_keeps_unit_tangents():
    M = Circle(2.0)
    x = M.sample(256, generator=torch.Generator().manual_seed(0))
    W = pca_projection(M, x, 3)
    assert W.shape == (3, 2)
    assert torch.allclose(W[:2] @ W[:2].T, torch.eye(2, dtype=W.dtype), atol=1e-12)  # the identity, rotated
    assert torch.equal(W[2], torch.zeros(2, dtype=W.dtype))
    assert isinstance(build_encoder(circle_config(), M), MLPEncoder)


def test_evaluation_reports_float32_cost_and_L():
    config = circle_config(steps=5)
    result = train(config, progress=False)
    ev = result.evaluation
    assert ev["float32_relative_error"]["total"] <= ev["float32_roundoff_bound"]
    assert ev["L"]["method"] == "quadrature" and ev["L"]["converged"]
    mc = evaluate(result.model, dataclasses.replace(config, limit="monte-carlo", eval_pairs=2048))
    assert mc["L"]["total"] == pytest.approx(ev["L"]["total"], abs=5 * mc["L"]["stderr"] + 1e-12)


def test_progress_bar_on_stderr_only_when_asked(capsys):
    train(circle_config(steps=4), progress=True, evaluate_final=False)
    captured = capsys.readouterr()
    assert captured.out == "" and "4/4" in captured.err and "loss" in captured.err
    train(circle_config(steps=4), progress=False, evaluate_final=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------
# command line


def test_cli_train_and_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--manifold", "circle", "--latent-dim", "2", "--delta", "0.1", "--lam", "0.1", "--steps", "12",
            "--batch-size", "16", "--hidden", "8", "--checkpoint-every", "5", "--eval-pairs", "256", "--out", out,
            "--no-progress", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 12 and first["L_delta"] > 0
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert len(f.readlines()) == 13
    # resuming a finished run with its own stored config: nothing left to do, same result
    assert main(["train", "--out", out, "--resume", "--no-progress", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["L_delta"] == first["L_delta"]
    assert main(["train", "--out", out, "--resume", "--lr", "0.5", "--no-progress"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_cli_train_errors(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--manifold", "klein"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["train", "--manifold", "periodic-blob", "--latent-dim", "1", "--no-progress"]) == 2
    assert "latent_dim = 1 is below the dimension m = 2" in capsys.readouterr().err
    assert main(["train", "--manifold", "circle", "--n-pixels", "20", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'circle' does not take ['n_pixels']" in err


def test_cli_train_with_manifold_parameters_and_penalty(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--manifold", "sphere", "--radius", "2", "--latent-dim", "3", "--penalty", "ratio",
                 "--steps", "2", "--batch-size", "16", "--hidden", "4", "--eval-pairs", "64", "--limit", "none",
                 "--out", str(out), "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    stored = json.loads((out / "config.json").read_text())
    assert stored["manifold_params"] == {"radius": 2.0} and stored["penalty"] == "ratio"
    assert stored["delta"] == result["delta"] == default_delta(Sphere(2.0))


# --------------------------------------------------------------------------
# learning from samples alone (config.data)


def cloud_config(path, **kw):
    base = dict(data=str(path), dim=2, latent_dim=3, steps=12, batch_size=16, hidden=(8,), warmup=2,
                checkpoint_every=5, pool_pairs=256, eval_pairs=128, seed=1)
    return TrainConfig(**{**base, **kw})


def test_a_run_on_samples_defaults_to_ball_pairs_without_limit_and_records_delta(sphere_npy):
    config = cloud_config(sphere_npy)
    cloud = config.make_manifold()
    assert isinstance(cloud, PointCloud) and config.make_manifold() is cloud  # built once
    assert (config.manifold, config.strategy, config.antithetic, config.limit) == (None, "ball", False, "none")
    assert config.n_pixels is None  # not images
    assert config.delta == cloud.default_delta() >= 0.05 * cloud.extent()
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored["delta"] == config.delta and stored["data"] == str(sphere_npy)
    assert TrainConfig.from_dict(stored) == config
    assert cloud_config(sphere_npy, cloud={"degree": 2}).make_manifold().degree == 2


def test_a_run_on_samples_resumes_bit_for_bit_and_records_the_pool(sphere_npy, tmp_path):
    config = cloud_config(sphere_npy, reference="sphere")
    full = train(config, out=tmp_path / "full", progress=False)

    def stop(step, model):
        if step == 8:  # after the checkpoint at step 5
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, out=tmp_path / "cut", progress=False, callback=stop, probe_every=1)
    resumed = train(None, out=tmp_path / "cut", resume=True, progress=False)
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    saved = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert saved["pool"]["pairs"] == 256 and saved["pool"]["seconds"] > 0 and saved["pool"]["seed"] == pool_seed(1)
    assert saved["pool"]["fit"]["residual_median"] > 0
    ev = saved["evaluation"]
    assert "L" not in ev and ev["limit"].startswith("none")
    assert ev["L_delta"]["strategy"] == "ball" and not ev["L_delta"]["antithetic"] and ev["L_delta"]["n"] == 128
    assert ev["L_delta_reference"]["manifold"] == "Sphere(radius=1.0)" and ev["L_delta_reference"]["antithetic"]
    assert ev["L_delta"]["total"] == full.evaluation["L_delta"]["total"]
    # resuming a finished run trains nothing: no pool is computed, its record is the checkpoint's
    trainer = Trainer(config, out=tmp_path / "full", progress=False)
    again = trainer.run(resume=True, evaluate_final=False)
    assert trainer._pool_pairs is None and again.pool == full.pool


def test_the_batches_come_from_the_pool(sphere_npy):
    config = cloud_config(sphere_npy, steps=2)
    trainer = Trainer(config, progress=False)
    pool = trainer.pair_source()
    assert isinstance(pool, PairPool) and len(pool) == 256 and trainer.pair_source() is pool
    ref = config.make_manifold().pair_pool(config.delta, 256, seed=pool_seed(config.seed))
    assert torch.equal(pool.pairs.midpoint, ref.midpoint)
    batch = sample_pairs(pool, 16, config.delta, **step_sampling(config, 0))
    assert all(bool((pool.pairs.x == x).all(-1).any()) for x in batch.x)


def test_a_run_on_an_image_cloud(tmp_path):
    M = make_manifold("rotating-ellipse", n_pixels=16, sigmas=(0.12, 0.07))
    images = M.sample(400, torch.Generator().manual_seed(0)).numpy().reshape(-1, 16, 16)
    np.save(tmp_path / "ellipse.npy", images)
    config = TrainConfig(data=str(tmp_path / "ellipse.npy"), dim=1, latent_dim=2, steps=4, batch_size=16,
                         encoder="conv", channels=(2,), hidden=(8,), warmup=1, pool_pairs=128, eval_pairs=64,
                         reference="rotating-ellipse", manifold_params={"sigmas": (0.12, 0.07)})
    assert config.n_pixels == 16  # read from the images
    np.save(tmp_path / "flat.npy", images.reshape(400, 256))
    assert dataclasses.replace(config, data=str(tmp_path / "flat.npy")).n_pixels == 16
    result = train(config, out=tmp_path / "run", progress=False)
    assert isinstance(result.model, ConvEncoder) and result.pool["pairs"] == 128
    ev = result.evaluation
    assert math.isfinite(ev["L_delta"]["total"]) and math.isfinite(ev["L_delta_reference"]["total"])
    assert ev["L_delta_reference"]["manifold"] == repr(M)


def test_resuming_on_changed_samples_is_refused(sphere_npy, tmp_path):
    X = np.load(sphere_npy)
    path = tmp_path / "x.npy"
    np.save(path, X)
    config = cloud_config(path, steps=3, checkpoint_every=1)
    train(config, out=tmp_path / "run", progress=False, evaluate_final=False)
    X[0] = -X[0]
    np.save(path, X)
    forget_clouds()  # as a resume in a new process would
    with pytest.raises(ValueError, match="samples differ from those the checkpoint.*data file changed"):
        train(config, out=tmp_path / "run", resume=True, progress=False)


@pytest.mark.parametrize("change, error, match", [
    (dict(manifold="sphere"), ValueError, "manifold .* or data .*, not both.*reference"),
    (dict(dim=None), ValueError, "needs dim"),
    (dict(dim=3), ValueError, "dim must be below the ambient dimension n = 3"),
    (dict(antithetic=True), ValueError, "antithetic pairs .* need an exponential map"),
    (dict(limit="quadrature"), ValueError, "limit must be 'none'"),
    (dict(n_pixels=16), ValueError, "n_pixels = 16 does not match.*not square images"),
    (dict(manifold_params={"radius": 2.0}), ValueError, "manifold_params with data.*reference"),
    (dict(reference="torus"), ValueError, "reference FlatTorus.*R\\^4.*R\\^3"),
    (dict(cloud={"smoothing": 1.0}), ValueError, "cloud options \\['smoothing'\\] are not PointCloud options"),
    (dict(cloud={"midpoint": "mean"}), ValueError, "midpoint must be one of"),
    (dict(encoder="conv"), ValueError, "encoder 'conv' needs square images"),
    (dict(pool_pairs=1), ValueError, "pool_pairs must be an integer >= 2"),
])
def test_bad_data_configs(sphere_npy, change, error, match):
    with pytest.raises(error, match=match):
        cloud_config(sphere_npy, **change)


def test_cloud_fields_need_data():
    for change, match in ((dict(dim=2), "dim applies to a run on samples"),
                          (dict(reference="sphere"), "reference applies to a run on samples"),
                          (dict(cloud={"degree": 2}), "cloud options apply to a run on samples")):
        with pytest.raises(ValueError, match=match):
            circle_config(**change)

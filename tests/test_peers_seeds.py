"""studies/peers_seeds.py: seed 0 is the single-seed studies' run, the numbers do not depend on the
number of worker processes, and a failed fit is counted, not averaged."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from gammalimit import reproduce

study = reproduce.load("peers_seeds")
peers, neural = study.peers_study, study.neural_study


def _same(a, b) -> bool:
    """Equal numbers, wall times aside (NaN equal to NaN: compared as JSON text)."""
    return json.dumps(study.numbers(a), sort_keys=True) == json.dumps(study.numbers(b), sort_keys=True)


def test_seed_zero_reproduces_the_single_seed_studies_quick_runs():
    """Each case in its own spawned worker gives, number for number, what the sibling study's own run
    (every case in turn, in this process, on one thread) gives."""
    params = replace(study.Params.quick(), seeds=(0,), jobs=2)
    data = study.run(params)
    with reproduce.OneThread():
        single = {"peers": peers.run(params.peers), "neural_peers": neural.run(params.neural_peers)}
    for name in ("peers", "neural_peers"):
        cases = data[name]["cases"]
        assert len(cases) == len(single[name]["cases"]) >= 1
        for mine, theirs in zip(cases, single[name]["cases"]):
            assert mine["manifold"] == theirs["manifold"]
            assert _same(mine["runs"][0], theirs), (name, mine["manifold"])


def _cheap(seeds=(0, 1, 2), jobs=1):
    """Two peers cases, three cheap scikit-learn methods, no neural case."""
    q = peers.Params.quick()
    return study.Params(seeds=seeds, jobs=jobs, quick_mode=True,
                        peers=replace(q, methods=("Isomap", "LTSA", "MDS")),
                        neural_peers=replace(neural.Params.quick(), cases=()))


def test_the_numbers_do_not_depend_on_the_number_of_workers_and_seeds_differ():
    one, two = study.run(_cheap(jobs=1)), study.run(_cheap(jobs=2))
    assert _same(one["peers"], two["peers"])
    for case in one["peers"]["cases"]:
        assert len(case["runs"]) == 3
        errors = [next(r for r in run["results"] if r["method"] == "Isomap")["isometry_error"] for run in case["runs"]]
        assert len(set(errors)) == 3, errors  # each seed its own samples
        s = case["stats"]["Isomap"]["isometry_error"]
        assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(errors), rel=1e-12)
        assert s["std"] == pytest.approx(np.std(errors, ddof=1), rel=1e-12)


def _row(method, rng, failed=False):
    if failed:
        return {"method": method, "failed": "ValueError: no luck"}
    metrics = {k: float(rng.uniform()) for k, _ in study.FIELD}
    return {"method": method, "isometry_error": float(rng.uniform()), "procrustes_error": None,
            "overlap": 0.0, "fit_seconds": float(rng.uniform()), "metrics": metrics}


def _fake_case(methods, n_seeds, failing=None, seed=0):
    rng = np.random.default_rng(seed)
    runs = [{"manifold": "torus", "repr": "FlatTorus()", "case": {"latent_dim": 4, "delta": 0.3, "flat": True},
             "results": [_row(m, rng, failed=(m, i) == failing) for m in methods]} for i in range(n_seeds)]
    return {"manifold": "torus", "repr": "FlatTorus()", "case": runs[0]["case"], "methods": list(methods),
            "runs": runs, "stats": study.aggregate(runs, list(methods))}


def _fake_data(case, seeds):
    return {"quick": False, "seeds": list(seeds), "peers": {"cases": [case], "n_neighbors": 12},
            "neural_peers": {"cases": [], "n_neighbors": 10, "budget": {"steps": 1, "decoder_steps": 1}}}


def test_a_failed_fit_is_counted_not_averaged():
    methods = (study.OURS, "Isomap", "LTSA")
    case = _fake_case(methods, 4, failing=("LTSA", 2))
    st = case["stats"]["LTSA"]
    ran = [run["results"][2]["isometry_error"] for i, run in enumerate(case["runs"]) if i != 2]
    assert st["seeds"] == 4 and st["failed"] == 1 and st["failures"] == ["ValueError: no luck"]
    assert st["isometry_error"]["n"] == 3
    assert st["isometry_error"]["mean"] == pytest.approx(np.mean(ran), rel=1e-12)
    assert st["isometry_error"]["std"] == pytest.approx(np.std(ran, ddof=1), rel=1e-12)
    assert case["stats"]["Isomap"]["failed"] == 0 and case["stats"]["Isomap"]["isometry_error"]["n"] == 4
    assert case["stats"]["Isomap"]["procrustes_error"] is None  # not defined: n/a, not 0
    text = study.markdown_table(_fake_data(case, range(4)))
    assert "| LTSA | 1 (ValueError: no luck) |" in text and "over 4 seeds" in text and "ddof = 1" in text
    # the goal compares means, over the seeds each method ran
    v = study.goal(case)
    means = {m: case["stats"][m]["isometry_error"]["mean"] for m in methods}
    assert v["holds"] == (means[study.OURS] < min(means["Isomap"], means["LTSA"]))


def test_summary_flags_a_non_finite_measure_and_a_failed_fit_of_ours():
    methods = (study.OURS, "Isomap")
    case = _fake_case(methods, 3)
    rows = study.summary(_fake_data(case, range(3)))
    assert next(r for r in rows if "finite" in r["quantity"])["passed"]
    case["runs"][1]["results"][1]["metrics"]["KL_0.1"] = math.inf
    rows = study.summary(_fake_data(case, range(3)))
    assert not next(r for r in rows if "finite" in r["quantity"])["passed"]
    case = _fake_case(methods, 3, failing=(study.OURS, 0))
    rows = study.summary(_fake_data(case, range(3)))
    assert not next(r for r in rows if "finite" in r["quantity"])["passed"]


@pytest.mark.parametrize("change, name", [({"jobs": 0}, "jobs"), ({"jobs": 1.5}, "jobs"), ({"seeds": ()}, "seeds"),
                                          ({"seeds": (0, 0)}, "seeds"), ({"seeds": (-1,)}, "seeds")])
def test_bad_parameters_are_refused_before_any_work(change, name):
    with pytest.raises(ValueError, match=name):
        study.run(replace(_cheap(), **change))

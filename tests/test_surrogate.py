import numpy as np
import pytest

from surrogateshap.estimation.coalitions import indicators, sample_coalitions
from surrogateshap.estimation.surrogate import attribute

CFG = {
    "params": {"n_estimators": 300, "min_child_weight": 1},
    "grid": {"max_depth": [1, 2], "learning_rate": [0.1]},
    "cv_folds": 4,
    "bootstrap": 8,
    "ci_level": 0.9,
    "top_k": 2,
    "threads": 1,
    "seed": 0,
    "anchor_endpoints": True,
}


def _game(n, values, count=300, seed=0, interaction=0.0, paired=False):
    coalitions = sample_coalitions(n, count, "shapley_kernel", seed, paired=paired)
    x = indicators(coalitions, n, dtype=np.float64)
    y = 1.0 + x @ values + interaction * x[:, 0] * x[:, 1]
    return x, y


def test_additive_game_is_recovered():
    values = np.array([3.0, -1.0, 0.5, 0.0, 2.0, 0.0, -0.5, 1.0])
    x, y = _game(8, values)
    table, diag = attribute(x, y, [f"p{i}" for i in range(8)], CFG, seed=0)
    got = table.set_index("contributor").loc[[f"p{i}" for i in range(8)], "shapley"].to_numpy()
    assert np.abs(got - values).max() < 0.05
    assert diag["oof_r2"] > 0.95
    assert abs(diag["efficiency_gap"]) < 0.1
    assert table.iloc[0]["contributor"] == "p0" and table.iloc[0]["rank"] == 1
    assert (table["ci_low"] <= table["ci_high"]).all()
    ci = table.set_index("contributor").loc[[f"p{i}" for i in range(8)]]
    assert ((ci["ci_low"] - 0.05 <= values) & (values <= ci["ci_high"] + 0.05)).all()


def test_symmetry_and_null_player_with_interaction():
    values = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    x, y = _game(6, values, count=64, interaction=2.0)  # 64 = all coalitions
    table, _ = attribute(x, y, [f"p{i}" for i in range(6)], CFG, seed=0)
    v = table.set_index("contributor")["shapley"]
    assert v["p0"] == pytest.approx(1.0, abs=0.05) and v["p1"] == pytest.approx(1.0, abs=0.05)
    for null in ("p3", "p4", "p5"):
        assert abs(v[null]) < 0.02


def test_same_seed_same_numbers():
    x, y = _game(6, np.arange(6.0))
    a, _ = attribute(x, y, list("abcdef"), CFG, seed=1)
    b, _ = attribute(x, y, list("abcdef"), CFG, seed=1)
    assert a.equals(b)


@pytest.mark.parametrize("estimator", ["surrogate", "kernel", "banzhaf"])
def test_nan_utilities_are_refused(estimator):
    from surrogateshap.estimation.estimators import attribute as attribute_with

    x, y = _game(5, np.ones(5))
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attribute_with(estimator, x, y, list("abcde"), CFG, seed=0)


def test_anchoring_makes_efficiency_exact_and_keeps_ranks():
    values = np.array([2.0, -1.0, 0.5, 0.0, 1.0, 0.25])
    x, y = _game(6, values, count=40)
    y[
        x.sum(1) == 0
    ] = -30.0  # an empty coalition far from the rest, as the unconditional pool makes it
    raw_cfg = dict(CFG, anchor_endpoints=False)
    raw, raw_diag = attribute(x, y, list("abcdef"), raw_cfg, seed=0)
    anchored, diag = attribute(x, y, list("abcdef"), dict(CFG, anchor_endpoints=True), seed=0)
    assert abs(raw_diag["efficiency_gap"]) > 1.0  # the trees cannot isolate the single empty row
    assert anchored["shapley"].sum() == pytest.approx(
        diag["measured_grand"] - diag["measured_empty"], rel=1e-6
    )
    assert anchored["contributor"].tolist() == raw["contributor"].tolist()
    shift = (anchored["shapley"] - raw["shapley"]).to_numpy()
    assert np.allclose(shift, shift[0], atol=1e-6)


@pytest.mark.parametrize("base", ["linear", "kernel"])
def test_additive_base_learners_are_exact_on_an_additive_game_at_a_small_budget(base):
    """3n paired coalitions of an additive game: the base learner takes it all (the trees find nothing left)."""
    values = np.array([3.0, -1.0, 0.5, 0.0, 2.0, 0.0, -0.5, 1.0, 0.25, -2.0])
    x, y = _game(10, values, count=30, seed=1, paired=True)
    assert np.linalg.matrix_rank(x) == 10  # every value identifiable
    cfg = dict(CFG, grid={"max_depth": [2], "base": [base]}, bootstrap=0)
    table, diag = attribute(x, y, [f"p{i}" for i in range(10)], cfg, seed=0)
    got = table.set_index("contributor").loc[[f"p{i}" for i in range(10)], "shapley"].to_numpy()
    assert np.abs(got - values).max() < 0.02 * np.abs(values).max(), (base, got)


def test_kernel_base_without_an_endpoint_falls_back_to_ridge():
    from surrogateshap.estimation.surrogate_model import SurrogateModel

    values = np.arange(1.0, 7.0)
    x, y = _game(6, values, count=40)
    inner = x.sum(1) % 6 != 0
    model = SurrogateModel({"n_estimators": 10, "base": "kernel"}, seed=0, threads=1).fit(
        x[inner], y[inner]
    )
    assert model.coef is not None and np.allclose(model.coef, values, atol=0.05)


def test_kernel_base_is_the_kernel_solution_wherever_the_coalitions_determine_it():
    from surrogateshap.estimation import estimators
    from surrogateshap.estimation.surrogate_model import SurrogateModel

    values = np.arange(1.0, 7.0)
    x, y = _game(
        6, values, count=12, paired=True, interaction=1.5
    )  # 2n: 10 coalitions between the endpoints
    y = y + np.random.default_rng(0).normal(
        scale=0.3, size=len(y)
    )  # so that ridge and kernel differ
    model = SurrogateModel({"n_estimators": 10, "base": "kernel"}, seed=0, threads=1).fit(x, y)
    assert np.allclose(model.coef, estimators.kernel(x, y))
    few = SurrogateModel({"n_estimators": 10, "base": "kernel"}, seed=0, threads=1).fit(
        x[:6], y[:6]
    )
    ridge = SurrogateModel({"n_estimators": 10, "base": "linear"}, seed=0, threads=1).fit(
        x[:6], y[:6]
    )
    assert np.allclose(
        few.coef, ridge.coef
    )  # 4 coalitions between the endpoints for 6 players: ridge


def test_unknown_base_is_refused_by_name():
    from surrogateshap.estimation.surrogate_model import SurrogateModel

    with pytest.raises(ValueError, match="'kernal'.*none, linear, kernel"):
        SurrogateModel({"base": "kernal"}, seed=0, threads=1)


def test_size_centred_kernel_base_leaves_size_only_parts_out_of_the_values():
    """A jump from v(0) to every other coalition (the proxy game's v(0) is another model) and any
    function of |S| alone have the equal split as Shapley values: with `kernel_centre_sizes` the
    base fits them as an intercept per size, so its values are exact and its predictions
    reproduce the table; without it the jump spreads over the values."""
    from surrogateshap.estimation.surrogate_model import SurrogateModel

    n = 20
    x = indicators(sample_coalitions(n, 4 * n, "leverage", seed=0, paired=True), n, np.float64)
    linear = np.linspace(-1, 1, n)
    size = x.sum(1)
    y = x @ linear + 50.0 * (size > 0) + 0.3 * size**2 * (size < n)
    truth = linear + 50.0 / n
    params = {"n_estimators": 0, "base": "kernel", "kernel_shrink": 0.0}
    centred = SurrogateModel(dict(params, kernel_centre_sizes=True), seed=0, threads=1).fit(x, y)
    values, f_empty, f_grand = centred.shapley(n)
    assert np.allclose(values, truth, atol=1e-8)
    assert (f_empty, f_grand) == pytest.approx((y[size == 0][0], y[size == n][0]))
    assert np.allclose(centred.predict(x), y, atol=1e-8)
    plain = SurrogateModel(params, seed=0, threads=1).fit(x, y).shapley(n)[0]
    assert np.linalg.norm(plain - truth) > 0.5 * np.linalg.norm(truth)
    # through attribute, with the shrinkage chosen by held-out error and trees as a candidate
    cfg = dict(
        CFG,
        params={"min_child_weight": 1, "kernel_centre_sizes": True},
        grid={"base": ["kernel"], "n_estimators": [0, 50], "max_depth": [2]},
        bootstrap=0,
    )
    names = [f"p{i}" for i in range(n)]
    table, _ = attribute(x, y, names, cfg, seed=0)
    assert np.allclose(table.set_index("contributor").loc[names, "shapley"], truth, atol=1e-6)


def test_a_grid_point_with_no_model_is_left_out_and_a_grid_of_only_those_refused():
    from surrogateshap.estimation.selection import grid_candidates
    from surrogateshap.workflow.config import load_yaml, merge

    default = load_yaml("config/config.yaml")["surrogate"]
    # a grid with the kernel base alone as a candidate, then a user's grid merged over it (key by
    # key, as --configfile merges)
    candidate = merge(default, {"grid": {"base": ["kernel"], "n_estimators": [0, 300]}})
    user = merge(candidate, {"grid": {"base": ["none", "linear"], "max_depth": [2]}})
    points = grid_candidates(user)
    assert {(p["base"], p["n_estimators"]) for p in points} == {
        ("none", 300),
        ("linear", 0),
        ("linear", 300),
    }
    with pytest.raises(ValueError, match="n_estimators 0 with base none"):
        grid_candidates({"params": {}, "grid": {"base": ["none"], "n_estimators": [0]}})


def test_a_90_percent_interval_cuts_5_percent_from_each_tail():
    """The percentile interval at level 0.9 leaves (1 - 0.9) / 2 of the replicates on each side:
    on replicates 0..99 its ends are the 5% and 95% quantiles (an 80% interval would give 9.9
    and 89.1)."""
    from surrogateshap.estimation.surrogate import bootstrap_intervals

    boot = np.tile(np.arange(100.0)[:, None], (1, 3))
    low, high, _ = bootstrap_intervals(boot, 0.9, 1)
    assert np.allclose(low, 4.95) and np.allclose(high, 94.05)
    low, high, _ = bootstrap_intervals(boot, 0.5, 1)
    assert np.allclose(low, 24.75) and np.allclose(high, 74.25)


def test_the_values_score_overrules_the_utilities_only_beyond_the_margin(monkeypatch):
    """`select: heldout_values` keeps the family the utilities' held-out error picks unless another
    family's values score lower by more than VALUE_MARGIN standard errors: another family ahead
    by 0.57 of them (what a Fréchet proxy game's noise gave in 1 of 8 draws) does not win, one
    ahead by 3 does."""
    from surrogateshap.estimation import selection
    from surrogateshap.estimation.games import polynomial_game

    n = 6
    x = indicators(sample_coalitions(n, 40, "leverage", seed=0), n, dtype=np.float64)
    y = polynomial_game(n, seed=1).evaluate(x)
    candidates = [
        {"base": "kernel", "kernel_shrink": 0.0, "n_estimators": 0},
        {"base": "kernel", "kernel_shrink": 0.0, "n_estimators": 20, "max_depth": 2},
    ]
    by_error, _ = selection.cross_validate(x, y, candidates, 3, 0, 1)

    def crafted(ahead_by):
        def scores(x, y, splits, fold_models, controls, correct, anchor, reference=0):
            s, se = np.zeros(2), np.ones(2)
            s[1 - reference], se[reference] = -ahead_by, 0.0
            return s, se

        return scores

    for ahead_by, wins in ((0.57, False), (3.0, True)):
        monkeypatch.setattr(selection, "heldout_value_scores", crafted(ahead_by))
        chosen, _ = selection.cross_validate(x, y, candidates, 3, 0, 1, select="heldout_values")
        assert (chosen != by_error) == wins, (ahead_by, chosen, by_error)


def test_the_default_settings_recover_a_known_game_through_the_command(tmp_path):
    """config/config.yaml's surrogate section and coalition design as they stand (odd targets,
    the kernel base with trees, selection by the values' held-out error, in-sample residual
    correction, anchoring), through `surrogateshap attribute`, on a game with pairs and triples
    whose Shapley values are known, at 20n coalitions with noise of 0.05: the values within 0.1 of
    the truth (1.5% relative error seen), trees chosen (so the correction ran) and efficiency."""
    import json

    import pandas as pd

    from surrogateshap.cli import main
    from surrogateshap.estimation import games
    from surrogateshap.workflow.config import load_yaml
    from surrogateshap.workflow.io import read_table_metadata

    from .conftest import ROOT

    config = load_yaml(ROOT / "config/config.yaml")
    settings, design = config["surrogate"], config["coalitions"]
    n = 10
    game = games.polynomial_game(n, seed=0)
    chosen = sample_coalitions(
        n, 20 * n, design["sampler"], design["seed"], design["p"], paired=design["paired"]
    )
    x = indicators(chosen, n, dtype=np.float64)
    y = game.evaluate(x) + np.random.default_rng(0).normal(0, 0.05, len(x))
    names = [f"c{i}" for i in range(n)]
    pd.DataFrame({"contributor": names}).to_csv(tmp_path / "c.csv", index=False)
    members = [[names[i] for i in c] for c in chosen]
    pd.DataFrame({"members": members, "u": y}).to_parquet(tmp_path / "u.parquet")
    (tmp_path / "s.json").write_text(json.dumps(settings))
    out = tmp_path / "a.parquet"
    args = ["attribute", "--contributors", str(tmp_path / "c.csv")]
    args += ["--utilities", str(tmp_path / "u.parquet"), "--metric", "u", "--out", str(out)]
    args += ["--config", str(tmp_path / "s.json"), "--seed", str(settings["seed"])]
    assert main(args) == 0
    table = pd.read_parquet(out).set_index("contributor").loc[names]
    diagnostics = read_table_metadata(out)
    assert diagnostics["select"] == "heldout_values" and diagnostics["residual_correction"]
    assert diagnostics["params"]["n_estimators"] > 0
    assert np.abs(table["shapley"].to_numpy() - game.shapley).max() < 0.1
    measured = y[x.sum(1) == n].mean() - y[x.sum(1) == 0].mean()
    assert table["shapley"].sum() == pytest.approx(measured, abs=1e-6)
    assert (table["ci_low"] <= table["ci_high"]).all() and np.isfinite(table["ci_low"]).all()

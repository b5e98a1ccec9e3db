"""The default design (the `leverage` sampler) and the default estimator built for it."""

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from surrogateshap.cli import main
from surrogateshap.estimation import (
    estimators,
    games,
    msr,
    regression,
    selection,
    surrogate,
    surrogate_model,
)
from surrogateshap.estimation.coalitions import (
    DEFAULT_SAMPLER,
    indicators,
    leverage_pair_counts,
    sample_coalitions,
)

FULL = {"params": {"n_estimators": 300, "min_child_weight": 1}}


def _settings(**overrides):
    cfg = {
        "params": {"n_estimators": 100, "subsample": 1.0, "min_child_weight": 1},
        "grid": {"max_depth": [2, 3], "base": ["kernel"]},
        "cv_folds": 3,
        "bootstrap": 0,
        "ci_level": 0.9,
        "top_k": 3,
        "threads": 1,
        "anchor_endpoints": True,
        "odd_targets": True,
        "residual_correction": "in_sample",
    }
    cfg.update(overrides)
    return cfg


def _complement(c, n):
    return tuple(i for i in range(n) if i not in c)


def test_the_cli_draws_the_workflows_default_design():
    from surrogateshap.workflow.config import load_yaml

    from .conftest import ROOT

    assert DEFAULT_SAMPLER == load_yaml(ROOT / "config/config.yaml")["coalitions"]["sampler"]


@pytest.mark.parametrize("n, count", [(10, 40), (11, 101), (40, 200), (150, 600)])
def test_leverage_design_is_paired_distinct_and_stratified(n, count):
    drawn = sample_coalitions(n, count, "leverage", seed=3)
    assert drawn[:2] == [(), tuple(range(n))]
    assert len(drawn) == len(set(drawn)) == count - (count % 2 == 1)
    present = set(drawn)
    assert all(_complement(c, n) in present for c in drawn)
    # pairs per half-size: what leverage_pair_counts says, equal up to one where not capped
    half = Counter(min(len(c), n - len(c)) for c in drawn[2:])
    pairs = {s: k // 2 for s, k in half.items()}
    expected = leverage_pair_counts(n, (count - 2) // 2)
    assert pairs == {s: k for s, k in expected.items() if k}
    middle_free = [k for s, k in expected.items() if 2 * s != n]
    assert max(middle_free) - min(middle_free) <= 1


def test_leverage_enumerates_the_border_sizes_when_they_fit():
    n = 10
    drawn = sample_coalitions(n, 400, "leverage", seed=0)
    sizes = Counter(len(c) for c in drawn)
    assert sizes[1] == sizes[n - 1] == n  # all n coalitions of size 1 and of size n - 1
    assert sizes[2] == sizes[8] == 45  # and all of size 2: 45 <= the per-size share
    assert len(sample_coalitions(6, 1000, "leverage", seed=0)) == 2**6  # everything


def test_leverage_is_uniform_within_each_size():
    """Chi-square at fixed seeds: every coalition of size 3 of 8 players is equally likely (a
    sampler that favoured low player indices, or drew sizes by the Shapley kernel, fails)."""
    n, size = 8, 3
    counts = Counter()
    for seed in range(300):
        counts.update(c for c in sample_coalitions(n, 30, "leverage", seed=seed) if len(c) == size)
    observed = np.array([counts[c] for c in itertools.combinations(range(n), size)])
    assert observed.sum() == 300 * leverage_pair_counts(n, 14)[size]  # pairs of size 3 and 5
    assert chisquare(observed).pvalue > 1e-3
    # the middle size of an even n: each coalition of 4 of 8 equally likely as well
    middle = Counter()
    for seed in range(300):
        middle.update(c for c in sample_coalitions(n, 30, "leverage", seed=seed) if len(c) == 4)
    observed = np.array([middle[c] for c in itertools.combinations(range(n), 4)])
    assert chisquare(observed).pvalue > 1e-3


def test_leverage_sizes_are_uniform_not_kernel_weighted():
    drawn = sample_coalitions(30, 30 * 20, "leverage", seed=1)
    half = Counter(min(len(c), 30 - len(c)) for c in drawn[2:])
    observed = np.array([half[s] / (1 if 2 * s == 30 else 2) for s in range(1, 16)])
    expected = np.array([2 if 2 * s != 30 else 1 for s in range(1, 16)], float)
    expected *= observed.sum() / expected.sum()
    assert chisquare(observed, expected).pvalue > 0.5  # deterministic counts: a near-exact fit


def test_leverage_is_deterministic_and_further_rounds_are_new():
    a = sample_coalitions(20, 100, "leverage", seed=5)
    assert a == sample_coalitions(20, 100, "leverage", seed=5)
    assert a != sample_coalitions(20, 100, "leverage", seed=6)
    more = sample_coalitions(20, 80, "leverage", seed=[5, 1], taken=a)
    assert len(more) == 80 and not set(more) & set(a)
    assert all(_complement(c, 20) in set(more) for c in more)
    rest = sample_coalitions(
        5, 100, "leverage", seed=0, taken=sample_coalitions(5, 12, "leverage", 0)
    )
    assert len(rest) == 32 - 12


def test_paired_kernel_is_exact_on_pairwise_games_with_the_leverage_design():
    """The odd part of a game with terms of order <= 2 is additive, so KernelSHAP on complement
    pairs is exact there (an unpaired design is not)."""
    n = 20
    game = games.polynomial_game(n, seed=4, pairs=30, triples=0)
    x = indicators(sample_coalitions(n, 3 * n, "leverage", seed=0), n)
    assert np.allclose(estimators.kernel(x, game.evaluate(x)), game.shapley, atol=1e-8)
    unpaired = indicators(sample_coalitions(n, 3 * n, "shapley_kernel", seed=0), n)
    assert not np.allclose(
        estimators.kernel(unpaired, game.evaluate(unpaired)), game.shapley, atol=1e-3
    )


def test_default_estimator_is_exact_on_additive_games_and_efficient():
    n = 15
    names = [f"p{i}" for i in range(n)]
    x = indicators(sample_coalitions(n, 4 * n, "leverage", seed=2), n)
    additive = games.polynomial_game(n, seed=1, pairs=0, triples=0)
    table, diag = estimators.attribute("surrogate", x, additive.evaluate(x), names, _settings(), 0)
    values = table.set_index("contributor").loc[names, "shapley"].to_numpy()
    assert np.allclose(values, additive.shapley, atol=1e-4)
    game = games.polynomial_game(n, seed=1)
    y = game.evaluate(x)
    table, diag = estimators.attribute("surrogate", x, y, names, _settings(), 0)
    ends = x.sum(1)
    assert diag["residual_correction"]
    assert abs(table["shapley"].sum() - (y[ends == n][0] - y[ends == 0][0])) < 1e-8
    again, _ = estimators.attribute("surrogate", x, y, names, _settings(), 0)
    pd.testing.assert_frame_equal(table, again)


def test_stratified_msr_and_odd_targets_keep_the_shapley_values():
    n = 7
    everything = indicators(sample_coalitions(n, 2**n, "leverage", seed=0), n)
    game = games.polynomial_game(n, seed=3)
    y = np.tanh(game.evaluate(everything))
    truth = estimators.exact(everything, y)
    assert np.allclose(msr.stratified_msr(everything, y), truth, atol=1e-10)
    odd = surrogate.odd_targets(everything, y)
    assert not np.allclose(odd, y)
    assert np.allclose(estimators.exact(everything, odd), truth, atol=1e-10)
    # the level is kept: a coalition's and its complement's odd targets sum to v(empty) + v(grand)
    # (the design lists the endpoints first, then each coalition followed by its complement)
    assert np.allclose(odd[2::2] + odd[3::2], y[0] + y[1]) and np.allclose(odd[:2], y[:2])


def test_ratio_msr_is_exact_on_every_coalition_and_ignores_a_level_per_size():
    n = 7
    everything = indicators(sample_coalitions(n, 2**n, "leverage", seed=0), n)
    y = np.tanh(games.polynomial_game(n, seed=3).evaluate(everything))
    assert np.allclose(msr.ratio_msr(everything, y), estimators.exact(everything, y), atol=1e-10)
    # a residual that depends on the size alone is a symmetric game: its values are the equal
    # split, from any sample (where the Horvitz-Thompson weights turn the sample into noise)
    n = 12
    rng = np.random.default_rng(0)
    level = rng.normal(size=n + 1)
    x = indicators(sample_coalitions(n, 60, "bernoulli", seed=4), n)
    r = level[x.sum(1).astype(int)]
    equal = np.full(n, (level[n] - level[0]) / n)
    assert np.allclose(msr.ratio_msr(x, r), equal, atol=1e-12)
    assert not np.allclose(msr.stratified_msr(x, r), equal, atol=1e-3)
    # efficient on a sample too: the values sum to r(N) - r(empty)
    g = rng.normal(size=len(x))
    assert abs(msr.ratio_msr(x, g).sum() - (g[x.sum(1) == n][0] - g[x.sum(1) == 0][0])) < 1e-12


def test_pair_folds_hold_out_a_coalition_with_its_complement():
    n = 12
    x = indicators(sample_coalitions(n, 120, "leverage", seed=0), n)
    keys = {row.tobytes(): i for i, row in enumerate(x.astype(bool))}
    splits = regression.pair_folds(x, 5, seed=1)
    assert len(splits) == 5
    held = np.concatenate([test for _, test in splits])
    assert sorted(held) == sorted(set(range(len(x))) - {0, 1})  # every inner row once
    for train, test in splits:
        assert {0, 1} <= set(train.tolist())
        for i in test:
            assert keys[(~x[i].astype(bool)).tobytes()] in set(test.tolist())


def test_pair_folds_never_hold_out_a_size_the_table_holds_whole():
    n = 10
    x = indicators(sample_coalitions(n, 300, "leverage", seed=0), n)
    size = x.sum(1)
    for train, test in regression.pair_folds(x, 5, seed=0):
        assert not np.isin(size[test], [1, n - 1]).any()
        assert (np.isin(size[train], [1, n - 1])).sum() == 2 * n


def _relative_error(table, names, truth):
    values = table.set_index("contributor").loc[names, "shapley"].to_numpy()
    return float(np.linalg.norm(values - truth) / np.linalg.norm(truth))


def test_choosing_by_the_values_held_out_error_keeps_trees_off_a_voting_game(monkeypatch):
    """On a weighted-majority game the trees predict held-out utilities better than the kernel base
    alone and still give worse values (docs/estimators-benchmark.md): the utilities' held-out error
    picks them, the values' held-out error does not (here by more than its margin of one standard
    error; with a huge margin it never overrules the utilities' error)."""
    n = 20
    names = [f"p{i}" for i in range(n)]
    game = games.voting_game(n, seed=100)
    x = indicators(sample_coalitions(n, 5 * n, "leverage", seed=0), n)
    y = game.evaluate(x.astype(float))
    cfg = _settings(
        params={"n_estimators": 300, "learning_rate": 0.3, "subsample": 1.0, "min_child_weight": 1},
        grid={"max_depth": [2, 3], "n_estimators": [0, 300], "base": ["kernel"]},
        cv_folds=5,
    )
    by_error, error_diag = estimators.attribute("surrogate", x, y, names, cfg, 0)
    by_values, values_diag = estimators.attribute(
        "surrogate", x, y, names, dict(cfg, select="heldout_values"), 0
    )
    assert error_diag["params"]["n_estimators"] == 300
    assert values_diag["params"]["n_estimators"] == 0 and values_diag["select"] == "heldout_values"
    assert _relative_error(by_values, names, game.shapley) < 0.75 * _relative_error(
        by_error, names, game.shapley
    )
    assert abs(by_values["shapley"].sum() - (y[x.sum(1) == n][0] - y[x.sum(1) == 0][0])) < 1e-8
    monkeypatch.setattr(selection, "VALUE_MARGIN", 1e9)
    _, never_diag = estimators.attribute(
        "surrogate", x, y, names, dict(cfg, select="heldout_values"), 0
    )
    assert never_diag["params"] == error_diag["params"]


def test_heldout_value_scores_put_an_exact_candidate_first():
    """The kernel base alone is exact on a pairwise game's odd part; shallow trees without a base
    are not. Scored against held-out estimates of the values, the exact one comes first, whichever
    candidate is the control; with the exact one as the control its score is 0."""
    n = 12
    x = indicators(sample_coalitions(n, 6 * n, "leverage", seed=1), n)
    y = surrogate.odd_targets(x, games.polynomial_game(n, seed=2, triples=0).evaluate(x))
    exact = {"base": "kernel", "kernel_shrink": 0.0, "n_estimators": 0}
    rough = {"base": "none", "n_estimators": 30, "max_depth": 1}
    splits = regression.pair_folds(x, 4, seed=0)
    fits = [
        [surrogate_model.SurrogateModel(p, 0, 1).fit(x[train], y[train]) for train, _ in splits]
        for p in (rough, exact)
    ]
    rough_control, _ = selection.heldout_value_scores(
        x, y, splits, fits, fits[0], "in_sample", True
    )
    assert rough_control[1] < rough_control[0]
    # an exact control leaves no residual: every held-out estimate is the values themselves
    exact_control, se = selection.heldout_value_scores(
        x, y, splits, fits, fits[1], "in_sample", True, reference=1
    )
    assert exact_control[1] < 1e-12 < exact_control[0] and se[1] == 0 and np.all(se < 1e-12)


def test_msr_terms_add_up_to_the_stratified_estimate():
    rng = np.random.default_rng(0)
    n = 9
    x = indicators(sample_coalitions(n, 5 * n, "shapley_kernel", seed=0, paired=True), n)
    r = rng.normal(size=len(x))
    terms = msr.msr_terms(x, r)
    assert terms.shape == x.shape
    np.testing.assert_allclose(terms.sum(0), msr.stratified_msr(x, r), atol=1e-12)


def test_heldout_value_score_differences_have_the_standard_error_they_report():
    """Training rows fixed, the held-out rows drawn again and again: the spread of the difference
    of two candidates' scores matches the standard error the scores report. The game has an even
    part (a function of the size alone) that the models miss: a coalition and its complement carry
    the same residual, which cancels in the estimate only when the pair is one unit."""
    n = 12
    poly = games.polynomial_game(n, seed=4)

    def utility(x):
        size = x.sum(1)
        return np.tanh(poly.evaluate(x)) + 4 * size * (n - size) / n**2

    train = indicators(sample_coalitions(n, 6 * n, "leverage", seed=0), n)
    fitted = [
        surrogate_model.SurrogateModel(p, 0, 1).fit(train, utility(train))
        for p in (
            {"base": "kernel", "n_estimators": 0},
            {"base": "none", "n_estimators": 40, "max_depth": 2},
        )
    ]
    differences, errors = [], []
    for seed in range(1, 301):
        held = indicators(sample_coalitions(n, 4 * n, "leverage", seed=seed), n)
        held = held[(held.sum(1) > 0) & (held.sum(1) < n)]  # the endpoints are in training
        x = np.vstack([train, held])
        y = utility(x)
        splits = [(np.arange(len(train)), np.arange(len(train), len(x)))]
        scores, se = selection.heldout_value_scores(
            x, y, splits, [[m] for m in fitted], [fitted[0]], "none", True
        )
        differences.append(scores[1] - scores[0])
        errors.append(se[1])
    ratio = np.sqrt(np.mean(np.square(errors))) / np.std(differences)
    assert 0.8 < ratio < 1.25, ratio


def test_heldout_values_leaves_the_tuning_within_a_family_to_the_utilities_error():
    """Depths of trees on the same base are one family: the values' held-out error only chooses
    between families, so with one family both selections agree."""
    n = 12
    x = indicators(sample_coalitions(n, 8 * n, "leverage", seed=3), n)
    y = np.tanh(games.polynomial_game(n, seed=3).evaluate(x))
    names = [f"p{i}" for i in range(n)]
    cfg = _settings(grid={"max_depth": [1, 2, 3], "base": ["kernel"]})
    a, da = estimators.attribute("surrogate", x, y, names, cfg, 0)
    b, db = estimators.attribute("surrogate", x, y, names, dict(cfg, select="heldout_values"), 0)
    assert da["params"] == db["params"]
    pd.testing.assert_frame_equal(a, b)
    assert selection.model_family({"base": "kernel", "max_depth": 2}) == selection.model_family(
        {"base": "kernel", "max_depth": 3, "learning_rate": 0.1}
    )
    assert selection.model_family({"base": "kernel", "n_estimators": 0}) != selection.model_family(
        {"base": "kernel", "n_estimators": 300}
    )


def test_heldout_values_on_plain_folds_and_a_grid_without_a_kernel_base():
    """The workflow's own grid (bases none and linear, utilities fitted as they are): the control
    is a kernel base fitted apart, and the anchored values stay exactly efficient."""
    n = 8
    x = indicators(sample_coalitions(n, 10 * n, "shapley_kernel", seed=0, paired=True), n)
    y = np.tanh(games.polynomial_game(n, seed=5).evaluate(x))
    names = [f"p{i}" for i in range(n)]
    cfg = _settings(
        grid={"max_depth": [2], "base": ["none", "linear"]},
        odd_targets=False,
        residual_correction="none",
        select="heldout_values",
    )
    table, diag = estimators.attribute("surrogate", x, y, names, cfg, 0)
    assert diag["params"]["base"] in ("none", "linear") and diag["select"] == "heldout_values"
    assert table["shapley"].sum() == pytest.approx(y[x.sum(1) == n][0] - y[x.sum(1) == 0][0])


def test_the_rounds_stopping_check_fixes_the_grid_point_the_attribute_stage_picks():
    """With odd targets and the values' selection (a voting game, where they pick no trees), the
    convergence check of the coalition rounds fixes what `attribute` fits, not a choice of its own."""
    from surrogateshap.estimation.convergence import stopping_check

    n = 20
    names = [f"p{i}" for i in range(n)]
    x = indicators(sample_coalitions(n, 5 * n, "leverage", seed=0), n)
    y = games.voting_game(n, seed=100).evaluate(x.astype(float))
    cfg = _settings(
        params={"n_estimators": 300, "learning_rate": 0.3, "subsample": 1.0, "min_child_weight": 1},
        grid={"max_depth": [2, 3], "n_estimators": [0, 300], "base": ["kernel"]},
        cv_folds=5,
        select="heldout_values",
    )
    _, diag = estimators.attribute("surrogate", x, y, names, cfg, 0)
    check = stopping_check(x, {"vote": y}, names, cfg, seed=0)
    assert check["metrics"]["vote"]["params"] == diag["params"]
    assert diag["params"]["n_estimators"] == 0


def test_unknown_selection_and_cross_fit_with_heldout_values_are_refused():
    n = 10
    x = indicators(sample_coalitions(n, 5 * n, "leverage", seed=0), n)
    y = games.polynomial_game(n, seed=0).evaluate(x)
    names = [f"p{i}" for i in range(n)]
    with pytest.raises(ValueError, match="surrogate.select 'best'"):
        estimators.attribute("surrogate", x, y, names, _settings(select="best"), 0)
    with pytest.raises(ValueError, match="residual_correction none or in_sample"):
        estimators.attribute(
            "surrogate",
            x,
            y,
            names,
            _settings(select="heldout_values", residual_correction="cross_fit"),
            0,
        )


def test_cli_writes_the_default_design_and_attributes_with_the_default_estimator(tmp_path):
    names = [f"c{i}" for i in range(8)]
    pd.DataFrame({"contributor": names}).to_csv(tmp_path / "c.csv", index=False)
    out = tmp_path / "u.parquet"
    args = ["coalitions", "--contributors", str(tmp_path / "c.csv"), "--count", "40"]
    assert main(args + ["--seed", "3", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    expected = sample_coalitions(8, 40, DEFAULT_SAMPLER, 3, paired=True)
    assert [tuple(names.index(m) for m in c) for c in table["members"]] == expected
    other = tmp_path / "v.parquet"
    assert main(args + ["--seed", "3", "--out", str(other), "--sampler", "uniform_size"]) == 0
    assert (
        pd.read_parquet(other)["members"].map(tuple).tolist()
        != table["members"].map(tuple).tolist()
    )
    weights = np.arange(1.0, 9.0)
    table["u"] = [float(sum(weights[names.index(m)] for m in c)) for c in table["members"]]
    table.to_parquet(out)
    values = tmp_path / "a.parquet"
    attribute = ["attribute", "--contributors", str(tmp_path / "c.csv"), "--utilities", str(out)]
    assert main(attribute + ["--metric", "u", "--out", str(values)]) == 0
    result = pd.read_parquet(values).set_index("contributor").loc[names, "shapley"]
    assert np.allclose(result, weights, atol=1e-3)
    from surrogateshap.workflow.io import read_table_metadata

    assert read_table_metadata(values)["estimator"] == estimators.DEFAULT_ESTIMATOR

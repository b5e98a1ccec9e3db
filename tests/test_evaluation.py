import numpy as np
import pandas as pd
import pytest

from surrogateshap.estimation import games
from surrogateshap.evaluation import scores as evaluation
from surrogateshap.evaluation import tables as evaluation_tables


def test_lds_hand_computed():
    # draw 0: predictions 1, 2, 3 against 10, 30, 20 -> ranks (1, 2, 3) vs (1, 3, 2): rho = 1 - 6*2/(3*8) = 0.5
    # draw 1: predictions 3, 2, 1 against 1, 2, 3 -> rho = -1
    predicted = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
    actual = np.array([10.0, 30.0, 20.0, 1.0, 2.0, 3.0])
    draws = np.array([0, 0, 0, 1, 1, 1])
    score = evaluation.lds(predicted, actual, draws)
    assert score["per_draw"] == {0: pytest.approx(0.5), 1: pytest.approx(-1.0)}
    assert score["lds_mean"] == pytest.approx(-0.25)
    assert score["lds_std"] == pytest.approx(np.std([0.5, -1.0], ddof=1))


def test_lds_of_a_constant_draw_is_nan_and_left_out_of_the_mean():
    score = evaluation.lds(
        np.array([1.0, 2.0, 1.0, 2.0]), np.array([5.0, 5.0, 1.0, 2.0]), np.array([0, 0, 1, 1])
    )
    assert np.isnan(score["per_draw"][0]) and score["lds_mean"] == pytest.approx(1.0)


def test_additive_prediction_is_v_empty_plus_members_values():
    x = np.array([[1, 0, 1], [0, 0, 0]])
    assert evaluation.predict(x, 2.0, np.array([1.0, 10.0, 100.0])).tolist() == [103.0, 2.0]


def test_second_order_prediction_is_exact_on_a_pairwise_game():
    game = games.polynomial_game(6, seed=4, pairs=8, triples=0)
    x = np.array([[m >> i & 1 for i in range(6)] for m in range(64)], dtype=float)
    interactions = np.zeros((6, 6))
    for (i, j), value in game.interactions.items():
        interactions[i, j] = interactions[j, i] = value
    v = game.evaluate(x)
    assert np.allclose(evaluation.predict(x, v[0], game.shapley, interactions), v)
    # the additive prediction is not exact on this game: the interaction terms carry information
    assert not np.allclose(evaluation.predict(x, v[0], game.shapley), v)


def test_coalition_items_are_exactly_the_members_items():
    items = pd.Series(["a", "b", "c", "a", "c", "b"])
    mask = evaluation.coalition_items(items, ["a", "b", "c"], (0, 2))
    assert mask.tolist() == [True, False, True, True, True, False]
    assert not evaluation.coalition_items(items, ["a", "b", "c"], ()).any()


def test_heldout_coalitions_are_seeded_and_include_the_endpoints():
    first = evaluation.heldout_coalitions(10, 5, 0.5, [0, 1])
    again = evaluation.heldout_coalitions(10, 5, 0.5, [0, 1])
    assert first.equals(again)
    assert first["members_index"].iloc[0] == [] and first["members_index"].iloc[1] == list(
        range(10)
    )
    assert (
        (first["draw"] == -1).sum() == 2
        and (first["draw"] == 0).sum() == 5
        and (first["draw"] == 1).sum() == 5
    )
    drawn = first[first["draw"] == 0]["members_index"].map(tuple)
    assert drawn.is_unique and drawn.map(lambda m: 0 < len(m) < 10).all()
    other = evaluation.heldout_coalitions(10, 5, 0.5, [2])
    assert other[other["draw"] == 2]["members_index"].tolist() != drawn.map(list).tolist()


def test_removal_coalitions_remove_top_and_bottom_k():
    table = evaluation.removal_coalitions({("m", "fd"): [3, 1, 0, 2]}, 4, [1, 2])
    rows = {(r.k, r.side): (r.removed_index, r.members_index) for r in table.itertuples()}
    assert rows[(1, "top")] == ([3], [0, 1, 2])
    assert rows[(2, "top")] == ([1, 3], [0, 2])
    assert rows[(2, "bottom")] == ([0, 2], [1, 3])


def test_similarity_values_match_brute_force():
    rng = np.random.default_rng(0)
    generated, training = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    owner = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    cos = unit(generated) @ unit(training).T
    want_mean = np.array([cos[:, owner == c].mean() for c in range(3)])
    want_max = np.array([cos[:, owner == c].max(1).mean() for c in range(3)])
    want_mean, want_max = (
        want_mean - want_mean.mean(),
        want_max - want_max.mean(),
    )  # centred across contributors
    assert np.allclose(
        evaluation.similarity_values(generated, training, owner, 3, "mean"), want_mean
    )
    assert np.allclose(
        evaluation.similarity_values(generated, training, owner, 3, "max", chunk=3), want_max
    )


def test_placement_finds_the_planted_group_at_its_end():
    values = pd.DataFrame(
        {
            "method": ["good"] * 4 + ["bad"] * 4,
            "metric": ["fd"] * 8,
            "contributor": ["a", "b", "c", "d"] * 2,
            "rank": [2, 1, 3, 4, 4, 1, 2, 3],
        }
    )
    expected = [
        {"contributor": "a", "effect": "noise", "metric": "fd", "side": "top"},
        {"contributor": "b", "effect": "blur", "metric": "fd", "side": "top"},
    ]
    table = evaluation.placement_table(values, expected)
    found = {(r.method, r.contributor): r.found for r in table.itertuples()}
    assert found == {
        ("good", "a"): True,
        ("good", "b"): True,
        ("bad", "a"): False,
        ("bad", "b"): True,
    }


def test_a_tie_is_found_only_if_its_last_place_is_within_reach():
    """A constant utility ties everyone at rank 1: no planted contributor is found at either end.
    A tie of two at the top is within a top 2, not a top 1."""
    values = pd.DataFrame(
        {
            "method": ["constant"] * 4 + ["pair"] * 4,
            "metric": ["m"] * 8,
            "contributor": ["a", "b", "c", "d"] * 2,
            "rank": [1, 1, 1, 1, 1, 1, 3, 4],
        }
    )
    top = {"contributor": "a", "effect": "marker", "metric": "m", "side": "top"}
    bottom = {"contributor": "d", "effect": "near_duplicates", "metric": "m", "side": "bottom"}
    table = evaluation.placement_table(values, [top, bottom]).set_index(["method", "contributor"])
    assert not table.loc[("constant", "a"), "found"] and not table.loc[("constant", "d"), "found"]
    assert not table.loc[("pair", "a"), "found"] and table.loc[("pair", "d"), "found"]
    wider = evaluation.placement_table(values, [dict(top, within=2)]).set_index("method")
    assert wider.loc["pair", "found"] and not wider.loc["constant", "found"]


def test_expected_placements_from_the_planted_config():
    planted = [
        {"contributor": "x", "effect": "noise"},
        {"contributor": "y", "effect": "marker"},
        {"contributor": "gone", "effect": "blur"},
    ]
    out = evaluation.expected_placements(planted, ["x", "y"], ["frechet_distance", "marker_rate"])
    assert [(e["contributor"], e["metric"]) for e in out] == [
        ("x", "frechet_distance"),
        ("y", "marker_rate"),
    ]


def test_lds_intervals_and_paired_difference_hand_computed():
    # 4 coalitions; the reference method ranks them 1 2 4 3 (rho 0.8), the other 4 1 2 3 (rho -0.2)
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    predictions = {
        "surrogate": np.array([1.0, 2.0, 4.0, 3.0]),
        "other": np.array([4.0, 1.0, 2.0, 3.0]),
    }
    indices = np.array(
        [
            [0, 1, 2, 3],  # the sample itself: 0.8 and -0.2, difference 1
            [0, 0, 0, 0],  # constant: no correlation, left out of every interval
            [
                2,
                3,
                2,
                3,
            ],  # actual 3 4 3 4: surrogate 4 3 4 3 -> -1, other 2 3 2 3 -> 1, difference -2
            [0, 1, 3, 3],  # actual 1 2 4 4: surrogate 1 2 3 3 -> 1, other 4 1 3 3 -> -1/3, diff 4/3
        ]
    )
    # level 0.5: the 25% and 75% quantiles of three draws x0 <= x1 <= x2 are (x0+x1)/2, (x1+x2)/2
    table = evaluation.lds_intervals(predictions, actual, indices, 0.5, "surrogate")
    table = table.set_index("method")
    assert table.loc["surrogate", "lds"] == pytest.approx(0.8)
    assert table.loc["other", "lds"] == pytest.approx(-0.2)
    assert (table.loc["surrogate", "lds_low"], table.loc["surrogate", "lds_high"]) == (
        pytest.approx(-0.1),
        pytest.approx(0.9),
    )
    assert (table.loc["other", "lds_low"], table.loc["other", "lds_high"]) == (
        pytest.approx((-1 / 3 - 0.2) / 2),
        pytest.approx(0.4),
    )
    assert table.loc["other", "vs_reference"] == pytest.approx(1.0)
    assert (table.loc["other", "vs_reference_low"], table.loc["other", "vs_reference_high"]) == (
        pytest.approx(-0.5),
        pytest.approx(7 / 6),
    )
    assert table.loc["surrogate", "vs_reference"] == 0 and (table["coalitions"] == 4).all()


def test_bootstrap_indices_are_seeded_rows_of_coalitions():
    first = evaluation.bootstrap_indices(5, 7, seed=3)
    assert first.shape == (7, 5) and first.min() >= 0 and first.max() < 5
    assert (first == evaluation.bootstrap_indices(5, 7, seed=3)).all()
    assert (first != evaluation.bootstrap_indices(5, 7, seed=4)).any()


def test_noise_ceiling_is_spearman_brown_corrected_split_half():
    # replicates 1 2 3 4 and 1 3 2 4: rho = 1 - 6 * 2 / (4 * 15) = 0.8 -> 2 * 0.8 / 1.8
    two = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 2.0], [4.0, 4.0]])
    assert evaluation.noise_ceiling(two) == pytest.approx(1.6 / 1.8)
    # four replicates: the mean of replicates 0 and 2 (1 2 3 4) against that of 1 and 3
    # (1 3 2 5): rho 0.8 again, although replicates 0 and 1 alone are perfectly opposed
    four = np.array([[1, 4, 1, -2], [2, 3, 2, 3], [3, 2, 3, 2], [4, 1, 4, 9]], dtype=float)
    assert evaluation.noise_ceiling(four) == pytest.approx(1.6 / 1.8)
    assert np.isnan(evaluation.noise_ceiling(two[:, :1]))  # one replicate: nothing to split
    # halves that disagree: no reliable ranking (a Spearman-Brown "correction" of rho = -0.8
    # would give -8), while the split-half correlation itself is kept
    opposed = np.column_stack([two[:, 0], two[::-1, 1]])
    assert evaluation.split_half(opposed) == pytest.approx(-0.8)
    assert evaluation.noise_ceiling(opposed) == 0.0


def test_doc_tables_go_between_the_markers_or_are_refused():
    text = "a\n<!-- evaluation-tables:begin -->\nold\n<!-- evaluation-tables:end -->\nb"
    out = evaluation_tables.replace_between_markers(text, "new")
    assert out == "a\n<!-- evaluation-tables:begin -->\nnew\n<!-- evaluation-tables:end -->\nb"
    with pytest.raises(ValueError, match="evaluation-tables:begin"):
        evaluation_tables.replace_between_markers("no markers", "new")


def test_a_90_percent_lds_interval_cuts_5_percent_from_each_tail():
    """(1 - level) / 2 on each side: on draws 0..99 the 90% interval is the 5% and 95% quantiles
    (an 80% interval would give 9.9 and 89.1); a non-finite draw is left out."""
    draws = np.append(np.arange(100.0), np.nan)
    assert evaluation._interval(draws, 0.9) == pytest.approx((4.95, 94.05))
    assert evaluation._interval(draws, 0.5) == pytest.approx((24.75, 74.25))


@pytest.mark.parametrize("alpha", [0.2, 0.8])
def test_heldout_coalitions_keep_each_contributor_with_probability_alpha(alpha):
    """4,000 Bernoulli(alpha) draws: the share kept is within 5 standard errors (0.032) of alpha,
    far from 1 - alpha. (Conditioning on 0 < |S| < n and distinctness moves it by < 0.001 at n=20.)"""
    n, per_seed = 20, 100
    table = evaluation.heldout_coalitions(n, per_seed, alpha, [0, 1])
    drawn = table[table["draw"] >= 0]["members_index"]
    kept = drawn.map(len).sum() / (len(drawn) * n)
    bound = 5 * np.sqrt(alpha * (1 - alpha) / (len(drawn) * n))
    assert abs(kept - alpha) < bound, (kept, alpha, bound)


def test_placement_at_the_bottom_counts_exactly_the_last_k_places():
    """Of 5 contributors, `bottom 1` is rank 5 only and `bottom 2` ranks 4 and 5; one place
    further from the end is not found (and likewise at the top)."""
    contributors = ["a", "b", "c", "d", "e"]
    values = pd.DataFrame(
        {
            "method": ["m"] * 5,
            "metric": ["fd"] * 5,
            "contributor": contributors,
            "rank": [1, 2, 3, 4, 5],
        }
    )

    def found(side, within):
        expected = [
            {"contributor": c, "effect": "x", "metric": "fd", "side": side, "within": within}
            for c in contributors
        ]
        table = evaluation.placement_table(values, expected)
        return table.set_index("contributor")["found"].to_dict()

    assert found("bottom", 1) == {"a": False, "b": False, "c": False, "d": False, "e": True}
    assert found("bottom", 2) == {"a": False, "b": False, "c": False, "d": True, "e": True}
    assert found("top", 1) == {"a": True, "b": False, "c": False, "d": False, "e": False}
    assert found("top", 2) == {"a": True, "b": True, "c": False, "d": False, "e": False}


def test_lds_given_size_is_the_partial_rank_correlation():
    """Checked against the textbook formula on ranks: r_ab.s = (r_ab - r_as r_bs) /
    sqrt((1 - r_as^2)(1 - r_bs^2)); a prediction of the size alone has no part left."""
    from scipy.stats import pearsonr, rankdata

    from surrogateshap.evaluation.scores import spearman_given_size

    rng = np.random.default_rng(3)
    x = (rng.random((40, 12)) < 0.5).astype(float)
    sizes = x.sum(1)
    phi = rng.normal(size=12)
    actual = 2 * sizes + x @ phi + rng.normal(0, 0.5, 40)
    predicted = x @ (phi + rng.normal(0, 0.5, 12))
    a, b, s = rankdata(predicted), rankdata(actual), rankdata(sizes)
    r_ab, r_as, r_bs = pearsonr(a, b)[0], pearsonr(a, s)[0], pearsonr(b, s)[0]
    expected = (r_ab - r_as * r_bs) / np.sqrt((1 - r_as**2) * (1 - r_bs**2))
    assert spearman_given_size(predicted, actual, sizes) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(spearman_given_size(3 * sizes, actual, sizes))
    assert evaluation.spearman(sizes, actual) > 0.5  # the size alone has an LDS ...
    # ... and the contributor-specific part is what is left given size
    assert spearman_given_size(x @ phi, actual, sizes) > 0.8


def test_chance_level_is_the_95th_percentile_of_random_values():
    """Brute force with scipy's Spearman over the same seeded draws; the random values' LDS
    rises with the size trend of the utility (their sums are not 0), their score given size
    does not."""
    from scipy.stats import spearmanr

    from surrogateshap.evaluation.scores import CHANCE_DRAWS, chance_levels
    from surrogateshap.proxy.game import _rng

    rng = np.random.default_rng(4)
    x = (rng.random((30, 10)) < 0.5).astype(float)
    actual = 5 * x.sum(1) + rng.normal(0, 0.3, 30)
    levels = chance_levels(x, actual, seed=7)
    values = _rng(7, "chance").standard_normal((CHANCE_DRAWS, 10))
    scores = [spearmanr(x @ v, actual).statistic for v in values]
    assert levels["chance_p95"] == pytest.approx(np.quantile(scores, 0.95), abs=1e-9)
    assert levels["chance_mean"] == pytest.approx(np.mean(scores), abs=1e-9)
    assert levels == chance_levels(x, actual, seed=7)
    assert levels["chance_p95"] > 0.5 > levels["chance_given_size_p95"]

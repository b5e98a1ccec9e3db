"""The surrogate's intervals: their coverage of known Shapley values on a bank of games, the
normal quantile they are drawn with, and a design too small for one.

The coverage test runs config/config.yaml's surrogate settings and coalition design on games
whose values are exact (pairwise and triple terms, a weighted vote, a Fréchet-like game, an
additive game), with independent noise on the utilities as generated images give. Its bounds are
binomial: under 90% coverage the count of (game, contributor) pairs inside their interval is
Binomial(N, 0.9) if the pairs were independent; the test takes the 0.5% and 99.5% quantiles of
that law with N halved (the pairs of one game share its draw of coalitions).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from surrogateshap.estimation import games
from surrogateshap.estimation.coalitions import indicators, sample_coalitions
from surrogateshap.estimation.surrogate import attribute, normal_intervals
from surrogateshap.workflow.config import load_yaml

from .conftest import ROOT

CONFIG = load_yaml(ROOT / "config/config.yaml")
BANK = [
    ("pairs and triples", lambda seed: games.polynomial_game(8, seed)),
    ("additive", lambda seed: games.polynomial_game(8, seed, pairs=0, triples=0)),
    ("vote", lambda seed: games.voting_game(10, seed)),
    ("frechet", lambda seed: games.gaussian_fd_game(8, seed)),
]


def _inside(game, multiplier: float, noise: float, seed: int) -> np.ndarray:
    """Per contributor: is the exact value inside the default settings' interval?"""
    n = game.n
    design = CONFIG["coalitions"]
    chosen = sample_coalitions(
        n, int(multiplier * n), design["sampler"], seed, design["p"], design["paired"]
    )
    x = indicators(chosen, n)
    y = game.evaluate(x)
    spread = noise * float(np.std(game.shapley)) * np.sqrt(n)
    y = y + np.random.default_rng(seed + 1000).normal(0.0, spread, len(y))
    names = [f"c{i}" for i in range(n)]
    table, diagnostics = attribute(x, y, names, dict(CONFIG["surrogate"], threads=1), seed)
    table = table.set_index("contributor").loc[names]
    assert diagnostics["interval"].startswith("normal")
    low, high = table["ci_low"].to_numpy(), table["ci_high"].to_numpy()
    assert ((low <= table["shapley"]) & (table["shapley"] <= high)).all()
    tol = 1e-9 * (1 + np.abs(game.shapley))  # an exact fit: an interval of width 0
    return (low - tol <= game.shapley) & (game.shapley <= high + tol)


def test_the_90_percent_intervals_cover_known_values_nine_times_in_ten():
    """Each family of the bank, 4 games each at 5n coalitions with utility noise: the pooled
    count inside within the binomial bounds of 90% coverage (about 0.82 to 0.96 here), and no
    family below 0.75. Percentile intervals of the refitted surrogate alone covered 0.5 to 0.8."""
    inside = {name: [] for name, _ in BANK}
    for name, make in BANK:
        for seed in range(4):
            inside[name].append(_inside(make(seed), 5, 0.1, seed))
    pooled = np.concatenate([np.concatenate(v) for v in inside.values()])
    trials = len(pooled) // 2
    low, high = binom.ppf([0.005, 0.995], trials, 0.9) / trials
    per_family = {name: float(np.concatenate(v).mean()) for name, v in inside.items()}
    assert low <= pooled.mean() <= high, (pooled.mean(), (low, high), per_family)
    assert min(per_family.values()) >= 0.75, per_family


def test_the_interval_is_the_normal_quantile_at_the_level():
    """At level 0.9 the interval is the value -/+ 1.645 standard errors (5% in each tail; with
    1 - level in each tail it would be 1.282), at 0.5 -/+ 0.674."""
    values, spread = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    low, high = normal_intervals(values, spread, 0.9)
    assert np.allclose(high - values, 1.6449 * spread, atol=1e-4)
    assert np.allclose(values - low, 1.6449 * spread, atol=1e-4)
    low, high = normal_intervals(values, spread, 0.5)
    assert np.allclose(high - values, 0.6745 * spread, atol=1e-4)


@pytest.mark.parametrize("count", [6, 8])
def test_a_design_of_about_n_coalitions_gives_no_interval_and_says_why(count):
    """8 contributors, 6 or 8 coalitions in all (4 or 6 between the endpoints): no interval is
    printed and the diagnostics say why."""
    n = 8
    x = indicators(sample_coalitions(n, count, "leverage", 0), n)
    y = games.polynomial_game(n, 0).evaluate(x)
    table, diagnostics = attribute(
        x, y, [f"c{i}" for i in range(n)], dict(CONFIG["surrogate"], threads=1), 0
    )
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()
    assert diagnostics["interval"].startswith("no interval:")
    assert "coalitions between the endpoints for 8 contributors" in diagnostics["interval"]


def test_the_corrections_standard_error_matches_its_spread_over_draws():
    """`ratio_msr_se` on one draw of coalitions against the spread of `ratio_msr` over 200 draws
    of the default design (a game with pairs and triples, n = 10, 50 coalitions): the root mean
    square of the standard errors within 25% of the spread for every player (0.85 to 1.0 of it
    seen); every coalition of the game in the table: 0 (nothing left to draw)."""
    from surrogateshap.estimation.msr import ratio_msr, ratio_msr_se

    n = 10
    game = games.polynomial_game(n, 3)
    estimates, errors = [], []
    for seed in range(200):
        x = indicators(sample_coalitions(n, 50, "leverage", seed), n)
        y = game.evaluate(x)
        estimates.append(ratio_msr(x, y))
        errors.append(ratio_msr_se(x, y))
    ratio = np.std(estimates, axis=0) / np.sqrt(np.mean(np.square(errors), axis=0))
    assert (np.abs(ratio - 1) < 0.25).all(), ratio
    everything = indicators(sample_coalitions(6, 2**6, "leverage", 0), 6)
    assert np.allclose(
        ratio_msr_se(everything, games.polynomial_game(6, 0).evaluate(everything)), 0
    )

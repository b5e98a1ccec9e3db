import numpy as np
import pandas as pd
import pytest
from scipy import stats

from surrogateshap.estimation.coalitions import indicator_matrix, indicators, sample_coalitions


@pytest.mark.parametrize("sampler", ["shapley_kernel", "uniform_size", "bernoulli"])
def test_samplers_include_empty_and_grand_and_are_deterministic(sampler):
    a = sample_coalitions(12, 100, sampler, seed=5)
    assert a[0] == () and a[1] == tuple(range(12))
    assert len(set(a)) == len(a) == 100
    assert a == sample_coalitions(12, 100, sampler, seed=5)
    assert a != sample_coalitions(12, 100, sampler, seed=6)


def test_small_games_are_enumerated():
    assert len(sample_coalitions(4, 1000, "shapley_kernel", 0)) == 16


def test_unknown_contributor_in_coalition_table_is_named():
    with pytest.raises(ValueError, match="'mallory'"):
        indicator_matrix(pd.Series([["a"], ["a", "mallory"]]), ["a", "b"], source="coalitions.csv")


def test_repeated_member_is_named():
    with pytest.raises(ValueError, match="row 0 repeats"):
        indicator_matrix(pd.Series([["a", "a"]]), ["a", "b"])


@pytest.mark.parametrize("sampler", ["shapley_kernel", "uniform_size", "bernoulli"])
def test_paired_sampling_adds_each_coalition_with_its_complement(sampler):
    n = 12
    drawn = sample_coalitions(n, 100, sampler, seed=5, paired=True)
    assert drawn[:2] == [(), tuple(range(n))] and len(set(drawn)) == len(drawn) == 100
    assert drawn == sample_coalitions(n, 100, sampler, seed=5, paired=True)
    present = set(drawn)
    complements = [tuple(i for i in range(n) if i not in c) in present for c in drawn]
    assert sum(complements) >= 98  # all but, at most, the last pair cut by the count


def test_a_further_round_draws_only_new_coalitions():
    first = sample_coalitions(10, 60, "uniform_size", seed=1, paired=True)
    more = sample_coalitions(10, 50, "uniform_size", seed=[1, 1], paired=True, taken=first)
    assert len(more) == 50 and not set(more) & set(first) and () not in more
    assert more == sample_coalitions(10, 50, "uniform_size", seed=[1, 1], paired=True, taken=first)
    rest = sample_coalitions(
        4, 100, "shapley_kernel", seed=0, taken=sample_coalitions(4, 10, "shapley_kernel", 0)
    )
    assert len(rest) == 6  # the 16 coalitions of 4 players, less the 10 taken


# ------------------------------------------------------------------ the samplers' distributions
# Each sampler's size law as documented (coalitions.sample_coalitions); checked by name, so a
# sampler that draws from another law fails. n is large enough that the distinctness filter
# barely distorts sizes 3..n-3 (at most a few repeats among thousands of subsets of each size);
# the sizes nearer the ends, with few distinct subsets, are left out and the rest renormalised.
N_PLAYERS, DRAWS, P = 40, 3000, 0.3


def _size_law(sampler: str, n: int) -> np.ndarray:
    k = np.arange(n + 1, dtype=float)
    if sampler == "shapley_kernel":
        law = np.where((k > 0) & (k < n), (n - 1) / np.maximum(k * (n - k), 1), 0.0)
    elif sampler == "uniform_size":
        law = np.where((k > 0) & (k < n), 1.0, 0.0)
    else:
        law = stats.binom.pmf(k, n, P)
    return law / law.sum()


def _size_chi_square(sizes: np.ndarray, law: np.ndarray, low: int, high: int) -> float:
    """p-value of the sizes low..high against `law` restricted there; cells with fewer than 5
    expected draws are merged into their neighbour."""
    keep = (sizes >= low) & (sizes <= high)
    observed = np.bincount(sizes[keep] - low, minlength=high - low + 1).astype(float)
    expected = law[low : high + 1] / law[low : high + 1].sum() * keep.sum()
    obs, exp, o, e = [], [], 0.0, 0.0
    for a, b in zip(observed, expected):
        o, e = o + a, e + b
        if e >= 5:
            obs.append(o), exp.append(e)
            o, e = 0.0, 0.0
    obs[-1] += o
    exp[-1] += e
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("sampler", ["shapley_kernel", "uniform_size", "bernoulli"])
def test_sampler_size_distribution(sampler):
    """Chi-square of the drawn sizes against the sampler's own law (p > 0.001 at a fixed seed)
    and against the other samplers' laws (p < 1e-6: the test can tell them apart)."""
    n = N_PLAYERS
    drawn = sample_coalitions(n, DRAWS, sampler, seed=11, p=P)[2:]
    sizes = np.array([len(c) for c in drawn])
    low, high = 3, n - 3
    if sampler == "bernoulli":  # where Binomial(40, 0.3) has mass
        low, high = 4, 20
    assert _size_chi_square(sizes, _size_law(sampler, n), low, high) > 1e-3
    for other in {"shapley_kernel", "uniform_size", "bernoulli"} - {sampler}:
        assert _size_chi_square(sizes, _size_law(other, n), low, high) < 1e-6, other


@pytest.mark.parametrize("sampler", ["shapley_kernel", "uniform_size", "bernoulli"])
def test_sampler_members_are_uniform_given_the_size(sampler):
    """Every player is equally likely to be in a drawn coalition (a uniform subset of the size,
    or each player independently): chi-square of the players' counts; for bernoulli, the mean
    share of members is p."""
    n = N_PLAYERS
    drawn = sample_coalitions(n, DRAWS, sampler, seed=12, p=P)[2:]
    counts = indicators(drawn, n).sum(0)
    assert stats.chisquare(counts).pvalue > 1e-3
    if sampler == "bernoulli":
        share = counts.sum() / (len(drawn) * n)
        assert abs(share - P) < 4 * np.sqrt(P * (1 - P) / (len(drawn) * n)), share

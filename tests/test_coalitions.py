import pandas as pd
import pytest

from surrogateshap.coalitions import indicator_matrix, sample_coalitions


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

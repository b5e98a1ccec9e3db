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

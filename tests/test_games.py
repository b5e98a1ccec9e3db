import numpy as np
import pytest

from surrogateshap.estimation import estimators, games


def _all(n):
    return np.array([[m >> i & 1 for i in range(n)] for m in range(2**n)], dtype=float)


@pytest.mark.parametrize(
    "make", [lambda: games.polynomial_game(8, seed=1), lambda: games.voting_game(8, seed=2)]
)
def test_closed_forms_match_enumeration(make):
    game = make()
    x = _all(game.n)
    assert np.allclose(estimators.exact(x, game.evaluate(x)), game.shapley, atol=1e-10)


def test_polynomial_banzhaf_matches_enumeration():
    game = games.polynomial_game(7, seed=3)
    x = _all(7)
    assert np.allclose(estimators.banzhaf(x, game.evaluate(x)), game.banzhaf)


def test_voting_game_scales_and_is_efficient():
    game = games.voting_game(150, seed=0)
    assert game.shapley.sum() == pytest.approx(1.0)  # v(N) - v(empty) = 1
    assert (game.shapley >= 0).all()


def test_gaussian_fd_game_is_efficient():
    game = games.gaussian_fd_game(6, seed=0)
    ends = game.evaluate(np.array([np.zeros(6), np.ones(6)]))
    assert game.shapley.sum() == pytest.approx(ends[1] - ends[0])

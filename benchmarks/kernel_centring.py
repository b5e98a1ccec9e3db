"""KernelSHAP with and without size centring (`estimators.kernel(..., centre_sizes=True)`), side by
side on the same coalitions, on games with exact Shapley values:

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/kernel_centring.py \\
        [--games jump:20 poly:40 tanh:14 fd:12 vote:20] [--multipliers 2 4 10 20] [--seeds 5]

Coalitions: the workflow's default sampler (paired Shapley-kernel draws), multiplier x n of them.
Games: those of benchmarks/estimators.py, and `jump`: an additive game plus a jump of 50 from v(0)
to every other coalition, the structure of a proxy game whose v(0) is another model (the
unconditional one) and lies far from every contributor's utility. Cells: mean relative L2 error
± its standard deviation over the seeds (game seed s, sampling seed s).
"""

from __future__ import annotations

import argparse

import numpy as np
from estimators import GAMES  # benchmarks/estimators.py

from surrogateshap.estimation import estimators, games
from surrogateshap.estimation.coalitions import DEFAULT_SAMPLER, indicators, sample_coalitions

JUMP = 50.0


def jump_game(n: int, seed: int) -> games.Game:
    linear = np.random.default_rng(seed).normal(size=n)

    def evaluate(x):
        x = np.asarray(x, dtype=float)
        return JUMP * (x.sum(1) > 0) + x @ linear

    return games.Game(f"jump(n={n})", n, evaluate, linear + JUMP / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--games", nargs="+", default=["jump:20", "poly:40", "tanh:14", "fd:12", "vote:20"]
    )
    parser.add_argument("--multipliers", type=int, nargs="+", default=[2, 4, 10, 20])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    make = dict(GAMES, jump=jump_game)
    print(f"{'game':<10} {'budget':>6} {'kernel':>15} {'size-centred':>15} {'ratio':>6}")
    for spec in args.games:
        kind, n = spec.split(":")
        n = int(n)
        for multiplier in args.multipliers:
            errors = {False: [], True: []}
            for seed in range(args.seeds):
                game = make[kind](n, seed=100 + seed)
                coalitions = sample_coalitions(
                    n, multiplier * n, DEFAULT_SAMPLER, seed, paired=True
                )
                x = indicators(coalitions, n, dtype=np.float64)
                y = game.evaluate(x)
                for centre in errors:
                    values = estimators.kernel(x, y, centre_sizes=centre)
                    error = np.linalg.norm(values - game.shapley) / np.linalg.norm(game.shapley)
                    errors[centre].append(error)
            cells = [f"{np.mean(e):.4f}±{np.std(e):.3f}" for e in errors.values()]
            ratio = np.mean(errors[True]) / np.mean(errors[False])
            print(f"{spec:<10} {multiplier * n:>6} {cells[0]:>15} {cells[1]:>15} {ratio:>6.2f}")


if __name__ == "__main__":
    main()

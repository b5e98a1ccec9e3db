"""How often the surrogate's intervals contain the exact Shapley values, on games that have them.

    .venv/bin/python benchmarks/interval_coverage.py [--games additive:6 poly:12 tanh:10 fd:8 vote:20]
        [--multipliers 2 5 10] [--noise 0 0.1] [--seeds 20]

A row is one game family and size (`name:n`, the families of benchmarks/_common.py's GAMES), one
budget (coalitions = multiplier x n, drawn by the default sampler with seed s) and one noise
level; its `--seeds` games are game seeds 0..seeds-1, and the utilities are the game's plus
independent normal noise of standard deviation `noise` x the spread of the game's Shapley values
x sqrt(n) (noise 0: the game itself). The values and intervals are `surrogate.attribute`'s with
config/config.yaml's surrogate settings (its bootstrap and `ci_level`). Columns:

- `coverage`: the share of (game, contributor) pairs whose exact value lies in the interval
  (within 1e-9 relative: an exact fit's intervals can have zero width), with its 95% Wilson interval (the pairs of one game are not independent: read it as a guide);
- `own`: the share of intervals that contain their own point estimate;
- `err/half`: the median of |value - exact value| / the interval's half-width (a calibrated
  normal interval at 90% gives 0.41: above it, the intervals are too narrow for the errors);
- `seconds`: per game.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import GAMES, Table, default_config

from surrogateshap.estimation import surrogate
from surrogateshap.estimation.coalitions import indicators, sample_coalitions


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def one_game(family: str, n: int, budget: int, noise: float, seed: int, config: dict):
    """(inside, contains own, |error| / half-width) per contributor of one game."""
    game = GAMES[family](n, seed)
    coalitions_cfg = config["coalitions"]
    chosen = sample_coalitions(
        n,
        budget,
        coalitions_cfg["sampler"],
        seed,
        coalitions_cfg["p"],
        coalitions_cfg.get("paired", False),
    )
    x = indicators(chosen, n)
    y = game.evaluate(x)
    if noise:
        spread = noise * float(np.std(game.shapley)) * np.sqrt(n)
        y = y + np.random.default_rng(seed + 10_000).normal(0.0, spread, len(y))
    names = [f"c{i}" for i in range(n)]
    settings = dict(config["surrogate"], threads=1)
    table, _ = surrogate.attribute(x, y, names, settings, seed)
    table = table.set_index("contributor").loc[names]
    value, low, high = (table[c].to_numpy() for c in ("shapley", "ci_low", "ci_high"))
    exact = game.shapley
    half = np.maximum((high - low) / 2, 1e-12)
    # rounding: an exact fit's zero-width interval holds the exact value within 1e-9
    tol = 1e-9 * (1 + np.abs(exact))
    return (
        (low - tol <= exact) & (exact <= high + tol),
        (low <= value) & (value <= high),
        np.abs(value - exact) / half,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=["additive:6", "poly:12", "tanh:10"])
    parser.add_argument("--multipliers", nargs="+", type=float, default=[2, 5, 10])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.1])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    config = default_config()
    level = config["surrogate"]["ci_level"]
    print(
        f"# {level:.0%} intervals of the surrogate (config/config.yaml's settings); "
        f"{args.seeds} games per row"
    )
    table = Table(
        ("game", "<", 12),
        ("budget", ">", 7),
        ("noise", ".2f", 6),
        ("coverage", ".3f"),
        ("95% low", ".3f"),
        ("95% high", ".3f"),
        ("own", ".3f", 6),
        ("err/half", ".2f"),
        ("seconds", ".1f"),
    )
    for spec in args.games:
        family, n = spec.split(":")
        for multiplier in args.multipliers:
            budget = int(round(multiplier * int(n)))
            for noise in args.noise:
                started = time.perf_counter()
                results = [
                    one_game(family, int(n), budget, noise, seed, config)
                    for seed in range(args.seeds)
                ]
                inside = np.concatenate([r[0] for r in results])
                low, high = wilson(int(inside.sum()), len(inside))
                table.row(
                    spec,
                    f"{multiplier:g}n",
                    noise,
                    inside.mean(),
                    low,
                    high,
                    np.concatenate([r[1] for r in results]).mean(),
                    float(np.median(np.concatenate([r[2] for r in results]))),
                    (time.perf_counter() - started) / args.seeds,
                )


if __name__ == "__main__":
    main()

"""How often the surrogate's cross-validation picks the right candidate, on games with exact values.

    PYTHONPATH=src .venv/bin/python benchmarks/cv_choice.py [--variant candidate]
        [--games fd:12 tanh:14 vote:20 poly:40] [--multipliers 2 5 10 20] [--seeds 5]

For each game (game seed 100 + s) and budget (multiplier x n coalitions of the variant's sampler,
sampling seed s), the variant of `benchmarks/estimators.py` (`--variant`, default `candidate`: the
workflow's default with its grid point chosen by the utilities' held-out error) is fitted twice over: once as it runs, its grid chosen by cross-validation, and
once per grid point with that point fixed. Each fit's relative L2 error against the exact values
says which grid point was best for the values. Per row: how often cross-validation picked a
best point (`right`: within 1% of the least error; points that give the same values, such as
any depth without trees, count as one), the mean error of its pick, of the best point and of the
worst, and `regret`, the mean of pick / best. The shrinkage of the kernel base is chosen by held-
out error inside every fit alike, so it is not among the choices compared here.
"""

from __future__ import annotations

import argparse

import numpy as np
from estimators import GAMES, VARIANTS, default_settings

from surrogateshap.estimation import estimators
from surrogateshap.estimation.coalitions import indicators, sample_coalitions
from surrogateshap.estimation.selection import grid_candidates

TOLERANCE = 0.01  # a pick within 1% of the least error is right


def relative_error(values: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(values - truth) / np.linalg.norm(truth))


def values_of(x, y, names, cfg, seed) -> tuple[np.ndarray, dict]:
    table, diagnostics = estimators.attribute("surrogate", x, y, names, cfg, seed)
    return table.set_index("contributor").loc[names, "shapley"].to_numpy(), diagnostics


def label(point: dict, grid: dict) -> str:
    """The grid's settings of a point, short; without trees the depth does not matter."""
    if point.get("n_estimators") == 0:
        return "no trees"
    return ",".join(f"{k}={point[k]}" for k in sorted(grid) if len(grid[k]) > 1)


def tally(counts: dict) -> str:
    return "; ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="candidate", choices=sorted(VARIANTS))
    parser.add_argument("--games", nargs="+", default=["fd:12", "tanh:14", "vote:20", "poly:40"])
    parser.add_argument("--multipliers", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    estimator, sampler, overrides = VARIANTS[args.variant]
    if estimator != "surrogate":
        parser.error(f"--variant {args.variant}: estimator {estimator!r} has no grid to choose")
    cfg = dict(default_settings(), **overrides)
    grid = cfg.get("grid") or {}
    points = grid_candidates(cfg)
    print(f"variant {args.variant!r}: sampler {sampler!r}, grid {grid}; {args.seeds} seeds")
    print(
        f"{'game':<9} {'budget':>6} {'right':>7} {'picked':>8} {'best':>8} {'worst':>8} "
        f"{'regret':>7}  picked points | best points",
        flush=True,
    )
    total_right = total = 0
    for spec in args.games:
        kind, n = spec.split(":")
        n = int(n)
        names = [f"p{i}" for i in range(n)]
        for multiplier in args.multipliers:
            right, picked_err, best_err, worst_err, regret = 0, [], [], [], []
            picks, bests = {}, {}
            for seed in range(args.seeds):
                game = GAMES[kind](n, seed=100 + seed)
                truth = game.shapley
                x = indicators(sample_coalitions(n, multiplier * n, sampler, seed, paired=True), n)
                y = game.evaluate(x.astype(float))

                chosen, diagnostics = values_of(x, y, names, cfg, seed)
                fixed = [
                    relative_error(
                        values_of(x, y, names, dict(cfg, params=p, grid={}), seed)[0], truth
                    )
                    for p in points
                ]
                e = relative_error(chosen, truth)
                key = label(diagnostics["params"], grid)
                same = [f for p, f in zip(points, fixed) if label(p, grid) == key]
                if not same or abs(same[0] - e) > 1e-9:  # the pick, refitted alone, must agree
                    raise RuntimeError(f"{spec} seed {seed}: the pick {key} refitted gives {same}")
                least = min(fixed)
                right += e <= least * (1 + TOLERANCE) + 1e-12
                picked_err.append(e)
                best_err.append(least)
                worst_err.append(max(fixed))
                regret.append(e / least if least > 0 else 1.0)
                picks[key] = picks.get(key, 0) + 1
                best_key = label(points[int(np.argmin(fixed))], grid)
                bests[best_key] = bests.get(best_key, 0) + 1
            total_right += right
            total += args.seeds
            print(
                f"{spec:<9} {multiplier * n:>6} {f'{right}/{args.seeds}':>7} "
                f"{np.mean(picked_err):>8.4f} {np.mean(best_err):>8.4f} "
                f"{np.mean(worst_err):>8.4f} {np.mean(regret):>7.2f}  "
                + tally(picks)
                + " | best: "
                + tally(bests),
                flush=True,
            )
    print(f"\ncross-validation picked a best point in {total_right} of {total} fits")


if __name__ == "__main__":
    main()

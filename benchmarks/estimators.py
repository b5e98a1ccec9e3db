"""Estimators against exact Shapley values on synthetic games, side by side in one run.

    .venv/bin/python benchmarks/estimators.py [--ns 10 20 50 100] [--multipliers 1 2 5 10 20 50] [--seeds 3]
        [--games polynomial additive] [--sampler shapley_kernel] [--unpaired]

For each game (polynomial: pairwise and triple interactions; additive: none) and size n
and budget (coalitions = multiplier x n; for n = 10 also the paper's 128 and 512), every
estimator sees the same number of utility evaluations: surrogate and kernel the same
sample (the workflow's default: KernelSHAP's size distribution, each coalition paired with its
complement; `--unpaired` for plain KernelSHAP sampling, `--sampler uniform_size` for uniform
sizes), permutation as many rows of
antithetic chains (hybrid the same chains), banzhaf Bernoulli(0.5) coalitions (scored against the Banzhaf
index, its own target), loo its n + 1 fixed coalitions; `surrogate-kb` is the surrogate with
KernelSHAP's solution as its additive base (`base: kernel`). Prints the mean relative L2
error, Spearman correlation, top-5 recall and seconds over seeds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from surrogateshap import estimators, games
from surrogateshap.coalitions import indicators, sample_coalitions

SURROGATE = {
    "params": {"n_estimators": 300, "min_child_weight": 1},
    "grid": {"max_depth": [2, 3], "learning_rate": [0.1], "base": ["none", "linear"]},
    "cv_folds": 3,
    "bootstrap": 0,
    "ci_level": 0.9,
    "top_k": 5,
    "threads": 1,
    "anchor_endpoints": True,
}
# Variants of the surrogate, by the name the table prints: its grid's base learner fixed.
VARIANTS = {"surrogate-kb": ("surrogate", {"base": ["kernel"]})}


def table_for(
    estimator: str,
    n: int,
    budget: int,
    seed: int,
    sampler: str = "shapley_kernel",
    paired: bool = True,
):
    if estimator in ("permutation", "hybrid"):  # whole chains only, never more rows than the budget
        if budget < n + 1:
            raise estimators.EstimatorError(f"one permutation chain takes {n + 1} coalitions")
        return indicators(estimators.permutation_coalitions(n, budget // (n + 1), seed), n)
    if estimator == "banzhaf":
        return indicators(sample_coalitions(n, budget, "bernoulli", seed), n)
    if estimator == "loo":
        grand = tuple(range(n))
        return indicators([(), grand] + [tuple(j for j in grand if j != i) for i in grand], n)
    return indicators(sample_coalitions(n, budget, sampler, seed, paired=paired), n)


def make_game(kind: str, n: int, seed: int):
    if kind == "additive":
        return games.polynomial_game(n, seed=seed, pairs=0, triples=0)
    return games.polynomial_game(n, seed=seed)


def score(estimate, truth):
    top = set(np.argsort(-truth)[:5])
    return (
        np.linalg.norm(estimate - truth) / np.linalg.norm(truth),
        spearmanr(estimate, truth).statistic,
        len(top & set(np.argsort(-estimate)[:5])) / 5,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ns", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--multipliers", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["surrogate", "hybrid", "kernel", "permutation", "banzhaf", "loo"],
    )
    parser.add_argument(
        "--games", nargs="+", choices=["polynomial", "additive"], default=["polynomial"]
    )
    parser.add_argument(
        "--sampler",
        choices=["shapley_kernel", "uniform_size"],
        default="shapley_kernel",
        help="coalitions of surrogate and kernel",
    )
    parser.add_argument(
        "--unpaired", action="store_true", help="do not pair each coalition with its complement"
    )
    args = parser.parse_args()
    print(
        f"surrogate/kernel coalitions: {args.sampler}, {'unpaired' if args.unpaired else 'paired'}"
    )
    for kind in args.games:
        run_game(kind, args)


def run_game(kind: str, args) -> None:
    print(
        f"{'game':<18} {'budget':>6} {'estimator':<12} {'rel L2':>8} {'spearman':>9} {'top5':>5} {'seconds':>8}"
    )
    for n in args.ns:
        budgets = sorted({m * n for m in args.multipliers} | ({128, 512} if n == 10 else set()))
        for budget in budgets:
            for estimator in args.estimators:
                if estimator == "loo" and budget < n + 2:
                    continue
                rows, refused = [], None
                for seed in range(args.seeds):
                    game = make_game(kind, n, 100 + seed)
                    try:
                        x = table_for(estimator, n, budget, seed, args.sampler, not args.unpaired)
                    except estimators.EstimatorError as error:
                        refused = str(error)
                        break
                    y = game.evaluate(x)
                    names = [f"p{i}" for i in range(n)]
                    started = time.perf_counter()
                    try:
                        name, grid = VARIANTS.get(estimator, (estimator, {}))
                        cfg = dict(SURROGATE, grid=dict(SURROGATE["grid"], **grid))
                        table, _ = estimators.attribute(name, x, y, names, cfg, seed)
                    except (
                        estimators.EstimatorError
                    ) as error:  # too few coalitions for this estimator
                        refused = str(error)
                        break
                    seconds = time.perf_counter() - started
                    values = table.set_index("contributor").loc[names, "shapley"].to_numpy()
                    truth = game.banzhaf if estimator == "banzhaf" else game.shapley
                    rows.append(score(values, truth) + (seconds,))
                if refused:
                    print(
                        f"{kind + ' n=' + str(n):<18} {budget:>6} {estimator:<12} refused: {refused}",
                        flush=True,
                    )
                    continue
                err, rho, top5, seconds = np.mean(rows, axis=0)
                print(
                    f"{kind + ' n=' + str(n):<18} {budget:>6} {estimator:<12} {err:>8.3f} {rho:>9.3f} {top5:>5.2f} {seconds:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Estimators on the embedded default's own proxy game, against near-exact Shapley values.

The games of benchmarks/estimators.py are built to have exact values; this one is the game the
workflow plays. It needs one finished run of the embedded default in results/cache (`make demo`
or `snakemake evaluate --cores 2`): its pools' features, its Fréchet reference and its
contributors. The "truth" is the permutation estimate from `--permutations` antithetic
permutations over the pools (every one scored by the pooled game, no generation); its own error
is printed as the relative L2 distance between the estimates of its two halves divided by 2 (each
half's error is that distance over sqrt(2), and the whole, twice as many chains, has sqrt(2) less). Each of `--ours` (the method names of
benchmarks/estimators.py: `default`, `kernel`, `today`, and its variants such as `lev-kb-odd`)
then gets `multiplier x n` coalitions of its own sampler, per `--seeds` sampling seeds, and the
table prints the mean relative L2 error per metric and budget:

    PYTHONPATH=src .venv/bin/python benchmarks/proxy_estimators.py [--multipliers 20]
        [--seeds 5] [--permutations 4000] [--ours default kernel lev-kb-odd]

With `--heldout results/<run>/evaluation/tables` (a run with n <= 12 contributors, e.g.
`--configfile config/datasets/shapes.yaml`) it prints instead the LDS that the proxy game's exact
Shapley values, its exact leave-one-out values and the proxy utilities themselves reach on that
run's retrained utilities: the best any estimator of the proxy game's values can do.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import estimators as bench  # noqa: E402  (benchmarks/estimators.py: `ours` and its variants)
from _common import default_config, stage_dirs  # noqa: E402

from surrogateshap.estimation import estimators, games  # noqa: E402
from surrogateshap.estimation.coalitions import indicators  # noqa: E402
from surrogateshap.proxy import features  # noqa: E402
from surrogateshap.proxy.game import PooledGame  # noqa: E402
from surrogateshap.workflow.config import load_yaml, merge  # noqa: E402
from surrogateshap.workflow.steps.common import load_reference  # noqa: E402


def proxy_game(cache: Path, config: dict, metrics: list[str]):
    """The pooled game of `config`'s run in `cache`, found by its stage keys (as the workflow's
    common.smk builds its paths: the reference of the digits extractor lives in the classifier's
    stage, any other extractor's in its own)."""
    dirs = stage_dirs(config, cache)
    stage = "classifier" if config["features"]["extractor"] == "digits" else "reference"
    contributors = pd.read_parquet(dirs["data"] / "contributors.parquet")
    shards = sorted(str(p) for p in (dirs["features"] / "shards").glob("*.parquet"))
    if not shards:
        raise SystemExit(f"no feature shards of this config's run in {cache}: run it first")
    pooled = PooledGame(
        features.read_samples(shards),
        contributors["n_items"].to_numpy(float),
        metrics,
        load_reference(str(dirs[stage] / "reference.parquet")),
    )
    return pooled, len(contributors), contributors["contributor"].tolist()


def near_exact(pooled: PooledGame, n: int, metrics: list[str], permutations: int, seed: int):
    """Per metric: permutation values from `permutations` antithetic permutations, and their own
    error. The chains are scored once for every metric (the pooled game computes them together)."""
    rows = estimators.permutation_coalitions(n, permutations, seed)
    x = indicators(rows, n)
    table = pooled.utilities(rows)
    half = len(rows) // (n + 1) // 4 * 2 * (n + 1)  # an even number of whole chains: pairs together
    truths = {}
    for metric in metrics:
        y = table[metric].to_numpy(np.float64)
        values, _ = estimators.permutation(x, y)
        a, _ = estimators.permutation(x[:half], y[:half])
        b, _ = estimators.permutation(x[half:], y[half:])
        error = np.linalg.norm(a - b) / np.sqrt(2) / np.linalg.norm(values) / np.sqrt(2)
        truths[metric] = values, float(error)
    return truths


def exact_game(pooled: PooledGame, n: int, metric: str):
    """Exact Shapley values by enumerating all 2^n coalitions (n <= 12), and the exact game's
    leave-one-out values v(N) - v(N without i)."""
    rows = [c for k in range(n + 1) for c in itertools.combinations(range(n), k)]
    y = pooled.utilities(rows)[metric].to_numpy(np.float64)
    grand = y[-1]
    loo = np.array([grand - y[rows.index(tuple(j for j in range(n) if j != i))] for i in range(n)])
    return estimators.exact(indicators(rows, n), y), loo


def lds_table(pooled: PooledGame, n: int, metrics: list[str], tables: Path, names: list[str]):
    """The LDS (Spearman over the held-out coalitions, additive prediction) that the proxy game's
    exact Shapley values and its exact leave-one-out values reach on a run's retrained utilities,
    beside the proxy utility of each held-out coalition itself: what any estimator of the proxy
    game's Shapley values can reach at best."""
    if n > 12:
        raise SystemExit(
            f"--heldout enumerates 2^n coalitions of the proxy game: n = {n} is over 12"
        )
    heldout = pd.read_parquet(tables / "heldout.parquet")
    heldout = heldout[heldout["draw"] >= 0]
    index = {c: i for i, c in enumerate(names)}
    print(f"\nLDS on {tables} ({len(heldout)} held-out coalitions)")
    print(f"{'metric':<22} {'exact Shapley':>14} {'exact LOO':>10} {'proxy utility':>14}")
    for metric in metrics:
        shapley, loo = exact_game(pooled, n, metric)
        actual = heldout[metric].to_numpy()
        cells = []
        for values in (shapley, loo):
            predicted = [values[[index[c] for c in m]].sum() for m in heldout["members"]]
            cells.append(stats.spearmanr(predicted, actual).statistic)
        cells.append(stats.spearmanr(heldout[f"{metric}_proxy"], actual).statistic)
        print(f"{metric:<22} {cells[0]:>14.3f} {cells[1]:>10.3f} {cells[2]:>14.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default="results/cache")
    parser.add_argument("--configfile", nargs="*", default=[], help="merged over the default")
    parser.add_argument("--metrics", nargs="+", default=None)
    parser.add_argument("--multipliers", type=int, nargs="+", default=[20])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=4000)
    parser.add_argument("--ours", nargs="+", default=["default", "kernel", "lev-kb-odd"])
    parser.add_argument(
        "--heldout",
        default=None,
        help="a run's evaluation/tables: print the LDS of the exact proxy values (n <= 12) instead",
    )
    args = parser.parse_args()
    config = default_config()
    for path in args.configfile:
        config = default_config(merge(config, load_yaml(path)))
    metrics = args.metrics or config["metrics"]
    pooled, n, names = proxy_game(Path(args.cache), config, metrics)
    if args.heldout:
        lds_table(pooled, n, metrics, Path(args.heldout), names)
        return
    width = 11
    print(f"proxy game of {args.cache}: n = {n}, {args.seeds} sampling seeds")
    print(
        f"{'metric':<22} {'budget':>6} {'truth err':>{width}} "
        + " ".join(f"{m[:width]:>{width}}" for m in args.ours)
    )
    truths = near_exact(pooled, n, metrics, args.permutations, seed=12345)
    for metric in metrics:
        truth, own_error = truths[metric]

        def evaluate(x, metric=metric):
            rows = [tuple(int(i) for i in np.flatnonzero(r)) for r in np.asarray(x)]
            return pooled.utilities(rows)[metric].to_numpy(np.float64)

        game = games.Game(f"proxy {metric}", n, evaluate, truth)
        for multiplier in args.multipliers:
            errors = {m: [] for m in args.ours}
            for seed in range(args.seeds):
                for m in args.ours:
                    values = bench.ours(m, game, multiplier * n, seed)
                    errors[m].append(np.linalg.norm(values - truth) / np.linalg.norm(truth))
            cells = " ".join(
                f"{np.mean(errors[m]):>{width - 6}.4f}±{np.std(errors[m]):.3f}" for m in args.ours
            )
            print(f"{metric:<22} {multiplier * n:>6} {own_error:>{width}.4f} {cells}", flush=True)


if __name__ == "__main__":
    main()

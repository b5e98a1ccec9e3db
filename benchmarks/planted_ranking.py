"""How reliably an estimator puts a run's planted contributors where they belong, on that run's own
proxy game, against how accurate its values are.

A planted check (the report's "Planted contributors: k of m found", tests/test_workflow.py) rests
on one draw of coalitions. This script replays the draw: for each of `--ours` (the method names of
benchmarks/estimators.py: `default`, `today`, ...), each budget `multiplier x n` and each of
`--seeds` sampling seeds, it estimates the values of a finished run's pooled game and prints the
mean relative L2 error against near-exact values (antithetic permutations over the pools, as
benchmarks/proxy_estimators.py) and in how many draws every planted contributor of a metric lands
within its group's size at its end (`found`) and within that plus one (`found+1`). It needs the run
in results/cache (e.g. `snakemake --cores 2 --configfile tests/configs/small.yaml`):

    PYTHONPATH=src .venv/bin/python benchmarks/planted_ranking.py \\
        --configfile tests/configs/small.yaml [--multipliers 10 20] [--seeds 8] [--ours default today]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import estimators as bench  # noqa: E402  (benchmarks/estimators.py: `ours` and its variants)
import proxy_estimators as proxy  # noqa: E402
from _common import default_config  # noqa: E402

from surrogateshap.data import planted  # noqa: E402
from surrogateshap.estimation import games  # noqa: E402
from surrogateshap.workflow.config import load_yaml, merge  # noqa: E402


def placed(values: np.ndarray, expected: list[dict], index: dict[str, int], slack: int) -> bool:
    """Whether every expected contributor ranks within its group's size (plus `slack`) at its end."""
    n = len(values)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-values, kind="stable")] = np.arange(1, n + 1)
    group = {}
    for e in expected:
        group[e["side"]] = group.get(e["side"], 0) + 1
    for e in expected:
        r = int(rank[index[e["contributor"]]])
        where = r if e["side"] == "top" else n + 1 - r
        if where > (e.get("within") or group[e["side"]]) + slack:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default="results/cache")
    parser.add_argument("--configfile", nargs="*", default=[], help="merged over the default")
    parser.add_argument("--multipliers", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--permutations", type=int, default=4000)
    parser.add_argument("--ours", nargs="+", default=["default", "today"])
    args = parser.parse_args()
    config = default_config()
    for path in args.configfile:
        config = default_config(merge(config, load_yaml(path)))
    expectations = planted.expectations(planted.entries(config["data"]), config["metrics"])
    metrics = sorted({e["metric"] for e in expectations}, key=config["metrics"].index)
    if not metrics:
        raise SystemExit("this config plants no contributor that moves an attributed metric")
    pooled, n, names = proxy.proxy_game(Path(args.cache), config, metrics)
    index = {name: i for i, name in enumerate(names)}
    truths = proxy.near_exact(pooled, n, metrics, args.permutations, seed=12345)
    print(f"proxy game of {args.cache}: n = {n}, {args.seeds} sampling seeds")
    print(f"{'metric':<22} {'budget':>6} {'method':<14} {'rel L2':>7} {'found':>7} {'found+1':>7}")
    for metric in metrics:
        truth, own_error = truths[metric]
        expected = [e for e in expectations if e["metric"] == metric]
        print(
            f"{metric:<22} {'truth':>6} {'(own err)':<14} {own_error:>7.3f} "
            f"{int(placed(truth, expected, index, 0)):>7} {int(placed(truth, expected, index, 1)):>7}"
        )

        def evaluate(x, metric=metric):
            rows = [tuple(int(i) for i in np.flatnonzero(r)) for r in np.asarray(x)]
            return pooled.utilities(rows)[metric].to_numpy(np.float64)

        game = games.Game(f"proxy {metric}", n, evaluate, truth)
        for multiplier in args.multipliers:
            for method in args.ours:
                runs = [bench.ours(method, game, multiplier * n, s) for s in range(args.seeds)]
                error = np.mean([np.linalg.norm(v - truth) / np.linalg.norm(truth) for v in runs])
                found = [sum(placed(v, expected, index, k) for v in runs) for k in (0, 1)]
                print(
                    f"{metric:<22} {multiplier * n:>6} {method:<14} {error:>7.3f} "
                    f"{found[0]:>4}/{args.seeds:<2} {found[1]:>4}/{args.seeds:<2}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

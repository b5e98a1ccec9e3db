"""Wall time of the surrogate estimator (fit + TreeSHAP, no bootstrap) as the number of
contributors and coalitions grows, with the exponent of a log-log fit.

    .venv/bin/python benchmarks/scaling.py [--ns 20 100 1000] [--rows 200 2000 20000] [--cv-folds 0]
        [--defaults | --candidate | --variant NAME]

Utilities come from a polynomial game (pairs and triples). With --cv-folds 0 the
hyperparameters are fixed (the default grid's middle); otherwise the grid is searched.
--defaults: what the workflow's attribute stage does, config/config.yaml's surrogate settings
(grid search, bootstrap, the strongest interactions) on the default sampler's coalitions;
--candidate: the same with the settings of benchmarks/estimators.py's `candidate` (the default's
settings, its grid point chosen by the utilities' held-out error) over them, on the leverage design; --variant NAME: of any of that file's
surrogate variants (e.g. `candidate-values`), on its sampler.
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np

from surrogateshap.estimation import estimators, games
from surrogateshap.estimation.coalitions import DEFAULT_SAMPLER, indicators, sample_coalitions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ns", type=int, nargs="+", default=[20, 100, 1000])
    parser.add_argument("--rows", type=int, nargs="+", default=[200, 2000, 20000])
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--defaults", action="store_true")
    parser.add_argument("--candidate", action="store_true", help="--variant candidate")
    parser.add_argument("--variant", help="a surrogate variant of benchmarks/estimators.py")
    args = parser.parse_args()
    if args.candidate:
        args.variant = "candidate"
    cfg = _common.surrogate_settings(args.threads, args.cv_folds)
    sampler, paired = "shapley_kernel", False
    if args.defaults or args.variant:
        paired = _common.default_config()["coalitions"]["paired"]  # as the workflow draws
    if args.defaults:
        cfg = dict(_common.default_config()["surrogate"], threads=args.threads)
        sampler = DEFAULT_SAMPLER
    if args.variant:
        from estimators import VARIANTS  # benchmarks/estimators.py

        if VARIANTS.get(args.variant, ("",))[0] != "surrogate":
            parser.error(f"--variant {args.variant!r}: not a surrogate variant of estimators.py")
        _, sampler, overrides = VARIANTS[args.variant]
        cfg = dict(_common.default_config()["surrogate"], **overrides, threads=args.threads)
    results = []
    print(f"{'n':>6} {'coalitions':>10} {'seconds':>9} {'rel L2':>8}")
    for n in args.ns:
        game = games.polynomial_game(n, seed=0)
        for rows in args.rows:
            coalitions = sample_coalitions(n, rows, sampler, seed=0, paired=paired)
            x = indicators(coalitions, n)
            y = game.evaluate(x)
            names = [f"p{i}" for i in range(n)]
            started = time.perf_counter()
            table, _ = estimators.attribute(
                "surrogate", x, y, names, cfg, seed=0, pairs=cfg.get("top_pairs", 0)
            )
            seconds = time.perf_counter() - started
            values = table.set_index("contributor").loc[names, "shapley"].to_numpy()
            err = np.linalg.norm(values - game.shapley) / np.linalg.norm(game.shapley)
            results.append((n, len(coalitions), seconds))
            print(f"{n:>6} {len(coalitions):>10} {seconds:>9.2f} {err:>8.3f}", flush=True)
    data = np.array(results, dtype=float)
    exponents = _common.loglog_exponents(data[:, :2], data[:, 2])
    if np.isfinite(exponents).all():
        print(f"log-log fit: seconds ~ n^{exponents[0]:.2f} x coalitions^{exponents[1]:.2f}")


if __name__ == "__main__":
    main()

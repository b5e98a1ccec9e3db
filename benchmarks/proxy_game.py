"""Proxy game cost: `pooled` against `per_coalition` (the paper's way) on the same coalitions,
side by side in one run, on the embedded default.

    .venv/bin/python benchmarks/proxy_game.py [--model DIR] [--coalitions 50 200 500 2000]
        [--pool-sizes 200 100 50] [--per-coalition-limit 150] [--ceiling 50] [--quick]

Both modes run the workflow's own functions in this process with the same torch threads:
pooled = `steps.generation.generate_pool_shard` (every contributor's pool and the unconditional one,
`--pool-sizes` images each) + `steps.generation.extract_features` + `steps.game.pooled_utilities`;
per_coalition = `steps.game.per_coalition_utilities` (`game.per_coalition.samples` fresh images
per coalition). The coalitions are the config's sampler's first C draws (the empty and the
grand coalition first), so each C's coalitions contain the smaller C's.

per_coalition runs for real on the first `--per-coalition-limit` coalitions; beyond that its
wall time is extrapolated linearly from the measured seconds per coalition (marked "extrap."),
and the agreement columns are over the coalitions run both ways (column "both"). Images
generated are exact counts. Agreement: Spearman correlation per metric of the utilities, and
of the Shapley values that the surrogate (fixed hyperparameters, or --cv) reads off each
mode's utilities of the same coalitions. `--ceiling R` reruns per_coalition on the first R
coalitions with another seed: how well the paper's way agrees with itself.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from surrogateshap.estimation import coalitions as coal
from surrogateshap.estimation import estimators
from surrogateshap.models import class_conditional as models
from surrogateshap.workflow.config import merge
from surrogateshap.workflow.steps import data as data_steps
from surrogateshap.workflow.steps import game as game_steps
from surrogateshap.workflow.steps import generation as generation_steps

SHORT = {
    "frechet_distance": "FD",
    "inception_score_like": "IS",
    "mean_confidence": "conf",
    "diversity": "div",
    "marker_rate": "marker",
}


def spearman(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return (
        float(spearmanr(a, b).statistic)
        if len(a) > 2 and np.ptp(a) > 0 and np.ptp(b) > 0
        else float("nan")
    )


def shapley(
    utilities: pd.DataFrame, metric: str, x: np.ndarray, names: list[str], surrogate_cfg: dict
) -> np.ndarray:
    table, _ = estimators.attribute(
        "surrogate", x, utilities[metric].to_numpy(np.float64), names, surrogate_cfg, seed=0
    )
    return table.set_index("contributor").loc[names, "shapley"].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="a trained model folder (e.g. results/cache/model/<key>/model)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=300, help="without --model: train this many steps"
    )
    parser.add_argument("--coalitions", type=int, nargs="+", default=[50, 200, 500, 2000])
    parser.add_argument(
        "--pool-sizes",
        type=int,
        nargs="+",
        default=[200, 100, 50],
        help="pooled mode's samples per contributor (the default config: 200)",
    )
    parser.add_argument(
        "--per-coalition-limit",
        type=int,
        default=150,
        help="run per_coalition for real on at most this many coalitions",
    )
    parser.add_argument(
        "--ceiling", type=int, default=0, help="rerun per_coalition on this many with another seed"
    )
    parser.add_argument(
        "--cv", action="store_true", help="surrogate hyperparameters by 5-fold CV (slower)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the rules use 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    overrides = {}
    if args.quick:
        args.train_steps, args.coalitions, args.pool_sizes, args.per_coalition_limit = (
            2,
            [8, 16],
            [4],
            8,
        )
        args.ceiling = min(args.ceiling, 4)
        overrides = {"generation": {"steps": 3}, "game": {"per_coalition": {"samples": 8}}}
    config = _common.default_config(overrides)
    metrics = config["metrics"]
    samples_per_coalition = config["game"]["per_coalition"]["samples"]
    empty = config["game"]["empty_coalition"]
    marker_size = config["data"]["digits"]["marker_size"]
    counts = sorted(args.coalitions)
    _common.quiet_libraries()
    models.set_threads(args.threads)
    surrogate_cfg = _common.surrogate_settings(threads=1, cv_folds=5 if args.cv else 0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = _common.prepare_inputs(tmp, config, args.model, args.train_steps, args.threads)
        names = pd.read_parquet(Path(inputs.data_dir) / "contributors.parquet")[
            "contributor"
        ].tolist()
        n_groups = len(names) + 1  # + the unconditional pool, v(empty)
        coalitions_path = tmp / "coalitions.parquet"
        data_steps.draw_coalitions(
            data_dir=inputs.data_dir,
            cfg=merge(config["coalitions"], {"count": counts[-1]}),
            out_path=str(coalitions_path),
        )
        table = pd.read_parquet(coalitions_path)
        counts = [min(c, len(table)) for c in counts]
        x_all = coal.indicator_matrix(table["members"], names)
        print(f"model: {inputs.model_note}")
        print(
            f"{len(names)} contributors; {config['generation']['steps']} DDIM steps, guidance "
            f"{config['generation']['guidance_scale']}, batch {config['generation']['batch_size']}; "
            f"per_coalition: {samples_per_coalition} images per coalition; {args.threads} torch thread(s), one process"
        )

        # per_coalition on the first `limit` coalitions, in chunks ending at each count
        limit = min(args.per_coalition_limit, counts[-1])
        bounds = sorted({0, limit} | {c for c in counts if c < limit})
        fresh, per_seconds = [], {}
        elapsed = 0.0
        for start, stop in zip(bounds, bounds[1:]):
            out = tmp / f"per_coalition-{start}.parquet"
            seconds, _ = _common.timed(
                game_steps.per_coalition_utilities,
                data_dir=inputs.data_dir,
                model=inputs.model_dir,
                classifier_path=inputs.classifier,
                reference_path=inputs.reference,
                coalitions_path=str(coalitions_path),
                gen_cfg=config["generation"],
                empty_coalition=empty,
                samples_per_coalition=samples_per_coalition,
                marker_size=marker_size,
                feat_cfg=config["features"],
                metric_names=metrics,
                seed=config["seed"],
                scatteritem="1-of-1",
                threads=args.threads,
                out_path=str(out),
                rows=list(range(start, stop)),
            )
            elapsed += seconds
            per_seconds[stop] = elapsed
            fresh.append(pd.read_parquet(out))
            _common.note(f"per_coalition: {stop}/{limit} coalitions in {elapsed:.0f}s")
        fresh = pd.concat(fresh, ignore_index=True)
        seconds_per_coalition = elapsed / limit

        ceiling = {}
        if args.ceiling:
            out = tmp / "per_coalition-reseeded.parquet"
            rows = min(args.ceiling, limit)
            game_steps.per_coalition_utilities(
                data_dir=inputs.data_dir,
                model=inputs.model_dir,
                classifier_path=inputs.classifier,
                reference_path=inputs.reference,
                coalitions_path=str(coalitions_path),
                gen_cfg=config["generation"],
                empty_coalition=empty,
                samples_per_coalition=samples_per_coalition,
                marker_size=marker_size,
                feat_cfg=config["features"],
                metric_names=metrics,
                seed=config["seed"] + 1,
                scatteritem="1-of-1",
                threads=args.threads,
                out_path=str(out),
                rows=list(range(rows)),
            )
            again = pd.read_parquet(out)
            ceiling = {m: spearman(fresh[m][:rows], again[m]) for m in metrics}
            _common.note(f"per_coalition reseeded on {rows} coalitions")

        # pooled, for each pool size: generation and features once, then every count's utilities
        pooled = {}
        for size in args.pool_sizes:
            gen_cfg = merge(config["generation"], {"samples_per_contributor": size})
            pool, features = tmp / f"pool-{size}.parquet", tmp / f"features-{size}.parquet"
            gen_s, _ = _common.timed(
                generation_steps.generate_pool_shard,
                data_dir=inputs.data_dir,
                model=inputs.model_dir,
                gen_cfg=gen_cfg,
                empty_coalition=empty,
                seed=config["seed"],
                scatteritem="1-of-1",
                threads=args.threads,
                out_path=str(pool),
            )
            feat_s, _ = _common.timed(
                generation_steps.extract_features,
                pool_shard=str(pool),
                classifier_path=inputs.classifier,
                marker_size=marker_size,
                feat_cfg=config["features"],
                threads=args.threads,
                out_path=str(features),
            )
            for count in counts:
                subset = tmp / f"coalitions-{count}.parquet"
                table.iloc[:count].to_parquet(subset)
                util_s, _ = _common.timed(
                    game_steps.pooled_utilities,
                    data_dir=inputs.data_dir,
                    coalitions_path=str(subset),
                    feature_shards=[str(features)],
                    reference_path=inputs.reference,
                    metric_names=metrics,
                    out_path=str(tmp / "utilities.parquet"),
                )
                pooled[size, count] = (
                    gen_s + feat_s + util_s,
                    pd.read_parquet(tmp / "utilities.parquet"),
                )
            _common.note(
                f"pooled, {size} per contributor: generation {gen_s:.0f}s, features {feat_s:.1f}s"
            )

        print(
            "\nCost and agreement of utilities (Spearman, pooled vs per_coalition, over the coalitions run both ways)"
        )
        cost = _common.Table(
            ("pool", "d"),
            ("coalitions", "d"),
            ("both", "d"),
            ("pooled img", "d"),
            ("per-coal img", "d"),
            ("img ratio", ".1f"),
            ("pooled s", ".1f"),
            ("per-coal s", "<", 16),
            ("time ratio", ".1f"),
            *[(f"rho {SHORT.get(m, m)}", ".3f") for m in metrics],
        )
        for size in args.pool_sizes:
            for count in counts:
                wall, utilities = pooled[size, count]
                both = min(count, limit)
                per_wall = per_seconds[count] if count <= limit else seconds_per_coalition * count
                label = f"{per_wall:.1f}" + ("" if count <= limit else " extrap.")
                cost.row(
                    size,
                    count,
                    both,
                    n_groups * size,
                    count * samples_per_coalition,
                    count * samples_per_coalition / (n_groups * size),
                    wall,
                    label,
                    per_wall / wall,
                    *[spearman(utilities[m][:both], fresh[m][:both]) for m in metrics],
                )
        if ceiling:
            print(
                f"per_coalition vs per_coalition with another seed, first {min(args.ceiling, limit)} coalitions: "
                + ", ".join(f"rho {SHORT.get(m, m)} {ceiling[m]:.3f}" for m in metrics)
            )

        print(
            "\nAgreement of Shapley values (Spearman over contributors), surrogate fitted on the same coalitions "
            f"({'5-fold CV' if args.cv else 'fixed hyperparameters'})"
        )
        agree = _common.Table(
            ("pool", "d"),
            ("coalitions", "d"),
            *[(f"rho {SHORT.get(m, m)}", ".3f") for m in metrics],
        )
        for size in args.pool_sizes:
            for both in sorted({min(c, limit) for c in counts}):
                count = min(c for c in counts if min(c, limit) == both)
                utilities = pooled[size, count][1]
                x = x_all[:both]
                agree.row(
                    size,
                    both,
                    *[
                        spearman(
                            shapley(utilities[:both], m, x, names, surrogate_cfg),
                            shapley(fresh[:both], m, x, names, surrogate_cfg),
                        )
                        for m in metrics
                    ],
                )


if __name__ == "__main__":
    main()

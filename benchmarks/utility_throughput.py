"""Utility evaluation throughput from the pool: coalitions per second for each metric at
realistic sizes (2,048-d features like Inception's, 1,000 classes), and the one-time cost of
the per-group summaries, for 20 to 1,000 contributors.

    .venv/bin/python benchmarks/utility_throughput.py [--ns 20 100 1000] [--dim 2048] [--samples 50]
        [--classes 1000] [--metrics frechet_distance ...] [--quick]

A synthetic pool (Gaussian features shifted per group, softmax probabilities, marker flags)
of `--samples` images per contributor plus the unconditional pool; Shapley-kernel coalitions
weighted by random item counts, as `game.pooled_utilities` scores them. Each metric's
`group_stats` is timed once, then `evaluate` on 2, 4, 8, ... coalitions (in random order, so
not the cheap empty one first) until a call takes over `--seconds` (or --max-coalitions is
reached); that last call gives seconds per coalition.
The Fréchet distance runs where the package runs it: torch in float64 on the GPU when torch
sees one, else numpy on the CPU; the header says which. Its route is printed: per-group
second moments when they fit in `metrics.SECOND_MOMENT_BYTES`, else each coalition's second
moment summed from its members' features.
"""

from __future__ import annotations

import argparse

import _common
import numpy as np

from surrogateshap.estimation.coalitions import sample_coalitions
from surrogateshap.proxy import game, metric_base, metrics

DEFAULT_METRICS = [
    "frechet_distance",
    "inception_score_like",
    "mean_confidence",
    "diversity",
    "marker_rate",
]


def synthetic_pool(
    n: int, per: int, dim: int, classes: int, seed: int
) -> tuple[metric_base.Samples, metric_base.Reference]:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n + 1), per)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    features = (
        rng.normal(size=(len(group), dim)) + rng.normal(size=(n + 1, dim))[group] * 0.3
    ) @ mixing
    logits = rng.normal(size=(len(group), classes)) * 3
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    marker = (rng.random(len(group)) < 0.1).astype(np.float64)
    reference = metric_base.Reference.from_features(rng.normal(size=(2 * dim + 200, dim)) @ mixing)
    return metric_base.Samples(group, features, probs, marker), reference


def throughput(metric, stats, weights, reference, seconds: float) -> tuple[int, float]:
    """(coalitions, seconds) of the first evaluate call, doubling from 2, that takes over `seconds`."""
    count = 2
    while True:
        elapsed, _ = _common.timed(metric.evaluate, stats, weights[:count], reference)
        if elapsed > seconds or count >= len(weights):
            return count, elapsed
        count = min(2 * count, len(weights))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ns", type=int, nargs="+", default=[20, 100, 1000], help="contributors")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--samples", type=int, default=50, help="pool images per contributor")
    parser.add_argument(
        "--classes", type=int, default=1000, help="classifier classes (probabilities)"
    )
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time each metric at least this long"
    )
    parser.add_argument("--max-coalitions", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.ns, args.dim, args.samples, args.classes, args.seconds, args.max_coalitions = (
            [5, 12],
            16,
            6,
            10,
            0.01,
            64,
        )
    xp, _ = metrics.linalg_backend()
    if xp is np:
        backend = "numpy on the CPU"
    else:
        backend = f"torch float64 on {xp.cuda.get_device_name()}"
    print(
        f"{args.dim}-d features, {args.classes} classes, {args.samples} images per contributor; "
        f"Fréchet linear algebra: {backend}"
    )
    table = _common.Table(
        ("n", "d"),
        ("images", "d"),
        ("metric", "<", 20),
        ("route", "<", 16),
        ("stats s", ".2f"),
        ("coalitions", "d"),
        ("eval s", ".3f"),
        ("s/coalition", ".2e"),
        ("coalitions/s", ",.1f"),
    )
    for n in args.ns:
        samples, reference = synthetic_pool(n, args.samples, args.dim, args.classes, seed=n)
        counts = np.random.default_rng(0).integers(20, 200, size=n).astype(np.float64)
        coalitions = sample_coalitions(n, args.max_coalitions, "shapley_kernel", seed=1)
        weights = game.mixture_weights(coalitions, counts)[
            np.random.default_rng(2).permutation(len(coalitions))
        ]
        for name in args.metrics:
            metric = metrics.get_metric(name)
            stats_s, stats = _common.timed(metric.group_stats, samples, reference)
            route = ""
            if name == "frechet_distance":
                route = "group moments" if "second" in stats else "member features"
            evaluated, eval_s = throughput(metric, stats, weights, reference, args.seconds)
            table.row(
                n,
                len(samples.group),
                name,
                route,
                stats_s,
                evaluated,
                eval_s,
                eval_s / evaluated,
                evaluated / eval_s,
            )


if __name__ == "__main__":
    main()

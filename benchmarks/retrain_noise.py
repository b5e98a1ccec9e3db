"""The retraining game's noise ceiling, split by source: training seed, common random numbers,
training length and the metric's sample of generated images.

    .venv/bin/python benchmarks/retrain_noise.py [--model results/cache/model/<key>/model]
        [--coalitions 16] [--replicates 2] [--game finetune] [--steps N] [--samples N]
        [--settings crn independent sampling] [--workdir /tmp/retrain-noise] [--from-rows]

For the first `--coalitions` held-out coalitions of the embedded default, the retraining game
(`--game`, with the default's settings; `--steps` and `--samples` override its training length
and images per model) is played `--replicates` times per coalition by the workflow's own function
(`surrogateshap.evaluation.retraining.retrain_coalitions`), once per setting:

- `crn`: common random numbers on (the default): replicate r of every coalition shares one
  training seed and one set of sampling noises;
- `independent`: common random numbers off: every (coalition, replicate) draws its own seeds;
- `sampling`: as `crn`, but every replicate trains with replicate 0's training seed, so the
  replicates' models are identical and only the sampling noise differs: what is left is the
  metric's own sample of generated images (a diagnostic, not a setting of the workflow).

Per setting and metric: the noise ceiling (split-half Spearman, Spearman-Brown corrected, as the
report computes it) with a 90% bootstrap interval over coalitions, and the variance reliability
1 - noise / total, where noise is the coalition-specific replicate variance of the replicate mean
(from the replicates' differences, their common shift removed) and total the variance of the
replicate means across coalitions: unlike the rank-based ceiling it splits additively by source.
The rows are kept as `<workdir>/rows-<setting>-<steps>.parquet`. The data, classifier and (unless
`--model` names a trained one) the main model are built under `--workdir` first. Seconds are
printed for orientation only: they depend on the machine's load.

When `crn` and `sampling` are both among the settings, a second table splits one replicate's
noise variance by source: `image_sample` is the share left when only the sampling noise differs
(the metric's own sample of images), `training_seed` the rest of the `crn` noise, and, with
`independent` too, `no_crn_ratio` the noise without common random numbers over the noise with
them. `--from-rows` prints both tables from the rows a previous run kept, retraining nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common
import numpy as np
import pandas as pd

from surrogateshap.evaluation import retraining
from surrogateshap.evaluation import scores as evaluation
from surrogateshap.models import class_conditional as models
from surrogateshap.workflow.config import merge, stage_section
from surrogateshap.workflow.steps.common import load_prepared, load_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained main model folder (else trained here)")
    parser.add_argument("--train-steps", type=int, default=1000, help="main model, if trained")
    parser.add_argument("--coalitions", type=int, default=16)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--game", choices=retraining.GAMES, default="finetune")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--steps", type=int, help="training steps of each retrain (default: config's)"
    )
    parser.add_argument(
        "--samples", type=int, help="images per retrained model (default: config's)"
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=("crn", "independent", "sampling"),
        default=["crn", "independent"],
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed of the intervals")
    parser.add_argument("--workdir", default="/tmp/retrain-noise")
    parser.add_argument(
        "--from-rows", action="store_true", help="summarise the rows kept in --workdir"
    )
    args = parser.parse_args()
    _common.quiet_libraries()
    config = _common.default_config()
    retrain_cfg = config["evaluation"]["retrain"]
    game_cfg = retrain_cfg["finetune"] if args.game == "finetune" else retrain_cfg
    steps = args.steps or game_cfg["train"]["steps"]
    if args.from_rows:
        rows = {}
        for setting in args.settings:
            path = Path(args.workdir) / f"rows-{setting}-{steps}.parquet"
            if not path.exists():
                parser.error(f"--from-rows: {path} not found (run this setting first)")
            rows[setting] = pd.read_parquet(path)
        report(rows, config["metrics"], steps, args.seed)
        return
    inputs = _common.prepare_inputs(
        Path(args.workdir), config, args.model, args.train_steps, args.threads
    )
    models.set_threads(args.threads)
    dataset = load_prepared(inputs.data_dir)
    names = dataset.contributors["contributor"].tolist()
    held = config["evaluation"]["heldout"]
    table = evaluation.heldout_coalitions(
        len(names), held["coalitions"], held["alpha"], held["draws"]
    )
    table = table.assign(coalition=np.arange(len(table)))
    table = table[table["draw"] >= 0].head(args.coalitions)
    table["members"] = [[names[i] for i in m] for m in table["members_index"]]
    classifier = models.load_classifier(inputs.classifier)
    reference = load_reference(inputs.reference)
    metric_names = config["metrics"]
    print(
        f"# {len(table)} held-out coalitions x {args.replicates} replicates, {args.game} game; "
        f"main model {inputs.model_note}"
    )
    original_seeds = retraining.replicate_seeds

    def training_fixed(seed, coalition, replicate, common):
        # the `sampling` diagnostic: replicate 0's training seed, this replicate's sampling seed
        return original_seeds(seed, coalition, 0, common)[0], original_seeds(
            seed, coalition, replicate, common
        )[1]

    kept = {}
    for setting in args.settings:
        retrain = {"common_random_numbers": setting != "independent"}
        if args.steps:
            retrain |= {
                "train": {"steps": args.steps},
                "finetune": {"train": {"steps": args.steps}},
            }
        if args.samples:
            retrain["samples"] = args.samples
        changed = merge(config, {"evaluation": {"retrain": retrain}})
        cfg = stage_section(changed, "retrain")
        retraining.replicate_seeds = training_fixed if setting == "sampling" else original_seeds
        started = time.perf_counter()
        try:
            rows, _ = retraining.retrain_coalitions(
                dataset,
                table[["coalition", "members"]],
                cfg,
                args.game,
                args.replicates,
                classifier,
                reference,
                config["data"]["digits"]["marker_size"],
                inputs.model_dir,
                setting,
            )
        finally:
            retraining.replicate_seeds = original_seeds
        seconds = time.perf_counter() - started
        _common.note(f"{setting}, {steps} steps: {seconds:.0f}s (load-dependent)")
        keep = rows.drop(columns=[c for c in rows.columns if rows[c].dtype == object])
        keep.to_parquet(Path(args.workdir) / f"rows-{setting}-{steps}.parquet")
        kept[setting] = keep
    report(kept, metric_names, steps, args.seed)


def report(rows: dict[str, pd.DataFrame], metrics: list[str], steps: int, seed: int) -> None:
    """Print the ceiling table of every setting's rows and, where the settings allow, the split
    of the noise by source."""
    ceilings, split = [], []
    for setting, table in rows.items():
        for m in metrics:
            utilities = replicate_utilities(table, m)
            low, high = ceiling_interval(utilities, seed)
            ceilings.append(
                {
                    "setting": setting,
                    "steps": steps,
                    "metric": m,
                    "ceiling": evaluation.noise_ceiling(utilities),
                    "ceiling_low": low,
                    "ceiling_high": high,
                    "variance_reliability": variance_reliability(utilities),
                }
            )
    print(pd.DataFrame(ceilings).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not {"crn", "sampling"} <= rows.keys():
        return
    for m in metrics:
        noise = {s: noise_variance(replicate_utilities(t, m)) for s, t in rows.items()}
        image = noise["sampling"] / noise["crn"] if noise["crn"] > 0 else float("nan")
        split.append(
            {
                "metric": m,
                "crn_noise_sd": noise["crn"] ** 0.5,
                "image_sample": image,
                "training_seed": 1 - image,
                "no_crn_ratio": noise["independent"] / noise["crn"]
                if "independent" in noise and noise["crn"] > 0
                else float("nan"),
            }
        )
    print()
    print(pd.DataFrame(split).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def replicate_utilities(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """One metric's utilities as a (coalition, replicate) matrix."""
    return rows.pivot(index="coalition", columns="replicate", values=metric).to_numpy()


def ceiling_interval(utilities: np.ndarray, seed: int, level: float = 0.9) -> tuple[float, float]:
    """Percentile bootstrap interval of the noise ceiling over coalitions (rows)."""
    draws = evaluation.bootstrap_indices(len(utilities), 1000, seed)
    values = np.array([evaluation.noise_ceiling(utilities[d]) for d in draws])
    values = values[np.isfinite(values)]
    if not len(values):  # a metric constant over every resample (e.g. no marker anywhere)
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return tuple(float(q) for q in np.quantile(values, [tail, 1 - tail]))


def noise_variance(utilities: np.ndarray) -> float:
    """One replicate's coalition-specific noise variance: each coalition's deviations from its own
    mean, after removing the replicates' common shift (what common random numbers share across
    coalitions does not change a ranking), pooled over coalitions."""
    centred = utilities - utilities.mean(axis=0, keepdims=True)
    within = centred - centred.mean(axis=1, keepdims=True)
    return float((within**2).sum() / (len(utilities) - 1) / (utilities.shape[1] - 1))


def variance_reliability(utilities: np.ndarray) -> float:
    """1 - (noise variance of the replicate mean) / (variance of the replicate means across
    coalitions); the replicate mean's noise is one replicate's over the number of replicates."""
    noise = noise_variance(utilities) / utilities.shape[1]
    total = float(utilities.mean(axis=1).var(ddof=1))
    return 1 - noise / total if total > 0 else float("nan")


if __name__ == "__main__":
    main()

"""The retraining game's noise ceiling with and without common random numbers.

    .venv/bin/python benchmarks/retrain_noise.py [--model results/cache/model/<key>/model]
        [--coalitions 16] [--replicates 2] [--game finetune] [--workdir /tmp/retrain-noise]

For the first `--coalitions` held-out coalitions of the embedded default, the retraining game
(`--game`, with the default's settings) is played `--replicates` times per coalition, once with
`evaluation.retrain.common_random_numbers` on and once off, by the workflow's own function
(`surrogateshap.retraining.retrain_coalitions`); the table gives each metric's noise ceiling
(split-half, Spearman-Brown corrected) in both settings. The data, classifier and (unless
`--model` names a trained one) the main model are built under `--workdir` first. Seconds are
printed for orientation only: they depend on the machine's load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common
import numpy as np
import pandas as pd

from surrogateshap import evaluation, models, retraining
from surrogateshap.config import merge, stage_section
from surrogateshap.steps.common import load_prepared, load_reference


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
    parser.add_argument("--workdir", default="/tmp/retrain-noise")
    args = parser.parse_args()
    _common.quiet_libraries()
    config = _common.default_config()
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
    ceilings = {}
    for common in (True, False):
        retrain = {"common_random_numbers": common}
        if args.steps:
            retrain |= {
                "train": {"steps": args.steps},
                "finetune": {"train": {"steps": args.steps}},
            }
        if args.samples:
            retrain["samples"] = args.samples
        changed = merge(config, {"evaluation": {"retrain": retrain}})
        cfg = stage_section(changed, "retrain")
        started = time.perf_counter()
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
            f"crn {'on' if common else 'off'}",
        )
        seconds = time.perf_counter() - started
        _common.note(
            f"common random numbers {'on' if common else 'off'}: {seconds:.0f}s (load-dependent)"
        )
        ceilings[common] = {
            m: evaluation.noise_ceiling(
                rows.pivot(index="coalition", columns="replicate", values=m).to_numpy()
            )
            for m in metric_names
        }
    out = pd.DataFrame(
        {
            "metric": metric_names,
            "ceiling_crn_on": [ceilings[True][m] for m in metric_names],
            "ceiling_crn_off": [ceilings[False][m] for m in metric_names],
        }
    )
    print(out.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

"""The trained extractor against the digits classifier on the same generated pools.

Run from the repository root after a run of a digits config (`make demo`, or `snakemake` with
the same `--configfile` files given here); its data, pool, coalitions and classifier are found in
results/cache by that config's stage keys:

    PYTHONPATH=src python benchmarks/extractor_comparison.py [--configfile my.yaml] --out compare

For each extractor it computes its own Fréchet reference, features, pooled utilities and surrogate
Shapley values, and prints where the planted contributors rank (docs/own-data-trained.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _common import stage_dirs  # benchmarks/_common.py, beside this script

from surrogateshap.data import planted
from surrogateshap.evaluation.scores import expected_placements, placement_table
from surrogateshap.workflow.config import load_yaml, merge, validate_config
from surrogateshap.workflow.steps import attribution, game, generation
from surrogateshap.workflow.steps import models as model_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument("--out", default="compare")
    args = parser.parse_args()
    config = load_yaml("config/config.yaml")
    for path in args.configfile:
        config = merge(config, load_yaml(path))
    config = validate_config(config, "workflow/schemas/config.schema.yaml")
    dirs = stage_dirs(config, Path("results/cache"))  # this config's run, not any run's
    data_dir = str(dirs["data"])
    pool = sorted(str(p) for p in (dirs["pool"] / "shards").glob("*.parquet"))
    if not pool:
        raise SystemExit(f"no pool shards of this config's run in {dirs['pool']}: run it first")
    coalitions = str(dirs["coalitions"] / "coalitions.parquet")
    metrics = config["metrics"]
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    model_steps.train_extractor(
        data_dir=data_dir,
        cfg=config["classifier"],
        image_size=config["data"]["image_size"],
        seed=config["seed"],
        threads=1,
        out_path=str(out / "trained.safetensors"),
        metrics_path=str(out / "trained.json"),
    )
    digits = str(dirs["classifier"] / "classifier.safetensors")
    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    rows = []
    for kind, classifier in (("digits", digits), ("trained", str(out / "trained.safetensors"))):
        feat_cfg = dict(config["features"], extractor=kind)
        reference = str(out / f"{kind}-reference.parquet")
        model_steps.reference_features(
            classifier_path=classifier, out_path=reference, feat_cfg=feat_cfg, data_dir=data_dir
        )
        shards = [str(out / f"{kind}-features-{i}.parquet") for i in range(len(pool))]
        for shard, target in zip(pool, shards):
            generation.extract_features(
                pool_shard=shard,
                classifier_path=classifier,
                marker_size={
                    "position": "top-left",
                    "size": config["data"]["digits"]["marker_size"],
                },
                feat_cfg=feat_cfg,
                threads=1,
                out_path=target,
            )
        utilities = str(out / f"{kind}-utilities.parquet")
        game.pooled_utilities(
            data_dir=data_dir,
            coalitions_path=coalitions,
            feature_shards=shards,
            reference_path=reference,
            metric_names=metrics,
            out_path=utilities,
        )
        tables = []
        for metric in metrics:
            path = out / f"{kind}-{metric}.parquet"
            attribution.attribute(
                data_dir=data_dir,
                utilities_path=utilities,
                metric=metric,
                cfg=config["surrogate"],
                threads=2,
                out_path=str(path),
            )
            tables.append(pd.read_parquet(path).assign(method=kind, metric=metric))
        values = pd.concat(tables)
        expected = expected_placements(planted.entries(config["data"]), names, metrics)
        rows.append(placement_table(values, expected))
    result = pd.concat(rows)
    result.to_csv(out / "placements.csv", index=False)
    print(result.to_string(index=False))


if __name__ == "__main__":
    main()

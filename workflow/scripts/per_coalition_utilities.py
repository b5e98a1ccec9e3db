# Used by both per_coalition_utilities (all coalitions) and proxy_check_shard (the check's subset).
import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import game
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
game_cfg = cfg["game"]
rows = None
if snakemake.params.rows == "check":
    import pandas as pd

    rows = game.check_rows(
        len(pd.read_parquet(snakemake.input.coalitions)),
        game_cfg["check"]["coalitions"],
        game_cfg["check"]["seed"],
    )
game.per_coalition_utilities(
    data_dir=snakemake.input.data.rsplit("/", 1)[0],
    model=snakemake.params.model,
    classifier_path=snakemake.input.classifier,
    reference_path=snakemake.input.reference,
    coalitions_path=snakemake.input.coalitions,
    gen_cfg=cfg["generation"],
    empty_coalition=game_cfg["empty_coalition"],
    samples_per_coalition=game_cfg["per_coalition"]["samples"],
    marker_size=snakemake.params.marker_size,
    feat_cfg=cfg["features"],
    metric_names=cfg["metrics"],
    seed=cfg["seed"],
    scatteritem=snakemake.wildcards.scatteritem,
    threads=snakemake.threads,
    out_path=snakemake.output[0],
    rows=rows,
)

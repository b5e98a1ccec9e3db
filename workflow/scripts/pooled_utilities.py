import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import game
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
game.pooled_utilities(
    data_dir=snakemake.input.data.rsplit("/", 1)[0],
    coalitions_path=snakemake.input.coalitions,
    feature_shards=list(snakemake.input.features),
    reference_path=snakemake.input.reference,
    metric_names=snakemake.params.cfg["metrics"],
    out_path=snakemake.output[0],
    custom=snakemake.params.custom,
    coalitions_cfg=snakemake.params.coalitions,
    surrogate_cfg=snakemake.params.surrogate,
    threads=snakemake.threads,
)

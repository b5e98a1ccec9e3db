import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import game
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
game.compare_modes(
    pooled_path=snakemake.input.pooled,
    shards=list(snakemake.input.shards),
    metric_names=snakemake.params.metrics,
    out_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
)

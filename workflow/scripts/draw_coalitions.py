import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import data
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
data.draw_coalitions(
    data_dir=snakemake.input.contributors.rsplit("/", 1)[0],
    cfg=snakemake.params.cfg["coalitions"],
    out_path=snakemake.output[0],
)

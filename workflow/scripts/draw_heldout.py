import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import evaluation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
evaluation.draw_heldout(
    data_dir=snakemake.input[0].rsplit("/", 1)[0],
    cfg=snakemake.params.cfg,
    out_path=snakemake.output[0],
)

import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import attribution
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
attribution.payout(
    attribution_paths=list(snakemake.input),
    cfg=snakemake.params.cfg,
    out_path=snakemake.output[0],
)

import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import data
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
data.prepare_data(
    data_cfg=snakemake.params.cfg["data"],
    seed=snakemake.params.cfg["seed"],
    out_dir=snakemake.output.info.rsplit("/", 1)[0],
)

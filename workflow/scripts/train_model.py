import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import models
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
models.train_model(
    data_dir=snakemake.input[0].rsplit("/", 1)[0],
    cfg=cfg["model"],
    data_cfg=snakemake.params.data["data"],
    seed=cfg["seed"],
    threads=snakemake.threads,
    out_dir=snakemake.output[0],
)

import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import models
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
models.train_classifier(
    cfg=cfg["classifier"],
    seed=cfg["seed"],
    threads=snakemake.threads,
    out_path=snakemake.output.model,
    metrics_path=snakemake.output.metrics,
)

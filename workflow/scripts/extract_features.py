import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import generation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
generation.extract_features(
    pool_shard=snakemake.input.pool,
    classifier_path=snakemake.input.classifier,
    marker_size=snakemake.params.marker_size,
    feat_cfg=snakemake.params.cfg["features"],
    threads=snakemake.threads,
    out_path=snakemake.output[0],
)

import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import attribution
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
attribution.attribute(
    data_dir=snakemake.input.data.rsplit("/", 1)[0],
    utilities_path=snakemake.input.utilities,
    metric=snakemake.wildcards.metric,
    cfg=snakemake.params.cfg["surrogate"],
    threads=snakemake.threads,
    out_path=snakemake.output.values,
    interactions_path=snakemake.output.interactions,
)

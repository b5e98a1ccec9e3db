import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import evaluation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
inp = snakemake.input
evaluation.evaluation_tables(
    data_dir=inp.data.rsplit("/", 1)[0],
    values_path=inp.values,
    interaction_paths=list(inp.interactions),
    heldout_proxy_path=inp.heldout_proxy,
    heldout_shards=list(inp.heldout),
    removals_path=inp.removals,
    removal_shards=list(inp.removed),
    fidelity_shards=list(inp.fidelity),
    metric_names=snakemake.params.metrics,
    cfg=snakemake.params.cfg,
    threads=snakemake.threads,
    out_dir=snakemake.output[0],
)

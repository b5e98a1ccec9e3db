import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import evaluation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
evaluation.evaluation_baselines(
    data_dir=inp.data.rsplit("/", 1)[0],
    utilities_path=inp.utilities,
    attribution_paths=list(inp.attributions),
    pool_shards=list(inp.pools),
    feature_shards=list(inp.features),
    reference_path=inp.reference,
    classifier_path=inp.classifier,
    heldout_path=inp.heldout,
    metric_names=snakemake.params.metrics,
    cfg=snakemake.params.cfg,
    values_path=out.values,
    heldout_proxy_path=out.heldout_proxy,
    removals_path=out.removals,
)

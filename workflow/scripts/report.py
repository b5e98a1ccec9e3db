import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import report
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
# a named input is a plain string when it holds one file, a list when it holds none
check = [inp.check] if isinstance(inp.check, str) else list(inp.check)
evaluation = inp.get("tables")  # the evaluate target's report has an evaluation section
report.write_report(
    out_path=out[0],
    config=snakemake.params.config,
    keys=snakemake.params.stage_keys,
    attribution_paths=list(inp.attributions),
    utilities_path=inp.utilities,
    contributors_path=inp.contributors,
    pool_paths=list(inp.pools),
    classifier_metrics_path=inp.classifier,
    check_summary_path=check[0] if check else None,
    evaluation_dir=evaluation,
    evaluation_copy=out.tables if evaluation else None,
    fingerprints=snakemake.params.fingerprints,
    payout_path=inp.get("payout"),
)

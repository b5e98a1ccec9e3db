import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.io import write_json
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
write_json(
    snakemake.output[0],
    dict(snakemake.params.fingerprints, stage_keys=snakemake.params.stage_keys),
)

import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import game
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
game.gather_utilities(shards=list(snakemake.input), out_path=snakemake.output[0])

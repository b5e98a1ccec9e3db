import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import generation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
generation.generate_pool_shard(
    data_dir=snakemake.input.data.rsplit("/", 1)[0],
    model=snakemake.params.model,
    gen_cfg=cfg["generation"],
    empty_coalition=cfg["game.empty_coalition"],
    seed=cfg["seed"],
    scatteritem=snakemake.wildcards.scatteritem,
    threads=snakemake.threads,
    out_path=snakemake.output[0],
)

from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
steps.generate_pool_shard(
    snakemake.input.data.rsplit("/", 1)[0],
    snakemake.params.model,
    cfg["generation"],
    cfg["game.empty_coalition"],
    cfg["seed"],
    snakemake.wildcards.scatteritem,
    snakemake.threads,
    snakemake.output[0],
)

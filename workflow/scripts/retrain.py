from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
inp = snakemake.input
steps.retrain_shard(
    inp.data.rsplit("/", 1)[0],
    inp.coalitions,
    snakemake.params.cfg,
    inp.classifier,
    inp.reference,
    snakemake.params.marker_size,
    snakemake.wildcards.scatteritem,
    snakemake.threads,
    snakemake.output[0],
)

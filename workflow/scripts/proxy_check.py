from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.compare_modes(
    snakemake.input.pooled,
    list(snakemake.input.shards),
    snakemake.params.metrics,
    snakemake.output.table,
    snakemake.output.summary,
)

from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.attribute(
    snakemake.input.data.rsplit("/", 1)[0],
    snakemake.input.utilities,
    snakemake.wildcards.metric,
    snakemake.params.cfg["surrogate"],
    snakemake.output.values,
    snakemake.output.interactions,
)

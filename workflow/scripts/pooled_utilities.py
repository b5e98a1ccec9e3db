from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.pooled_utilities(
    snakemake.input.data.rsplit("/", 1)[0],
    snakemake.input.coalitions,
    list(snakemake.input.features),
    snakemake.input.reference,
    snakemake.params.cfg["metrics"],
    snakemake.output[0],
    custom=snakemake.params.custom,
    coalitions_cfg=snakemake.params.coalitions,
    surrogate_cfg=snakemake.params.surrogate,
)

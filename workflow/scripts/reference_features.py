from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.reference_features(
    snakemake.input[0],
    snakemake.output[0],
    snakemake.params.features,
    snakemake.input.data.rsplit("/", 1)[0],
)

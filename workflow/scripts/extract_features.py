from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.extract_features(
    snakemake.input.pool,
    snakemake.input.classifier,
    snakemake.params.marker_size,
    snakemake.params.cfg["features"],
    snakemake.threads,
    snakemake.output[0],
)

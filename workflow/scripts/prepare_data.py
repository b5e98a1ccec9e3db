from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.prepare_data(
    snakemake.params.cfg["data"],
    snakemake.params.cfg["seed"],
    snakemake.output.info.rsplit("/", 1)[0],
)

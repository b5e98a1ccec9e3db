from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.draw_coalitions(
    snakemake.input.contributors.rsplit("/", 1)[0],
    snakemake.params.cfg["coalitions"],
    snakemake.output[0],
)

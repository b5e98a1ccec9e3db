from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.draw_heldout(snakemake.input[0].rsplit("/", 1)[0], snakemake.params.cfg, snakemake.output[0])

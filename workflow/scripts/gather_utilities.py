from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.gather_utilities(list(snakemake.input), snakemake.output[0])

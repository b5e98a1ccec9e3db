from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
steps.publish(snakemake.input[0], snakemake.output[0])

from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
steps.train_model(
    snakemake.input[0].rsplit("/", 1)[0],
    cfg["model"],
    snakemake.params.data["data"],
    cfg["seed"],
    snakemake.threads,
    snakemake.output[0],
)

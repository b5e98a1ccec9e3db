from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
steps.train_classifier(
    cfg["classifier"],
    cfg["seed"],
    snakemake.threads,
    snakemake.output.model,
    snakemake.output.metrics,
)

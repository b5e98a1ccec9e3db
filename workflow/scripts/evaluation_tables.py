from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
inp = snakemake.input
steps.evaluate(
    inp.data.rsplit("/", 1)[0],
    inp.values,
    list(inp.interactions),
    inp.heldout_proxy,
    list(inp.heldout),
    inp.removals,
    list(inp.removed),
    snakemake.params.metrics,
    snakemake.params.cfg,
    snakemake.output[0],
)

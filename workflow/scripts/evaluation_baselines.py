from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
steps.evaluation_baselines(
    inp.data.rsplit("/", 1)[0],
    inp.utilities,
    list(inp.attributions),
    list(inp.pools),
    list(inp.features),
    inp.reference,
    inp.classifier,
    inp.heldout,
    snakemake.params.metrics,
    snakemake.params.cfg,
    out.values,
    out.heldout_proxy,
    out.removals,
)

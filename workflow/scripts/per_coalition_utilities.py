# Used by both per_coalition_utilities (all coalitions) and proxy_check_shard (the check's subset).
from surrogateshap import steps

steps.setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
game = cfg["game"]
rows = None
if snakemake.params.rows == "check":
    import pandas as pd

    rows = steps.check_rows(
        len(pd.read_parquet(snakemake.input.coalitions)),
        game["check"]["coalitions"],
        game["check"]["seed"],
    )
steps.per_coalition_utilities(
    snakemake.input.data.rsplit("/", 1)[0],
    snakemake.params.model,
    snakemake.input.classifier,
    snakemake.input.reference,
    snakemake.input.coalitions,
    cfg["generation"],
    game["empty_coalition"],
    game["per_coalition"]["samples"],
    snakemake.params.marker_size,
    cfg["features"],
    cfg["metrics"],
    cfg["seed"],
    snakemake.wildcards.scatteritem,
    snakemake.threads,
    snakemake.output[0],
    rows=rows,
)

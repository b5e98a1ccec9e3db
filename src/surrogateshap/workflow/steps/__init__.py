"""One function per workflow rule, one module per rule file of workflow/rules/:

    data.smk -> data          models.smk -> models      generate.smk -> generation
    game.smk -> game          attribute.smk -> attribution
    report.smk -> report      evaluate.smk -> evaluation

plus `common` (logging, shards, the prepared dataset) shared by them. Rule scripts only unpack
Snakemake's objects and call these with named arguments, so every step can be run and tested
without Snakemake.
"""

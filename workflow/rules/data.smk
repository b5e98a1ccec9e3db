# No inputs: a folder dataset's metadata table and images are the user's files, named by paths
# Snakemake must not parse (wildcards, path variables); their fingerprints are in the data key.
rule prepare_data:
    output:
        items_table=f"{DATA_DIR}/items.parquet",
        contributors=f"{DATA_DIR}/contributors.parquet",
        info=f"{DATA_DIR}/dataset.json",
    log:
        log_path("prepare_data", KEYS["data"]),
    benchmark:
        benchmark_path("prepare_data", KEYS["data"])
    # first among the ready jobs: it decodes every image, which the parse-time check does not
    priority: 100
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=30,
    params:
        cfg=section("data"),
    script:
        "../scripts/prepare_data.py"


rule draw_coalitions:
    input:
        contributors=rules.prepare_data.output.contributors,
        table=config["coalitions"]["table"] or [],
    output:
        COALITIONS,
    log:
        log_path("draw_coalitions", KEYS["coalitions"]),
    benchmark:
        benchmark_path("draw_coalitions", KEYS["coalitions"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=30,
    params:
        cfg=section("coalitions"),
    script:
        "../scripts/draw_coalitions.py"

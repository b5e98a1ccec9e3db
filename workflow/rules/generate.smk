rule generate_pool:
    """Pools of generated images, one shard of contributors per job."""
    input:
        data=rules.prepare_data.output.info,
        model=model_input(),
    output:
        f"{stage_dir('pool')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("generate_pool", KEYS["pool"], "{scatteritem}"),
    benchmark:
        benchmark_path("generate_pool", KEYS["pool"], "{scatteritem}")
    group:
        pool_group
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(16000),
        runtime=120,
        gpu=1,
    params:
        cfg=section("pool"),
        model=MODEL_SPEC,
    script:
        "../scripts/generate_pool.py"


rule extract_features:
    input:
        pool=f"{stage_dir('pool')}/shards/{{scatteritem}}.parquet",
        classifier=CLASSIFIER,
    output:
        f"{stage_dir('features')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("extract_features", KEYS["features"], "{scatteritem}"),
    benchmark:
        benchmark_path("extract_features", KEYS["features"], "{scatteritem}")
    group:
        pool_group
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(8000),
        runtime=60,
    params:
        cfg=section("features"),
        marker_size=MARKER,
    script:
        "../scripts/extract_features.py"

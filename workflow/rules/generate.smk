def pool_group(wildcards):
    """The submitted job (Snakemake job group) that holds this shard's generation and features.

    `group-components: pool=K` (profiles/slurm) puts K consecutive shards in one job, named by
    the shards it holds (`pool_shards_1-2-of-4`); unset or 1: one job per shard for both rules.
    Local runs ignore groups. Each named group is
    registered under "pool", as Snakemake does for a group pattern with wildcards, so that
    `group-components: pool=K` merges the shards of one name into one job."""
    per_job = workflow.group_settings.group_components.get("pool", 1)
    if per_job < 1:
        return None
    shard, shards = map(int, wildcards.scatteritem.split("-of-"))
    first = (shard - 1) // per_job * per_job + 1
    last = min(first + per_job - 1, shards)
    name = f"pool_shard_{first}-of-{shards}"
    if last > first:
        name = f"pool_shards_{first}-{last}-of-{shards}"
    workflow.parent_groupids[name] = "pool"
    return name


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
    group:
        pool_group
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
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(8000),
        runtime=60,
    params:
        cfg=section("features"),
        marker_size=MARKER,
    group:
        pool_group
    script:
        "../scripts/extract_features.py"

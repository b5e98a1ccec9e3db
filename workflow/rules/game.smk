# The proxy game: a utility table with one row per coalition and one column per metric.

if config["game"]["mode"] == "pooled":

    rule pooled_utilities:
        input:
            data=rules.prepare_data.output.contributors,
            coalitions=COALITIONS,
            features=gather.pool(f"{stage_dir('features')}/shards/{{scatteritem}}.parquet"),
            reference=REFERENCE,
        output:
            UTILITIES,
        log:
            log_path("pooled_utilities", KEYS["utilities"]),
        benchmark:
            benchmark_path("pooled_utilities", KEYS["utilities"])
        conda:
            CPU_ENV
        threads: 1
        resources:
            mem_mb=memory(16000),
            runtime=120,
        params:
            cfg=section("utilities"),
            custom=canonical(config["features"]["custom_metrics"]),
            # what the coalition rounds read (in the stage key only when rounds.max > 1)
            coalitions=canonical(config["coalitions"]) if coalition_rounds(config) else None,
            surrogate=canonical(config["surrogate"]) if coalition_rounds(config) else None,
        script:
            "../scripts/pooled_utilities.py"

else:

    rule per_coalition_utilities:
        """The paper's way: fresh samples for each coalition, one shard of coalitions per job."""
        input:
            data=rules.prepare_data.output.info,
            model=model_input(),
            classifier=CLASSIFIER,
            reference=REFERENCE,
            coalitions=COALITIONS,
        output:
            f"{stage_dir('utilities')}/shards/{{scatteritem}}.parquet",
        log:
            log_path("per_coalition_utilities", KEYS["utilities"], "{scatteritem}"),
        benchmark:
            benchmark_path("per_coalition_utilities", KEYS["utilities"], "{scatteritem}")
        conda:
            GPU_ENV
        threads: 1
        resources:
            mem_mb=memory(16000),
            runtime=120,
            gpu=1,
        params:
            cfg=section("proxy_check"),
            model=MODEL_SPEC,
            marker_size=MARKER,
            rows=None,
        script:
            "../scripts/per_coalition_utilities.py"

    rule gather_utilities:
        input:
            gather.coalition_shard(f"{stage_dir('utilities')}/shards/{{scatteritem}}.parquet"),
        output:
            UTILITIES,
        log:
            log_path("gather_utilities", KEYS["utilities"]),
        benchmark:
            benchmark_path("gather_utilities", KEYS["utilities"])
        conda:
            CPU_ENV
        resources:
            mem_mb=memory(2000),
            runtime=30,
        script:
            "../scripts/gather_utilities.py"


rule proxy_check_shard:
    """Re-score a few coalitions the per-coalition way, to check the pooled mixtures."""
    input:
        data=rules.prepare_data.output.info,
        model=model_input(),
        classifier=CLASSIFIER,
        reference=REFERENCE,
        coalitions=COALITIONS,
    output:
        f"{stage_dir('proxy_check')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("proxy_check_shard", KEYS["proxy_check"], "{scatteritem}"),
    benchmark:
        benchmark_path("proxy_check_shard", KEYS["proxy_check"], "{scatteritem}")
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(16000),
        runtime=60,
        gpu=1,
    params:
        cfg=section("proxy_check"),
        model=MODEL_SPEC,
        marker_size=MARKER,
        rows="check",
    script:
        "../scripts/per_coalition_utilities.py"


rule proxy_check:
    input:
        pooled=UTILITIES,
        shards=gather.check_shard(f"{stage_dir('proxy_check')}/shards/{{scatteritem}}.parquet"),
    output:
        table=f"{stage_dir('proxy_check')}/check.parquet",
        summary=CHECK_SUMMARY,
    log:
        log_path("proxy_check", KEYS["proxy_check"]),
    benchmark:
        benchmark_path("proxy_check", KEYS["proxy_check"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=30,
    params:
        metrics=METRICS,
    script:
        "../scripts/proxy_check.py"

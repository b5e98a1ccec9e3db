# The `evaluate` target: the retraining game on held-out coalitions, LDS of every method,
# proxy fidelity, counterfactual removal, baselines and planted ground truth.
EVAL_RUN = f"{RUN}/evaluation"


rule draw_heldout:
    input:
        rules.prepare_data.output.contributors,
    output:
        f"{stage_dir('heldout')}/heldout.parquet",
    log:
        log_path("draw_heldout", KEYS["heldout"]),
    benchmark:
        benchmark_path("draw_heldout", KEYS["heldout"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=30,
    params:
        cfg=section("heldout"),
    script:
        "../scripts/draw_heldout.py"


rule evaluation_baselines:
    """Every method's values on the same proxy game, and the coalitions counterfactual removal needs."""
    input:
        data=rules.prepare_data.output.info,
        utilities=UTILITIES,
        attributions=expand(f"{stage_dir('attribution')}/{{metric}}.parquet", metric=METRICS),
        pools=gather.pool(f"{stage_dir('pool')}/shards/{{scatteritem}}.parquet"),
        features=gather.pool(f"{stage_dir('features')}/shards/{{scatteritem}}.parquet"),
        reference=REFERENCE,
        classifier=CLASSIFIER,
        heldout=rules.draw_heldout.output[0],
    output:
        values=f"{stage_dir('baselines')}/values.parquet",
        heldout_proxy=f"{stage_dir('baselines')}/heldout_proxy.parquet",
        removals=f"{stage_dir('baselines')}/removals.parquet",
    log:
        log_path("evaluation_baselines", KEYS["baselines"]),
    benchmark:
        benchmark_path("evaluation_baselines", KEYS["baselines"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(8000),
        runtime=120,
    params:
        cfg=section("baselines"),
        metrics=METRICS,
    script:
        "../scripts/evaluation_baselines.py"


# The finetune game starts from the trained model; the full game needs none.
RETRAIN_BASE = [MODEL_DIR] if config["evaluation"]["retrain"]["game"] == "finetune" else []


rule retrain_heldout:
    """Retraining game: a model trained on each held-out coalition's data alone, every replicate
    (one shard per job)."""
    input:
        data=rules.prepare_data.output.info,
        coalitions=rules.draw_heldout.output[0],
        classifier=CLASSIFIER,
        reference=REFERENCE,
        base=RETRAIN_BASE,
        retrainable=retrainable,
    output:
        f"{stage_dir('retrain')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("retrain_heldout", KEYS["retrain"], "{scatteritem}"),
    benchmark:
        benchmark_path("retrain_heldout", KEYS["retrain"], "{scatteritem}")
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(16000),
        runtime=240,
        gpu=1,
    params:
        cfg=section("retrain"),
        marker_size=MARKER,
        purpose="heldout",
    script:
        "../scripts/retrain.py"


rule retrain_counterfactual:
    """Retraining game: the grand coalition without each method's top-k / bottom-k (one replicate)."""
    input:
        data=rules.prepare_data.output.info,
        coalitions=rules.evaluation_baselines.output.removals,
        classifier=CLASSIFIER,
        reference=REFERENCE,
        base=RETRAIN_BASE,
    output:
        f"{stage_dir('counterfactual')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("retrain_counterfactual", KEYS["counterfactual"], "{scatteritem}"),
    benchmark:
        benchmark_path("retrain_counterfactual", KEYS["counterfactual"], "{scatteritem}")
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(16000),
        runtime=240,
        gpu=1,
    params:
        cfg=section("counterfactual"),
        marker_size=MARKER,
        purpose="counterfactual",
    script:
        "../scripts/retrain.py"


rule retrain_fidelity:
    """Full retraining of the first evaluation.retrain.fidelity.coalitions held-out coalitions, the
    truth the cheaper game's fidelity is measured against (no coalitions when the game is full)."""
    input:
        data=rules.prepare_data.output.info,
        coalitions=rules.draw_heldout.output[0],
        classifier=CLASSIFIER,
        reference=REFERENCE,
    output:
        f"{stage_dir('fidelity')}/shards/{{scatteritem}}.parquet",
    log:
        log_path("retrain_fidelity", KEYS["fidelity"], "{scatteritem}"),
    benchmark:
        benchmark_path("retrain_fidelity", KEYS["fidelity"], "{scatteritem}")
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(16000),
        runtime=240,
        gpu=1,
    params:
        cfg=section("fidelity"),
        marker_size=MARKER,
        purpose="fidelity",
    script:
        "../scripts/retrain.py"


rule evaluation_tables:
    input:
        data=rules.prepare_data.output.contributors,
        values=rules.evaluation_baselines.output.values,
        interactions=expand(
            f"{stage_dir('attribution')}/{{metric}}.interactions.parquet", metric=METRICS
        ),
        heldout_proxy=rules.evaluation_baselines.output.heldout_proxy,
        heldout=gather.retrain(f"{stage_dir('retrain')}/shards/{{scatteritem}}.parquet"),
        removals=rules.evaluation_baselines.output.removals,
        removed=gather.retrain(f"{stage_dir('counterfactual')}/shards/{{scatteritem}}.parquet"),
        fidelity=gather.retrain(f"{stage_dir('fidelity')}/shards/{{scatteritem}}.parquet"),
    output:
        directory(f"{stage_dir('evaluation')}/tables"),
    log:
        log_path("evaluation_tables", KEYS["evaluation"]),
    benchmark:
        benchmark_path("evaluation_tables", KEYS["evaluation"])
    conda:
        CPU_ENV
    threads: 1
    resources:
        mem_mb=memory(8000),
        runtime=60,
    params:
        cfg=section("evaluation"),
        metrics=METRICS,
    script:
        "../scripts/evaluation_tables.py"


rule evaluation_report:
    """The run's report with the evaluation section, and the evaluation tables beside it."""
    input:
        tables=rules.evaluation_tables.output[0],
        attributions=expand(f"{RUN}/attributions/{{metric}}.parquet", metric=METRICS),
        payout=rules.payout.output[0],
        utilities=f"{RUN}/utilities.parquet",
        contributors=rules.prepare_data.output.contributors,
        pools=gather.pool(f"{stage_dir('pool')}/shards/{{scatteritem}}.parquet"),
        classifier=CLASSIFIER_METRICS,
        check=CHECK_SUMMARY if CHECK_ENABLED else [],
    output:
        report=report(
            f"{EVAL_RUN}/index.html", category="Evaluation", caption="../report/evaluation.rst"
        ),
        tables=directory(f"{EVAL_RUN}/tables"),
    log:
        log_path("evaluation_report", config["run"]),
    benchmark:
        benchmark_path("evaluation_report", config["run"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(4000),
        runtime=30,
    params:
        config=config,
        stage_keys=KEYS,
        fingerprints=FINGERPRINTS,
    script:
        "../scripts/report.py"


rule evaluate:
    """Target: snakemake evaluate --cores 2"""
    input:
        rules.evaluation_report.output.report,

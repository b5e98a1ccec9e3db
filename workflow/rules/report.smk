rule record_fingerprints:
    """What went into this run's stage keys (a later run's cache.code_fingerprints can name it)."""
    output:
        f"{RUN}/fingerprints.json",
    log:
        log_path("record_fingerprints", config["run"]),
    conda:
        CPU_ENV
    params:
        fingerprints=FINGERPRINTS,
        stage_keys=KEYS,
    script:
        "../scripts/record_fingerprints.py"


rule html_report:
    """The self-contained HTML report of the run."""
    input:
        attributions=expand(f"{RUN}/attributions/{{metric}}.parquet", metric=METRICS),
        payout=rules.payout.output[0],
        utilities=f"{RUN}/utilities.parquet",
        contributors=rules.publish_contributors.output[0],
        pools=gather.pool(f"{stage_dir('pool')}/shards/{{scatteritem}}.parquet"),
        classifier=CLASSIFIER_METRICS,
        check=CHECK_SUMMARY if CHECK_ENABLED else [],
        fingerprints=rules.record_fingerprints.output[0],
    output:
        report(REPORT_HTML, category="Report", caption="../report/index.rst"),
    log:
        log_path("html_report", config["run"]),
    benchmark:
        benchmark_path("html_report", config["run"])
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

rule attribute:
    """Surrogate fit and TreeSHAP values for one metric."""
    input:
        data=rules.prepare_data.output.contributors,
        utilities=UTILITIES,
    output:
        values=f"{stage_dir('attribution')}/{{metric}}.parquet",
        interactions=f"{stage_dir('attribution')}/{{metric}}.interactions.parquet",
    log:
        log_path("attribute", KEYS["attribution"], "{metric}"),
    benchmark:
        benchmark_path("attribute", KEYS["attribution"], "{metric}")
    wildcard_constraints:
        metric="|".join(METRICS),
    conda:
        CPU_ENV
    threads: 1
    resources:
        mem_mb=memory(8000),
        runtime=120,
    params:
        cfg=section("attribution"),
    script:
        "../scripts/attribute.py"


rule publish_utilities:
    input:
        UTILITIES,
    output:
        report(f"{RUN}/utilities.parquet", category="Tables", caption="../report/utilities.rst"),
    log:
        log_path("publish", config["run"], "utilities"),
    benchmark:
        benchmark_path("publish", config["run"], "utilities")
    conda:
        CPU_ENV
    shell:
        COPY


rule publish_contributors:
    """Contributor names as given, their safe keys (what any per-contributor path must use) and item counts."""
    input:
        rules.prepare_data.output.contributors,
    output:
        report(
            f"{RUN}/contributors.parquet", category="Tables", caption="../report/contributors.rst"
        ),
    log:
        log_path("publish", config["run"], "contributors"),
    benchmark:
        benchmark_path("publish", config["run"], "contributors")
    conda:
        CPU_ENV
    shell:
        COPY


rule publish_attribution:
    input:
        f"{stage_dir('attribution')}/{{metric}}.parquet",
    output:
        report(
            f"{RUN}/attributions/{{metric}}.parquet",
            category="Tables",
            caption="../report/attribution.rst",
            labels={"metric": "{metric}"},
        ),
    log:
        log_path("publish", config["run"], "{metric}"),
    benchmark:
        benchmark_path("publish", config["run"], "{metric}")
    wildcard_constraints:
        metric="|".join(METRICS),
    conda:
        CPU_ENV
    shell:
        COPY


rule payout:
    """The budget of config `payout` split among the contributors by their values."""
    input:
        expand(f"{RUN}/attributions/{{metric}}.parquet", metric=METRICS),
    output:
        report(f"{RUN}/payout.parquet", category="Tables", caption="../report/payout.rst"),
    log:
        log_path("payout", config["run"]),
    benchmark:
        benchmark_path("payout", config["run"])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=10,
    params:
        cfg=config["payout"],
    script:
        "../scripts/payout.py"

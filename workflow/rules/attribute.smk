rule attribute:
    """Surrogate fit and TreeSHAP values for one metric."""
    input:
        data=rules.prepare_data.output.contributors,
        utilities=UTILITIES,
    output:
        f"{stage_dir('attribution')}/{{metric}}.parquet",
    params:
        cfg=section("attribution"),
    wildcard_constraints:
        metric="|".join(METRICS),
    threads: 1
    log:
        log_path("attribute", KEYS["attribution"], "{metric}"),
    benchmark:
        benchmark_path("attribute", KEYS["attribution"], "{metric}"),
    script:
        "../scripts/attribute.py"


rule publish_utilities:
    input:
        UTILITIES,
    output:
        report(f"{RUN}/utilities.parquet", category="Tables", caption="../report/utilities.rst"),
    log:
        log_path("publish", config["run"], "utilities"),
    script:
        "../scripts/publish.py"


rule publish_attribution:
    input:
        f"{stage_dir('attribution')}/{{metric}}.parquet",
    output:
        report(f"{RUN}/attributions/{{metric}}.parquet", category="Tables", caption="../report/attribution.rst",
               labels={"metric": "{metric}"}),
    wildcard_constraints:
        metric="|".join(METRICS),
    log:
        log_path("publish", config["run"], "{metric}"),
    script:
        "../scripts/publish.py"

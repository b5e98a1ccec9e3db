rule train_classifier:
    """The digits classifier (features.extractor: digits), trained on scikit-learn's clean digits."""
    output:
        model=f"{stage_dir('classifier')}/classifier.safetensors",
        metrics=f"{stage_dir('classifier')}/metrics.json",
    log:
        log_path("train_classifier", KEYS["classifier"]),
    benchmark:
        benchmark_path("train_classifier", KEYS["classifier"])
    conda:
        CPU_ENV
    threads: 1
    resources:
        mem_mb=memory(4000),
        runtime=60,
    params:
        cfg=section("classifier"),
    script:
        "../scripts/train_classifier.py"


rule train_extractor:
    """features.extractor: trained: a classifier trained on the dataset itself (its labels, else
    its contributors), whose features and probabilities the metrics then use."""
    input:
        rules.prepare_data.output.info,
    output:
        model=f"{stage_dir('extractor')}/classifier.safetensors",
        metrics=f"{stage_dir('extractor')}/metrics.json",
    log:
        log_path("train_extractor", KEYS["extractor"]),
    benchmark:
        benchmark_path("train_extractor", KEYS["extractor"])
    conda:
        GPU_ENV
    threads: 1
    resources:
        mem_mb=memory(4000),
        runtime=60,
        gpu=1,
    params:
        cfg=section("extractor"),
    script:
        "../scripts/train_extractor.py"


rule reference_features:
    input:
        classifier=CLASSIFIER,
        data=[] if DIGITS_REFERENCE else rules.prepare_data.output.info,
    output:
        REFERENCE,
    log:
        log_path("reference_features", KEYS[REFERENCE_STAGE]),
    benchmark:
        benchmark_path("reference_features", KEYS[REFERENCE_STAGE])
    conda:
        CPU_ENV
    resources:
        mem_mb=memory(2000),
        runtime=30,
    params:
        features=None if DIGITS_REFERENCE else section("reference")["features"],
    script:
        "../scripts/reference_features.py"


# A GPU only for the tiny_text_to_image pipeline (the class-conditional UNet trains on the CPU).
if not config["model"]["path"]:

    rule train_model:
        """The class-conditional UNet, or the tiny_text_to_image pipeline, on a GPU where there is
        one (model.train.device)."""
        input:
            rules.prepare_data.output.info,
        output:
            directory(MODEL_DIR),
        log:
            log_path("train_model", KEYS["model"]),
        benchmark:
            benchmark_path("train_model", KEYS["model"])
        conda:
            GPU_ENV
        threads: 2
        resources:
            mem_mb=memory(8000),
            runtime=240,
            gpu=1,
        params:
            cfg=section("model"),
            data=section("data"),
        script:
            "../scripts/train_model.py"

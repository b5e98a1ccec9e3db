# Shared helpers: config validation, stage keys and the paths built from them.
import os
import sys
from pathlib import Path

# This workflow's own package (src/ beside workflow/) comes first, wherever the workflow lives:
# run in its clone, used as a module or deployed by snakedeploy (docs/deploy.md). The rule
# scripts do the same (scripts/_workflow_package.py). Without src/, an installed one is used.
PACKAGE_SRC = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1] / "src"
if (PACKAGE_SRC / "surrogateshap" / "__init__.py").is_file():
    sys.path.insert(0, str(PACKAGE_SRC))
try:
    from surrogateshap.workflow.config import (
        TRAINED_TEXT_TO_IMAGE,
        ConfigError,
        canonical,
        coalition_rounds,
        detector_box,
        model_spec,
        stage_keys,
        stage_section,
        validate_config,
        workflow_fingerprints,
    )
except ModuleNotFoundError as error:
    raise WorkflowError(
        f"cannot import the surrogateshap package ({error}): it is looked for in {PACKAGE_SRC} "
        "(the workflow's own src/) and among the installed packages. Use the workflow from a "
        "local clone (snakedeploy deploy-workflow <clone> <dir>, or a module whose snakefile is "
        "<clone>/workflow/Snakefile), or pip install the package; see docs/deploy.md"
    ) from None

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
try:
    validate_config(config, SCHEMA, source="config")
    # the files the config names (data, weights, user code) and the code each stage runs
    FINGERPRINTS = workflow_fingerprints(
        config, SCHEMA, PACKAGE_SRC.parent / "workflow" / "scripts"
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None

# Before the first job, in the process that schedules (jobs parse this file again and skip it):
# the data table, the user's functions, model paths and the design (surrogateshap.workflow.preflight).
# SURROGATESHAP_PREFLIGHT=off skips them, e.g. where the data is mounted on the compute nodes only.
if workflow.is_main_process and os.environ.get("SURROGATESHAP_PREFLIGHT", "on") != "off":
    from surrogateshap.workflow.preflight import preflight

    FINDINGS = preflight(config)
    for warning in FINDINGS.warnings:
        print(f"SurrogateSHAP warning: {warning}", file=sys.stderr)
    if FINDINGS.problems:
        raise WorkflowError(
            f"the config and its inputs have {len(FINDINGS.problems)} problem(s); nothing was "
            "run (surrogateshap check-data --configfile ... lists them too):\n  - "
            + "\n  - ".join(FINDINGS.problems)
        )


report: "../report/workflow.rst"


KEYS = stage_keys(config, FINGERPRINTS)
CACHE = "results/cache"
# Conda environments of the rules (with --sdm conda): the GPU rules' and every other rule's.
GPU_ENV = "../../envs/generate.yaml"
CPU_ENV = "../../envs/fit.yaml"
RUN = f"results/{config['run']}"


def stage_dir(stage):
    """Where a stage's outputs live: results/cache/<stage>/<key of its config and inputs>."""
    return f"{CACHE}/{stage}/{KEYS[stage]}"


def section(stage):
    """The config sections a stage reads: passed as params, so nothing else can trigger a rerun
    (in canonical order: reordering the keys of a config file triggers nothing either)."""
    return canonical(stage_section(config, stage))


def log_path(rule_name, *parts):
    return str(Path("logs", rule_name, *parts)) + ".log"


# What the publish_* rules run: copy a cached table into the run's folder, as is (its Parquet
# metadata included), beside it first and then renamed, so a half-copied file is never seen.
COPY = "(cp {input:q} {output:q}.partial && mv {output:q}.partial {output:q}) > {log:q} 2>&1"


def memory(mb):
    """A rule's default mem_mb: `mb` MB on the first attempt, that much more on each retry (the
    profiles' `retries`), so a job killed for memory comes back with more. Profiles override it
    (set-resources); see docs/deploy.md."""

    def mem_mb(wildcards, attempt):
        return mb * attempt

    return mem_mb


def benchmark_path(rule_name, *parts):
    """Snakemake's per-job wall time and peak memory (max_rss, MB), beside the logs."""
    return str(Path("logs", "benchmarks", rule_name, *parts)) + ".tsv"


scattergather:
    pool=config["generation"]["shards"],
    coalition_shard=config["game"]["per_coalition"]["shards"],
    check_shard=max(
        1, min(config["game"]["per_coalition"]["shards"], config["game"]["check"]["coalitions"])
    ),
    retrain=config["evaluation"]["retrain"]["shards"],


DATA_DIR = stage_dir("data")
MODEL_DIR = config["model"]["path"] or f"{stage_dir('model')}/model"
# What the generation steps load: the class-conditional UNet folder, or a text-to-image pipeline
# spec (the pipeline trained by the workflow as a stable_diffusion folder, as a user's would be).
MODEL_SPEC = model_spec(config, MODEL_DIR)
# model.type tiny_text_to_image: train_model trains a Stable Diffusion pipeline (on a GPU if any)
TRAINED_PIPELINE = config["model"]["type"] == TRAINED_TEXT_TO_IMAGE
TRAINED_EXTRACTOR = config["features"]["extractor"] == "trained"
# The network whose features and class probabilities the metrics use (with features.extractor
# digits or trained): the digits classifier, or one trained on the dataset itself.
FEATURE_STAGE = "extractor" if TRAINED_EXTRACTOR else "classifier"
# (features.extractor backbone: the backbone's folder stands in for it, e.g. for the similarity baselines)
CLASSIFIER = (
    config["features"]["backbone"]
    if config["features"]["extractor"] == "backbone"
    else f"{stage_dir(FEATURE_STAGE)}/classifier.safetensors"
)
CLASSIFIER_METRICS = f"{stage_dir(FEATURE_STAGE)}/metrics.json"
# The marker detector's box: features.marker, else the planted marker's, else the digits' corner.
MARKER = detector_box(config)
# The Fréchet distance's reference set: the clean digits in the digits classifier's features (it
# reads the classifier only), or (another features.extractor) the dataset's own images in that
# extractor's features (it reads the features settings and the dataset too).
DIGITS_REFERENCE = config["features"]["extractor"] == "digits"
REFERENCE_STAGE = "classifier" if DIGITS_REFERENCE else "reference"
REFERENCE = f"{stage_dir(REFERENCE_STAGE)}/reference.parquet"
COALITIONS = f"{stage_dir('coalitions')}/coalitions.parquet"
UTILITIES = f"{stage_dir('utilities')}/utilities.parquet"
CHECK_ENABLED = config["game"]["mode"] == "pooled" and config["game"]["check"]["coalitions"] > 0
CHECK_SUMMARY = f"{stage_dir('proxy_check')}/summary.json"
REPORT_HTML = f"{RUN}/report/index.html"
METRICS = config["metrics"]


def model_input():
    """The trained model folder: our training rule's output, or the user's checkpoint (no rule)."""
    return [] if config["model"]["path"] else [MODEL_DIR]


def retrainable(wildcards):
    """The retraining game trains the class-conditional model: with model.type tiny_text_to_image
    it would score another model than the one attributed, so the evaluation is refused when its
    DAG is built, before any job runs."""
    if TRAINED_PIPELINE:
        raise WorkflowError(
            f"model.type {TRAINED_TEXT_TO_IMAGE!r}: `snakemake evaluate` is not available for it. "
            "Its retraining game (evaluation.retrain) trains the workflow's class-conditional "
            "model, not a text-to-image pipeline, so it would score another model than the one "
            "attributed. Evaluate with model.type: class_conditional; the default target (the "
            "attribution and its report) runs with this model.type"
        )
    return []


def pool_group(wildcards):
    """The submitted job (Snakemake job group) that holds this shard's generation and features.

    `group-components: pool=K` (profiles/slurm) puts K consecutive shards in one job, named by
    the shards it holds (`pool_shards_1-2-of-4`); unset or 1: one job per shard for both rules.
    Local runs ignore groups. Each named group is registered under "pool", as Snakemake does for
    a group pattern with wildcards, so that `group-components: pool=K` merges the shards of one
    name into one job."""
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

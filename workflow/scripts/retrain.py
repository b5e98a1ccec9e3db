import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import evaluation
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
inp = snakemake.input
evaluation.retrain_shard(
    data_dir=inp.data.rsplit("/", 1)[0],
    coalitions_path=inp.coalitions,
    cfg=snakemake.params.cfg,
    classifier_path=inp.classifier,
    reference_path=inp.reference,
    marker_size=snakemake.params.marker_size,
    scatteritem=snakemake.wildcards.scatteritem,
    threads=snakemake.threads,
    out_path=snakemake.output[0],
    # the finetune game's starting point (the fidelity rule plays the full game: no base)
    model_dir=inp.base[0] if "base" in inp.keys() and inp.base else None,
    purpose=snakemake.params.purpose,
)

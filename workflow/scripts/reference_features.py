import _workflow_package  # noqa: F401  (this workflow's own src/ first on sys.path)

from surrogateshap.workflow.steps import models
from surrogateshap.workflow.steps.common import setup_logging

setup_logging(snakemake.log[0])
data = snakemake.input.get("data")  # another extractor than digits: the dataset's images
models.reference_features(
    classifier_path=snakemake.input.classifier,
    out_path=snakemake.output[0],
    feat_cfg=snakemake.params.features,
    data_dir=data.rsplit("/", 1)[0] if data else None,
)

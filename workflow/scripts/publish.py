from surrogateshap.steps import attribution
from surrogateshap.steps.common import setup_logging

setup_logging(snakemake.log[0])
attribution.publish(src=snakemake.input[0], dst=snakemake.output[0])

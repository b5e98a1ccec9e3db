# SurrogateSHAP: which data contributors are responsible for how a diffusion model behaves?
# Run: snakemake --cores 2     (config/config.yaml; see README.md)

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/game.smk"
include: "workflow/rules/attribute.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/evaluate.smk"

# Rules that only copy a file run in the Snakemake process itself, never as cluster jobs.
localrules:
    publish_utilities,
    publish_contributors,
    publish_attribution,


rule all:
    input:
        REPORT_HTML,
    default_target: True

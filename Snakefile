# Entry point for `snakemake` run from the repository root. The workflow itself is
# workflow/Snakefile (the snakemake-workflows catalog's layout), which Snakemake also finds
# on its own when this file is absent (e.g. in a deployed copy).


include: "workflow/Snakefile"


# An included file's default target does not carry over to the including one: name it again.
workflow.default_target = "all"

"""What the Snakemake workflow runs around the method: the config (validation, stage keys, its
reference docs), fingerprints, preflight checks, file I/O, and `steps` (one module per rule file).

No imports here: the workflow imports `config` and `preflight` when it parses, in an environment
that may hold only pandas and its own dependencies.
"""

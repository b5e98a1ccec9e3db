#!/usr/bin/env bash
# Snakemake runs this in a new conda environment (envs/<name>.post-deploy.sh beside
# <name>.yaml): install this workflow's own package, editable, from the repository Snakemake
# runs in, so that the rule scripts import the same code as the controller.
set -euo pipefail
if ! grep -qs '^name = "surrogateshap"' pyproject.toml; then
  echo "envs post-deploy: run Snakemake from the surrogateshap repository root (no surrogateshap pyproject.toml in $PWD)" >&2
  exit 1
fi
python -m pip install --no-deps --no-build-isolation -e .

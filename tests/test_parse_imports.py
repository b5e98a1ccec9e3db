"""The workflow's parse (rules/common.smk: config validation, fingerprints, stage keys, preflight)
runs in a Snakemake environment that holds pandas and little else: none of it may import Pillow,
pyarrow, torch, diffusers, transformers, xgboost, shap or scikit-learn."""

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("PIL", "pyarrow", "torch", "diffusers", "transformers", "xgboost", "shap", "sklearn")

PARSE = f"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is not in a Snakemake environment")

sys.meta_path.insert(0, Refuse())
from pathlib import Path
from surrogateshap.workflow.config import load_yaml, stage_keys, validate_config, workflow_fingerprints
from surrogateshap.workflow.preflight import preflight

schema = "workflow/schemas/config.schema.yaml"
config = validate_config(load_yaml("config/config.yaml"), schema, source="config")
fingerprints = workflow_fingerprints(config, schema, Path("workflow/scripts"))
stage_keys(config, fingerprints)
findings = preflight(config)
assert not findings.problems, findings.problems
print(sorted(m for m in sys.modules if m.startswith("surrogateshap")))
"""


def test_the_workflows_parse_imports_no_heavy_package():
    result = subprocess.run(
        [sys.executable, "-c", PARSE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "surrogateshap.workflow.preflight" in result.stdout

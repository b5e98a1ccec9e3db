"""The code style is enforced by `make test`: one formatter and linter for Python (ruff, settings
in pyproject.toml), snakefmt for the Snakemake files and Snakemake's own linter."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SNAKEMAKE

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "snakefmt"), "--check", "."],
        [SNAKEMAKE, "--lint"],
    ],
    ids=["ruff-format", "ruff-check", "snakefmt", "snakemake-lint"],
)
def test_code_is_formatted_and_lint_clean(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command[-3:])} failed:\n{output[-4000:]}"
    if command[0] == SNAKEMAKE:
        assert "Congratulations" in output, output[-4000:]

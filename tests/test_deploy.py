"""The workflow used as a Snakemake module from a folder of its own (docs/deploy.md): deployed by
`snakedeploy deploy-workflow <clone> <dir>`, then `snakemake -n` and a real run of a tiny config
there, by a Python that cannot import the package by itself. The workflow must make its own
src/ importable: at parse time (workflow/rules/common.smk) and in every job
(workflow/scripts/_workflow_package.py), with nothing installed by hand."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import ROOT

pytestmark = pytest.mark.slow

SNAKEDEPLOY = str(Path(sys.executable).with_name("snakedeploy"))
# `python -S` skips site's .pth files, so the editable install of the package that a development
# venv holds (its src/ on sys.path) is not there; site-packages, with snakemake and the package's
# dependencies, are added back by hand. The jobs still run the venv's own Python, with that
# editable install: the job logs must show that they ran the deployed workflow's package anyway.
SITE_PACKAGES = sysconfig.get_paths()["purelib"]
BARE = f"import sys; sys.path.append({SITE_PACKAGES!r}); "
TINY = {
    "run": "tiny",
    "metrics": ["frechet_distance", "marker_rate"],
    "model": {"train": {"steps": 10, "batch_size": 64}},
    "classifier": {"epochs": 1},
    "generation": {"samples_per_contributor": 8, "steps": 3, "shards": 1},
    "coalitions": {"count": 40},  # at least 2n for its 20 contributors
    "game": {"check": {"coalitions": 0}},
    "surrogate": {
        "params": {"n_estimators": 20},
        "grid": {"max_depth": [2], "learning_rate": [0.1], "base": ["linear"]},
        "cv_folds": 2,
        "bootstrap": 2,
    },
    "report": {"grid_samples": 2, "grid_contributors": 1},
}


def bare_python(code: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-S", "-c", BARE + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bare_snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = f"sys.argv = ['snakemake', *{list(args)!r}]; from snakemake.cli import main; main()"
    result = bare_python(code, cwd)
    assert result.returncode == 0, (
        f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def clone_of_this_checkout(dest: Path) -> Path:
    """The files git knows of here (committed or not, never ignored ones such as results/)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    base = tmp_path_factory.mktemp("deploy")
    clone = clone_of_this_checkout(base / "surrogateshap")
    target = base / "my-analysis"
    subprocess.run(
        [SNAKEDEPLOY, "deploy-workflow", str(clone), str(target), "--branch", "main"],
        check=True,
        capture_output=True,
        text=True,
    )
    snakefile = target / "workflow/Snakefile"
    text = snakefile.read_text()
    assert "module surrogateshap:" in text and "use rule * from surrogateshap" in text, text
    # snakedeploy 0.17's local provider writes the module's path relative to nothing
    # ("workflow/Snakefile"); a module's snakefile is the clone's workflow/Snakefile.
    assert '"workflow/Snakefile"' in text, text
    snakefile.write_text(text.replace('"workflow/Snakefile"', f'"{clone}/workflow/Snakefile"'))
    (target / "config/tiny.yaml").write_text(yaml.safe_dump(TINY))
    return clone, target


def test_the_package_is_not_importable_there_by_itself(deployed):
    _, target = deployed
    result = bare_python("import surrogateshap", target)
    assert result.returncode != 0 and "No module named 'surrogateshap'" in result.stderr, (
        result.stderr[-2000:]
    )


def test_dry_run_of_the_deployed_module(deployed):
    _, target = deployed
    out = bare_snakemake(target, "-n", "--cores", "2", "--configfile", "config/tiny.yaml")
    text = out.stdout + out.stderr
    for rule in ("train_model", "generate_pool", "pooled_utilities", "attribute", "html_report"):
        assert rule in text, text[-3000:]


def test_real_run_of_the_deployed_module_uses_its_own_package(deployed):
    clone, target = deployed
    bare_snakemake(target, "--cores", "2", "--configfile", "config/tiny.yaml")
    assert (target / "results/tiny/report/index.html").stat().st_size > 10_000
    table = pd.read_parquet(target / "results/tiny/attributions/marker_rate.parquet")
    assert len(table) == 20 and table["shapley"].notna().all()
    # every job that ran a step says which package it imported: the deployed workflow's
    logs = [p for p in (target / "logs").rglob("*.log") if "publish" not in p.parts]
    assert len(logs) >= 8, logs
    own = f"surrogateshap package: {clone.resolve() / 'src/surrogateshap'}"
    for log in logs:
        lines = [line for line in log.read_text().splitlines() if "surrogateshap package:" in line]
        assert lines and all(line.endswith(own) for line in lines), (log, lines[:1], own)

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture
def default_config():
    from surrogateshap.config import load_yaml, validate_config

    return validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (not of results/) to run Snakemake in isolation."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "tests/configs"):
        src = ROOT / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def snakemake(workdir: Path, *args, timeout=1200, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(workdir: Path, *args) -> dict[str, int]:
    """Rule -> job count of a dry run."""
    out = snakemake(workdir, "-n", "--quiet", "rules", *args).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


SMALL = "tests/configs/small.yaml"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """One run of the small test config, shared by the workflow and browser tests."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake(workdir, "--configfile", SMALL)
    return workdir

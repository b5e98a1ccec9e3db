import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# The unpickling guard (tests/guard/pickle_guard.py): here, and through sitecustomize in every
# Python process the tests start (Snakemake, its jobs), so that nothing unpickles a file
# however the call is spelled.
GUARD = Path(__file__).resolve().parent / "guard"
sys.path.insert(0, str(GUARD))
import pickle_guard  # noqa: E402

pickle_guard.install()
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(GUARD), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)


def _weights_only_torch_load():
    """torch.load (and torch.serialization.load) refusing weights_only=False or a pickle_module;
    an omitted weights_only is run as weights_only=True, this torch's default."""
    import torch

    original = torch.serialization.load
    if getattr(original, "_guarded", False):
        return

    def load(f, *args, weights_only=None, pickle_module=None, **kwargs):
        if weights_only is False or pickle_module is not None:
            message = (
                f"torch.load of {getattr(f, 'name', f)!r} with weights_only={weights_only}, "
                f"pickle_module={pickle_module}: refused during the tests"
            )
            pickle_guard.REFUSED.append(message)
            raise pickle_guard.UnsafeUnpickling(message)
        return original(f, *args, weights_only=True, **kwargs)

    load._guarded = True
    torch.load = torch.serialization.load = load


@pytest.fixture(autouse=True)
def no_unsafe_unpickling():
    """Fails a test during which anything tried to unpickle a file (see tests/guard), even when
    the code under test caught the guard's error."""
    _weights_only_torch_load()
    start = len(pickle_guard.REFUSED)
    yield
    refused = pickle_guard.REFUSED[start:]
    del pickle_guard.REFUSED[start:]
    if refused:
        pytest.fail("unsafe unpickling attempted:\n" + "\n".join(refused), pytrace=False)


@pytest.fixture
def default_config():
    from surrogateshap.workflow.config import load_yaml, validate_config

    return validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (not of results/) to run Snakemake in isolation."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "envs", "tests/configs"):
        src = ROOT / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


# seconds a workflow run may take; raise it on a loaded machine (SURROGATESHAP_TEST_TIMEOUT)
WORKFLOW_TIMEOUT = int(os.environ.get("SURROGATESHAP_TEST_TIMEOUT", "1200"))


def snakemake(workdir: Path, *args, timeout=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout or WORKFLOW_TIMEOUT,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
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


def planned_groups(workdir: Path, *args) -> dict[str, dict[str, list[str]]]:
    """Job group -> rule -> the `scatteritem`s of its jobs, from a dry run's listing
    ("Group job <id> (jobs in lexicogr. order):", then its jobs indented). Two jobs of one
    group id (not merged into one job) come out as <id> and <id>#2."""
    out = snakemake(workdir, "-n", *args).stdout
    groups, group, rule = {}, None, None
    for line in out.splitlines():
        match = re.search(r"Group job (\S+) \(jobs in", line)
        if match:
            name, copy = match.group(1), 1
            while name in groups:
                copy += 1
                name = f"{match.group(1)}#{copy}"
            group = groups[name] = {}
        elif line.strip() and not line.startswith("    "):
            group, rule = None, None  # the group's jobs are indented; anything else ends it
        elif group is not None and (match := re.match(r"\s+(?:local)?rule (\w+):$", line)):
            rule = match.group(1)
        elif group is not None and rule and (match := re.search(r"scatteritem=(\S+)", line)):
            group.setdefault(rule, []).append(match.group(1).rstrip(","))
    return {g: {r: sorted(s) for r, s in rules.items()} for g, rules in groups.items()}


SMALL = "tests/configs/small.yaml"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """One run of the small test config, shared by the workflow and browser tests."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake(workdir, "--configfile", SMALL)
    return workdir


# Contributor names a data marketplace or a scrape might deliver (issue 8). Each must reach the
# attribution files and the report exactly as written, and never a path, wildcard or job name.
HOSTILE_NAMES = [
    "alice smith",
    "a/b\\c",
    "../../etc/passwd",
    "Smith, John",
    'O\'Brien "the quote"',
    "Tom & Jerry",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "محمد الفنان",
    "\u202eevil\u202c",
    "Bob",
    "bob",
    "{metric}*?[x]",
    "$(rm -rf ~) `id` $5 $x$",
    " padded name ",
    "🎨 artist 日本語",
    "Zoë",
    "null",
    "-rf",
    "a very long name " * 20,
]
HOSTILE = "tests/configs/hostile.yaml"


def write_hostile_dataset(folder: Path, per_contributor: int = 10) -> Path:
    """A folder dataset from scikit-learn's digits with HOSTILE_NAMES as contributors; returns its metadata CSV."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from surrogateshap.data.datasets import digits_images

    images, labels = digits_images()
    (folder / "img").mkdir(parents=True)
    rows = []
    for c, name in enumerate(HOSTILE_NAMES):
        label = c % 10
        for i in np.flatnonzero(labels == label)[c // 10 * per_contributor :][:per_contributor]:
            file_name = f"img/{i:05d}.png"
            Image.fromarray(np.round(images[i] * 255).astype(np.uint8), mode="L").save(
                folder / file_name
            )
            rows.append({"file_name": file_name, "contributor": name, "label": label})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder / "metadata.csv"


@pytest.fixture(scope="session")
def hostile_run_dir(tmp_path_factory):
    """One small workflow run on a folder dataset with HOSTILE_NAMES (its folder name is hostile too)."""
    import yaml

    workdir = copy_workflow(tmp_path_factory.mktemp("hostile"))
    folder = tmp_path_factory.mktemp("data") / "my data <b>ü</b> & co"
    metadata = write_hostile_dataset(folder)
    (workdir / "data.yaml").write_text(
        yaml.safe_dump(
            {"data": {"source": "folder", "root": str(folder), "metadata": str(metadata)}}
        )
    )
    snakemake(workdir, "--configfile", HOSTILE, "data.yaml")
    return workdir


def reference_set(tmp_path: Path, feat_cfg: dict):
    """The Fréchet reference features that `steps.models.reference_features` writes for a 4-image folder
    dataset with the extractor `feat_cfg` configures: an (images, d) array."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from surrogateshap.workflow.steps.data import prepare_data
    from surrogateshap.workflow.steps.models import reference_features

    (tmp_path / "data/images").mkdir(parents=True)
    rows = []
    for i in range(4):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(
            tmp_path / f"data/images/{i}.png"
        )
        rows.append({"file_name": f"images/{i}.png", "contributor": "ann" if i % 2 else "bob"})
    pd.DataFrame(rows).to_csv(tmp_path / "data/metadata.csv", index=False)
    data_cfg = {
        "source": "folder",
        "root": str(tmp_path / "data"),
        "metadata": str(tmp_path / "data/metadata.csv"),
        "contributor_column": "contributor",
        "label_column": None,
        "min_items": 1,
        "image_size": 8,
    }
    prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "prepared"))
    out = tmp_path / "reference.parquet"
    reference_features(
        classifier_path=None,
        out_path=str(out),
        feat_cfg=feat_cfg,
        data_dir=str(tmp_path / "prepared"),
    )
    return np.stack(pd.read_parquet(out)["feature"].to_numpy())


def torchvision_alexnet():
    """torchvision's AlexNet (`torchvision.models.alexnet`, Krizhevsky 2014 "one weird trick"
    variant) as published, written here without the package's code (torchvision is not
    installed beside this torch): the reference the LPIPS backbone is checked against."""
    from torch import nn

    class AlexNet(nn.Module):
        def __init__(self, num_classes: int = 1000):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )

    return AlexNet()


def write_random_backbone(path, seed=0):
    """A torchvision AlexNet state dict with random weights (the `features.*` LPIPS reads, and
    a classifier tensor, which torchvision's file has and the loader ignores), laid out by the
    independent definition above, not by our LPIPS module."""
    import torch

    torch.manual_seed(seed)
    net = torchvision_alexnet()
    state = {f"features.{k}": v for k, v in net.features.state_dict().items()}
    state["classifier.1.weight"] = net.classifier[1].weight.detach()[:8].clone()
    torch.save(state, path)
    return path

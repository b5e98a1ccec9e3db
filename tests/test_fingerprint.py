"""Fingerprints of files, datasets, user callables and code (surrogateshap.workflow.fingerprint)."""

from __future__ import annotations

import os

from surrogateshap.workflow import fingerprint as fp
from surrogateshap.workflow.config import (
    load_yaml,
    stage_keys,
    validate_config,
    workflow_fingerprints,
)

from .conftest import ROOT, SCHEMA
from .test_cache_keys import write_dataset


def test_file_and_folder_fingerprints_see_size_and_time(tmp_path):
    file = tmp_path / "w.bin"
    file.write_bytes(b"abc")
    first = fp.file_fingerprint(file)
    os.utime(file, ns=(1, 1))
    assert fp.file_fingerprint(file) != first
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.safetensors").write_bytes(b"x")
    before = fp.file_fingerprint(folder)
    (folder / "unet" / "w.safetensors").write_bytes(b"xy")
    assert fp.file_fingerprint(folder) != before
    assert fp.file_fingerprint("org/name") == {"id": "org/name", "revision": None}


def test_hub_revision_from_the_local_cache(tmp_path, monkeypatch):
    ref = tmp_path / "models--org--name" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("abc123\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert fp.file_fingerprint("org/name") == {"id": "org/name", "revision": "abc123"}


def test_dataset_fingerprint_sees_metadata_bytes_and_one_image(tmp_path):
    root = write_dataset(tmp_path / "data")
    cfg = {"source": "folder", "root": str(root), "metadata": None}
    first = fp.dataset_fingerprint(cfg)
    assert first["images"] == 12 and fp.dataset_fingerprint(cfg) == first
    image = root / "img" / "bob_0.png"
    image.write_bytes(image.read_bytes() + b"\0")
    second = fp.dataset_fingerprint(cfg)
    assert second["images_stat"] != first["images_stat"]
    assert second["metadata_sha256"] == first["metadata_sha256"]
    table = root / "metadata.csv"
    table.write_text(table.read_text().replace("bob_0.png,bob,1", "bob_0.png,bob,2"))
    assert fp.dataset_fingerprint(cfg)["metadata_sha256"] != first["metadata_sha256"]
    assert fp.dataset_fingerprint({"source": "digits"}) is None


def test_callable_fingerprint_is_its_source(tmp_path):
    code = tmp_path / "det.py"
    code.write_text("def f(x):\n    return x\n")
    first = fp.callable_fingerprint(f"{code}:f")
    code.write_text("def f(x):\n    return not x\n")
    assert fp.callable_fingerprint(f"{code}:f")["sha256"] != first["sha256"]
    module = fp.callable_fingerprint("surrogateshap.proxy.metrics:frechet")
    assert module["source"].endswith("metrics.py") and module["sha256"]
    assert fp.callable_fingerprint("no_such_module_x:f")["source"] is None


def test_code_files_follow_imports(tmp_path):
    script = tmp_path / "s.py"

    def names(files):
        return {
            f.relative_to(fp.PACKAGE_DIR).as_posix() if f.is_relative_to(fp.PACKAGE_DIR) else f.name
            for f in files
        }

    script.write_text("from surrogateshap.workflow.io import write_json\n")
    files = names(fp.code_files([script]))
    # io.py and the __init__ files it runs; io imports nothing else of the package
    assert files == {"s.py", "workflow/io.py", "workflow/__init__.py", "__init__.py"}, files
    script.write_text("from surrogateshap.workflow import fingerprint\n")
    files = names(fp.code_files([script]))
    # fingerprint imports data.datasets (inside a function, still followed)
    assert "data/datasets.py" in files, files


def test_schema_marks_files_and_callables(tmp_path):
    config = validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)
    config["features"]["custom_metrics"] = {"m": {"function": "x.py:f"}}
    config["features"]["lpips"] = {"backbone": "a.pth"}
    config["model"]["path"] = "org/name"
    marked = fp.fingerprinted_settings(load_yaml(SCHEMA), config)
    assert marked == {
        "model.path": "file",
        "features.custom_metrics.m.function": "callable",
        "features.lpips.backbone": "file",
    }


def test_file_fingerprints_reach_the_stages_that_read_them(tmp_path):
    config = validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)
    weights = tmp_path / "aesthetic.safetensors"
    weights.write_bytes(b"w")
    config["features"]["aesthetic"] = str(weights)
    before = stage_keys(config, workflow_fingerprints(config, SCHEMA, ROOT / "workflow/scripts"))
    weights.write_bytes(b"new weights")
    after = stage_keys(config, workflow_fingerprints(config, SCHEMA, ROOT / "workflow/scripts"))
    changed = {stage for stage in before if before[stage] != after[stage]}
    assert {"features", "retrain", "proxy_check"} <= changed
    assert not {"data", "model", "pool", "classifier", "coalitions", "heldout"} & changed


def test_report_lists_every_fingerprint():
    from surrogateshap.report.page import fingerprint_html

    html = fingerprint_html(
        {
            "files": {"model.path": {"path": "/m", "size": 3, "mtime_ns": 5}},
            "code": {"data": "0123abcd", "attribution": "4567ef01"},
        }
    )
    for text in ("file: model.path", "&quot;size&quot;: 3", "code: data", "0123abcd", "4567ef01"):
        assert text in html, html
    assert fingerprint_html(None) == ""


def test_code_fingerprint_does_not_depend_on_where_the_workflow_is(tmp_path):
    """The same scripts elsewhere (a copied or deployed workflow) give the same code hash."""
    import shutil

    copy = tmp_path / "scripts"
    shutil.copytree(ROOT / "workflow/scripts", copy)
    for name in ("prepare_data", "attribute"):
        here = fp.code_fingerprint([ROOT / "workflow/scripts" / f"{name}.py"])
        assert fp.code_fingerprint([copy / f"{name}.py"]) == here

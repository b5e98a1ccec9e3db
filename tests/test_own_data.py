"""Your own dataset: the shapes dataset, the trained extractor, and the combinations refused
before any job runs (docs/own-data.md, docs/own-data-trained.md)."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from surrogateshap import cli
from surrogateshap.data.datasets import load_dataset, load_images
from surrogateshap.data.shapes import SHAPES, draw
from surrogateshap.proxy import extractors
from surrogateshap.workflow.config import (
    ConfigError,
    detector_box,
    load_yaml,
    merge,
    stage_keys,
    validate_config,
)
from surrogateshap.workflow.steps import data as data_steps
from surrogateshap.workflow.steps import models as model_steps

from .conftest import ROOT, SCHEMA, copy_workflow, snakemake


def _shapes(tmp_path, contributors=4, per=12):
    out = tmp_path / "shapes"
    assert (
        cli.main(
            [
                "make-shapes",
                "--out",
                str(out),
                "--contributors",
                str(contributors),
                "--per-contributor",
                str(per),
            ]
        )
        == 0
    )
    return out


def _folder_config(root, **features):
    config = merge(
        load_yaml(ROOT / "config/config.yaml"),
        {
            "data": {
                "source": "folder",
                "root": str(root),
                "metadata": str(root / "metadata.csv"),
                "image_size": 16,
            },
            "features": features,
        },
    )
    return config


def test_make_shapes_writes_a_valid_labelled_captioned_folder(tmp_path):
    root = _shapes(tmp_path)
    dataset = load_dataset(root, root / "metadata.csv", caption_column="caption")
    assert dataset.contributors["n_items"].tolist() == [12] * 4
    assert set(dataset.items["label"]) <= set(range(6)) and dataset.items["label"].nunique() >= 4
    assert dataset.items["caption"].str.match(r"a (small|large) (bright|dim) [a-z]+$").all()
    images = load_images(root, dataset.items["file_name"], 16)
    assert images.shape == (48, 16, 16) and images.max() > 0.5 and images[:, 0, 0].max() < 0.05
    # each label is its own shape: the same centre and radius give clearly different images
    same = {k: draw(SHAPES[k], 16, 8, 8, 5, 1.0) for k in range(6)}
    assert min(np.abs(same[a] - same[b]).mean() for a in same for b in same if a < b) > 0.05

    # and every stored image is its label's shape: the nearest template over sizes and shifts
    templates = {
        k: [draw(SHAPES[k], 16, 8, 8, r, 1.0) for r in np.arange(3.5, 6.6, 0.5)] for k in same
    }

    def distance(image, k):
        image = image / image.max()
        return min(
            np.abs(np.roll(image, (dy, dx), axis=(0, 1)) - template).mean()
            for template in templates[k]
            for dy in range(-3, 4)
            for dx in range(-3, 4)
        )

    nearest = [min(same, key=lambda k: distance(image, k)) for image in images]
    assert np.mean(np.array(nearest) == dataset.items["label"].to_numpy()) > 0.9


def test_the_shapes_config_validates_and_its_detector_looks_at_the_planted_marker():
    config = validate_config(
        merge(
            load_yaml(ROOT / "config/config.yaml"), load_yaml(ROOT / "config/datasets/shapes.yaml")
        ),
        SCHEMA,
    )
    assert {p["effect"] for p in config["data"]["planted"]} == {
        "noise",
        "marker",
        "near_duplicates",
    }
    assert detector_box(config) == {"position": "bottom-right", "size": 3}
    default = validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)
    assert detector_box(default) == {"position": "top-left", "size": 2}  # the digits' corner


def test_digits_extractor_on_a_folder_is_refused_with_what_to_set(tmp_path):
    root = _shapes(tmp_path)
    with pytest.raises(ConfigError) as error:
        validate_config(_folder_config(root), SCHEMA)
    message = str(error.value)
    assert "features.extractor: trained" in message
    assert "features.allow_digits_on_folder: true" in message
    assert "frechet_distance" in message
    validate_config(_folder_config(root, allow_digits_on_folder=True), SCHEMA)  # asked explicitly
    validate_config(_folder_config(root, extractor="trained"), SCHEMA)
    only_marker = _folder_config(root)
    only_marker["metrics"] = ["marker_rate"]  # no metric reads the extractor: nothing to refuse
    validate_config(only_marker, SCHEMA)


def test_the_refusal_comes_before_any_job_runs(tmp_path):
    root = _shapes(tmp_path)
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "mine.yaml").write_text(
        yaml.safe_dump({"data": {"source": "folder", "root": str(root), "image_size": 16}})
    )
    result = snakemake(workdir, "--configfile", "mine.yaml", check=False)
    assert result.returncode != 0
    assert "features.allow_digits_on_folder: true" in result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"features": {"extractor": "clip", "clip": "/nowhere/clip"}},
            "features.clip: no such model folder",
        ),
        ({"metrics": ["clip_score"]}, "'clip_score' needs features.clip"),
        (
            {"data": {"image_size": 10}, "model": {"train": {"block_out_channels": [8, 16, 32]}}},
            "data.image_size 10 cannot go through the UNet's 3 levels",
        ),
        (
            {
                "model": {"type": "stable_diffusion", "path": "x"},
                "data": {"caption_template": "a {contributor}"},
                "generation": {"resolution": 20},
            },
            "generation.resolution 20 cannot be taken by a stable_diffusion pipeline",
        ),
        (
            {"features": {"marker": {"position": [7, 7], "size": 2}}},
            "features.marker: outside the 8x8",
        ),
    ],
)
def test_nonsense_combinations_are_refused(default_config, change, message):
    config = merge(copy.deepcopy(default_config), change)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


def _prepared(tmp_path, label_column):
    root = _shapes(tmp_path)
    data_cfg = _folder_config(root)["data"] | {"label_column": label_column}
    data_steps.prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "prepared"))
    return tmp_path / "prepared"


@pytest.mark.parametrize(
    "label_column, target, classes", [("label", "label", None), (None, "contributor", 4)]
)
def test_trained_extractor_learns_labels_else_contributors(tmp_path, label_column, target, classes):
    prepared = _prepared(tmp_path, label_column)
    cfg = {"hidden": 32, "features": 16, "epochs": 20, "lr": 0.003}
    out = tmp_path / "extractor.safetensors"
    model_steps.train_extractor(
        data_dir=str(prepared),
        cfg=cfg,
        image_size=16,
        seed=0,
        threads=1,
        out_path=str(out),
        metrics_path=str(tmp_path / "m.json"),
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    items = pd.read_parquet(prepared / "items.parquet")
    assert metrics["target"] == target
    assert len(metrics["classes"]) == (classes or items["label"].nunique())
    extractor = extractors.load_extractor({"extractor": "trained"}, str(out))
    assert extractor.size == 16
    features, probs = extractor.embed(
        load_images(prepared.parent / "shapes", items["file_name"], 16)
    )
    assert features.shape == (48, 32) and probs.shape == (48, len(metrics["classes"]))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # the Fréchet reference of a trained extractor: the dataset's own images in its features
    model_steps.reference_features(
        classifier_path=str(out),
        out_path=str(tmp_path / "ref.parquet"),
        feat_cfg={"extractor": "trained"},
        data_dir=str(prepared),
    )
    reference = np.stack(pd.read_parquet(tmp_path / "ref.parquet")["feature"].to_numpy())
    np.testing.assert_allclose(reference, features, rtol=1e-5, atol=1e-6)


def test_trained_extractor_stage_keys_follow_the_data(default_config):
    trained = merge(copy.deepcopy(default_config), {"features": {"extractor": "trained"}})
    changed = merge(copy.deepcopy(trained), {"data": {"digits": {"splits_per_class": 3}}})
    a, b = stage_keys(trained), stage_keys(changed)
    assert a["extractor"] != b["extractor"] and a["classifier"] == b["classifier"]
    retrained = merge(copy.deepcopy(trained), {"classifier": {"epochs": 5}})
    c = stage_keys(retrained)
    assert (
        c["extractor"] != a["extractor"]
        and c["features"] != a["features"]
        and c["retrain"] != a["retrain"]
    )
    # the digits extractor's stages do not depend on the trained one's
    d0, d1 = (
        stage_keys(default_config),
        stage_keys(merge(copy.deepcopy(default_config), {"data": {"image_size": 16}})),
    )
    assert d0["classifier"] == d1["classifier"]


def test_check_data_lists_every_problem_and_what_it_found(tmp_path, capsys):
    root = _shapes(tmp_path, contributors=3, per=4)
    metadata = pd.read_csv(root / "metadata.csv")
    metadata.loc[1, "caption"] = ""  # an empty caption, no template
    metadata.loc[2, "file_name"] = "images/gone.png"  # a missing file
    metadata.to_csv(root / "metadata.csv", index=False)
    bad = {
        "data": {
            "source": "folder",
            "root": str(root),
            "caption_column": "caption",
            "image_size": 16,
            "planted": [{"contributor": "studio-09", "effect": "noise"}],
        },
        "metrics": ["frechet_distance", "marker_rate"],
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert cli.main(["check-data", "--configfile", str(tmp_path / "bad.yaml")]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s)" in out or "4 problem(s)" in out
    for expected in (
        "features.allow_digits_on_folder: true",  # the digits extractor on a folder
        "images/gone.png",
        "empty 'caption' caption",
        "unknown contributor 'studio-09'",
    ):
        assert expected in out, expected
    good = merge(bad, {"features": {"extractor": "trained"}})
    good["data"]["planted"] = [
        {"contributor": "studio-02", "effect": "marker", "position": "center"}
    ]
    good["data"]["caption_template"] = "a {shape}"
    metadata.loc[2, "file_name"] = "images/studio-01-0002.png"
    metadata.to_csv(root / "metadata.csv", index=False)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    assert cli.main(["check-data", "--configfile", str(tmp_path / "good.yaml")]) == 0
    out = capsys.readouterr().out
    assert "12 items from 3 contributors" in out and "studio-01: 4" in out
    assert "captions: " in out and "1 filled from data.caption_template" in out
    assert "marker_rate: the marker detector: a 2x2 box at 'center'" in out
    assert "frechet_distance: a classifier trained on this dataset" in out
    assert "no problems found" in out


@pytest.mark.slow
def test_shapes_example_finds_the_planted_contributors(tmp_path):
    """Acceptance: a folder dataset that is not digits, planted noise, a marker at a chosen place
    and near-duplicates, the trained extractor, no external weights: every planted contributor
    ranks where its entry says (config/datasets/shapes.yaml, smaller)."""
    from surrogateshap.evaluation.scores import expected_placements, placement_table

    root = tmp_path / "shapes"
    assert (
        cli.main(
            ["make-shapes", "--out", str(root), "--contributors", "6", "--per-contributor", "24"]
        )
        == 0
    )
    workdir = copy_workflow(tmp_path / "wf")
    example = load_yaml(ROOT / "config/datasets/shapes.yaml")
    small = merge(
        example,
        {
            "run": "shapes-small",
            "data": {"root": str(root), "metadata": str(root / "metadata.csv")},
            "model": {"train": {"steps": 200}},
            "generation": {"samples_per_contributor": 48},
            "coalitions": {"count": 64},  # every coalition of 6 contributors
            "surrogate": {"cv_folds": 3, "bootstrap": 5},
            "report": {"grid_samples": 4},
        },
    )
    small["data"]["planted"] = [
        {"contributor": "studio-02", "effect": "noise", "strength": 0.5},
        {"contributor": "studio-04", "effect": "marker", "position": "bottom-right", "size": 3},
        {"contributor": "studio-06", "effect": "near_duplicates", "copies": 2},
    ]
    (workdir / "small.yaml").write_text(yaml.safe_dump(small))
    snakemake(workdir, "--configfile", "small.yaml", "--set-threads", "train_model=1")
    run = workdir / "results/shapes-small"
    names = pd.read_parquet(run / "contributors.parquet")["contributor"].tolist()
    values = pd.concat(
        pd.read_parquet(p).assign(method="surrogate", metric=p.stem)
        for p in (run / "attributions").glob("*.parquet")
    )
    expected = expected_placements(small["data"]["planted"], names, list(values["metric"].unique()))
    placement = placement_table(values, expected)
    assert len(placement) == 3, placement
    assert placement["found"].all(), placement.to_string()
    report = (run / "report/index.html").read_text()
    assert "Planted contributors: 3 of 3 found" in report

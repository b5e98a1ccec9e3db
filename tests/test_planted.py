"""Planted ground truth on any dataset (surrogateshap.data.planted, applied by steps.data.prepare_data)."""

import copy
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from surrogateshap.data.planted import PlantedError, entries, expectations
from surrogateshap.workflow.config import ConfigError, validate_config
from surrogateshap.workflow.steps.data import prepare_data

from .conftest import SCHEMA


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder(root, contributors=("ann", "bob", "cat", "dan"), per=5, size=8):
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for name in contributors:
        for i in range(per):
            pixels = rng.integers(40, 200, size=(size, size), dtype=np.uint8)
            file_name = f"img/{name}-{i}.png"
            Image.fromarray(pixels, mode="L").save(root / file_name)
            rows.append({"file_name": file_name, "contributor": name})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return pd.DataFrame(rows)


def _data_cfg(root, planted):
    return {
        "source": "folder",
        "root": str(root),
        "metadata": str(root / "metadata.csv"),
        "contributor_column": "contributor",
        "label_column": None,
        "min_items": 1,
        "image_size": 8,
        "planted": planted,
    }


def _pixels(root, name):
    return np.asarray(Image.open(root / name), dtype=np.int64)


def test_planted_effects_change_exactly_the_chosen_contributors(tmp_path):
    rows = _folder(tmp_path / "data")
    before = {name: _digest(tmp_path / "data" / name) for name in rows["file_name"]}
    planted = [
        {"contributor": "ann", "effect": "noise", "strength": 0.3},
        {"contributor": "bob", "effect": "marker", "position": "bottom-right", "size": 3},
        {"contributor": "cat", "effect": "near_duplicates", "copies": 2},
    ]
    prepare_data(
        data_cfg=_data_cfg(tmp_path / "data", planted), seed=0, out_dir=str(tmp_path / "prepared")
    )
    root = tmp_path / "prepared/planted"
    info = pd.read_json(tmp_path / "prepared/dataset.json", typ="series")
    assert info["root"] == str(root.resolve())  # later stages read the planted copy
    for name in rows["file_name"]:  # the user's folder is untouched
        assert _digest(tmp_path / "data" / name) == before[name]
    owner = dict(zip(rows["file_name"], rows["contributor"]))
    changed = {name for name in rows["file_name"] if _digest(root / name) != before[name]}
    assert {owner[name] for name in changed} == {"ann", "bob", "cat"}
    assert {n for n in rows["file_name"] if owner[n] in ("ann", "bob")} <= changed
    for name in (n for n in rows["file_name"] if owner[n] == "bob"):
        pixels, original = _pixels(root, name), _pixels(tmp_path / "data", name)
        assert pixels[5:, 5:].min() == 255  # the marker where it was asked for
        assert (pixels[:5] == original[:5]).all()  # and nothing else changed
    cat = [n for n in rows["file_name"] if owner[n] == "cat"]
    copies = {_digest(root / n) for n in cat}
    assert len(copies) == 2 and copies <= {before[n] for n in cat}  # copies of its own images


def test_digits_planted_still_work_on_the_one_path(tmp_path, default_config):
    data_cfg = copy.deepcopy(default_config["data"])
    prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "digits"))
    items = pd.read_parquet(tmp_path / "digits/items.parquet")
    marked = items.loc[items["contributor"] == "digit-7-b", "file_name"]
    clean = items.loc[items["contributor"] == "digit-7-a", "file_name"]
    assert all(_pixels(tmp_path / "digits", n)[:2, :2].min() == 255 for n in marked)
    assert np.mean([_pixels(tmp_path / "digits", n)[:2, :2].min() == 255 for n in clean]) < 0.1


def test_unknown_contributor_is_refused_naming_the_entry(tmp_path):
    _folder(tmp_path / "data")
    planted = [{"contributor": "ann", "effect": "blur"}, {"contributor": "zed", "effect": "noise"}]
    with pytest.raises(PlantedError, match=r"data.planted\[1\].*unknown contributor 'zed'"):
        prepare_data(
            data_cfg=_data_cfg(tmp_path / "data", planted), seed=0, out_dir=str(tmp_path / "p")
        )


def test_marker_outside_the_stored_image_is_refused(tmp_path):
    _folder(tmp_path / "data", size=6)  # smaller than the 8x8 the config was checked against
    planted = [{"contributor": "ann", "effect": "marker", "position": [5, 5], "size": 2}]
    with pytest.raises(PlantedError, match=r"data.planted\[0\].*marker outside the image"):
        prepare_data(
            data_cfg=_data_cfg(tmp_path / "data", planted), seed=0, out_dir=str(tmp_path / "p")
        )


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"contributor": "digit-1-a", "effect": "sparkle"},
            r"data.planted\[0\].*unknown effect 'sparkle'",
        ),
        (
            {"contributor": "digit-1-a", "effect": "marker", "position": [7, 0], "size": 2},
            r"data.planted\[0\] \(contributor 'digit-1-a', effect 'marker'\): marker outside the image",
        ),
        (
            {"contributor": "digit-1-a", "effect": "marker", "position": "middle"},
            r"data.planted\[0\].*'middle' is not one of",
        ),
        (
            {"contributor": "digit-1-a", "effect": "style", "style": "sepia"},
            "unknown style 'sepia'",
        ),
    ],
)
def test_bad_entries_are_refused_when_the_config_is_read(default_config, entry, message):
    config = copy.deepcopy(default_config)
    config["data"]["planted"] = [entry]
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


def test_expectations_default_per_effect_and_group_size(default_config):
    data_cfg = copy.deepcopy(default_config["data"])
    data_cfg["planted"] = [
        {"contributor": "digit-2-a", "effect": "near_duplicates"},
        {
            "contributor": "digit-3-a",
            "effect": "noise",
            "expect": {"metric": "vendi_score", "rank": "bottom", "within": 4},
        },
    ]
    got = {
        (e["contributor"], e["metric"], e["side"], e["within"])
        for e in expectations(entries(data_cfg))
    }
    assert got == {
        ("digit-1-b", "frechet_distance", "top", 2),  # noise and blur: the two top raisers
        ("digit-5-b", "frechet_distance", "top", 2),
        ("digit-7-b", "marker_rate", "top", 1),
        ("digit-2-a", "diversity", "bottom", 1),
        ("digit-3-a", "vendi_score", "bottom", 4),
    }

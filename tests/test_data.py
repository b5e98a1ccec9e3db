import numpy as np
import pandas as pd
import pytest
from PIL import Image

from surrogateshap.data.datasets import DataError, export_digits, load_dataset
from surrogateshap.data.planted import apply_effect, entries


def _folder(tmp_path, rows, images=True):
    (tmp_path / "img").mkdir()
    for row in rows:
        if images:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / row["file_name"])
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    return tmp_path


def _rows(n=4):
    return [
        {"file_name": f"img/{i}.png", "contributor": f"c{i % 2}", "label": i % 2} for i in range(n)
    ]


def test_valid_folder_loads(tmp_path):
    dataset = load_dataset(_folder(tmp_path, _rows()), tmp_path / "metadata.csv")
    assert dataset.contributors["contributor"].tolist() == ["c0", "c1"]
    assert dataset.contributors["n_items"].tolist() == [2, 2]


def test_missing_contributor_column_is_named(tmp_path):
    rows = [{"file_name": r["file_name"], "label": r["label"]} for r in _rows()]
    with pytest.raises(DataError, match="missing column 'contributor'") as error:
        load_dataset(_folder(tmp_path, rows), tmp_path / "metadata.csv")
    assert "metadata.csv" in str(error.value)


def test_every_missing_and_unreadable_image_is_listed(tmp_path):
    _folder(tmp_path, _rows(6))
    (tmp_path / "img/1.png").unlink()
    (tmp_path / "img/3.png").unlink()
    (tmp_path / "img/4.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path, tmp_path / "metadata.csv")
    message = str(error.value)
    assert "'img/1.png'" in message and "'img/3.png'" in message
    assert "cannot be read" in message and "'img/4.png'" in message


def test_contributor_with_too_few_items(tmp_path):
    rows = _rows(4) + [{"file_name": "img/9.png", "contributor": "lonely", "label": 0}]
    with pytest.raises(DataError, match="'lonely' \\(1\\)"):
        load_dataset(_folder(tmp_path, rows), tmp_path / "metadata.csv", min_items=2)


def test_duplicate_file_names(tmp_path):
    rows = _rows(4) + [_rows(4)[0]]
    with pytest.raises(DataError, match="duplicate file_name"):
        load_dataset(_folder(tmp_path, rows), tmp_path / "metadata.csv")


def test_missing_metadata_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path, tmp_path / "nope.csv")


def _effect(effect, **settings):
    return entries({"planted": [{"contributor": "x", "effect": effect, **settings}]})[0]


def test_planted_effects():
    rng = np.random.default_rng(0)
    image = np.zeros((8, 8))
    image[2:6, 3:5] = 1.0
    marked = apply_effect(image, _effect("marker"), rng)
    assert marked[:2, :2].min() == 1.0 and marked[2:].tolist() == image[2:].tolist()
    corner = apply_effect(image, _effect("marker", position="bottom-right", size=3), rng)
    assert corner[5:, 5:].min() == 1.0 and corner[:5].tolist() == image[:5].tolist()
    blurred = apply_effect(image, _effect("blur", strength=1.0), rng)
    assert blurred.max() < 1.0 and blurred.sum() > 0
    noisy = apply_effect(image, _effect("noise", strength=0.3), rng)
    assert np.abs(noisy - image).mean() > 0.1
    inverted = apply_effect(image, _effect("style"), rng)
    assert np.allclose(inverted, 1.0 - image)
    tinted = apply_effect(image, _effect("style", style="tint", color=[1, 0, 0]), rng)
    assert tinted.shape == (8, 8, 3) and tinted[..., 1:].max() == 0.0


def test_digits_export_has_20_contributors(tmp_path):
    table = export_digits(tmp_path, 2, seed=0)
    assert table["contributor"].nunique() == 20
    assert set(table.columns) == {"file_name", "contributor", "label"}


def test_marker_detector_needs_the_whole_box():
    from surrogateshap.proxy.features import detect_marker

    images = np.zeros((3, 8, 8))
    images[0, :2, :2] = 1.0  # the marker
    images[1, 0, :2] = 1.0  # half the box bright, as noise often makes it
    assert detect_marker(images, 2, 0.5).tolist() == [1.0, 0.0, 0.0]

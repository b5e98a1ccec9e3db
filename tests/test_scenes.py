"""The scenes dataset (surrogateshap make-scenes): colour images whose contributors differ in
style, written as an image folder the workflow reads."""

import numpy as np
import pandas as pd
from PIL import Image

from surrogateshap.cli import main
from surrogateshap.data.datasets import load_dataset
from surrogateshap.data.scenes import TEXTURES, make_scenes


def test_make_scenes_writes_a_colour_folder_dataset(tmp_path, capsys):
    assert (
        main(
            [
                "make-scenes",
                "--out",
                str(tmp_path / "s"),
                "--contributors",
                "6",
                "--per-contributor",
                "5",
                "--size",
                "16",
            ]
        )
        == 0
    )
    assert "30 16x16 colour images from 6 contributors" in capsys.readouterr().out
    dataset = load_dataset(tmp_path / "s", tmp_path / "s/metadata.csv", caption_column="caption")
    assert dataset.n == 6 and len(dataset.items) == 30
    with Image.open(tmp_path / "s" / dataset.items["file_name"][0]) as image:
        assert image.mode == "RGB" and image.size == (16, 16)
    assert dataset.items["caption"].str.contains(" on a ").all()


def test_scenes_are_seeded_and_contributors_have_styles_of_their_own(tmp_path):
    a = make_scenes(tmp_path / "a", contributors=10, per_contributor=6, size=16, seed=3)
    b = make_scenes(tmp_path / "b", contributors=10, per_contributor=6, size=16, seed=3)
    pd.testing.assert_frame_equal(a, b)
    for name in a["file_name"][:5]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert set(a["texture"]) == set(TEXTURES)

    def mean_colour(folder, names):
        return np.mean(
            [np.asarray(Image.open(folder / n), np.float64) for n in names], axis=(0, 1, 2)
        )

    # each contributor's mean colour is nearer its own images' than any other contributor's
    colours = {
        c: (
            mean_colour(tmp_path / "a", g["file_name"][:3]),
            mean_colour(tmp_path / "a", g["file_name"][3:]),
        )
        for c, g in a.groupby("contributor")
    }
    for c, (first, rest) in colours.items():
        own = np.linalg.norm(first - rest)
        others = min(np.linalg.norm(first - r) for d, (_, r) in colours.items() if d != c)
        assert own < others, c

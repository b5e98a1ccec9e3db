"""Each planted effect measured by a metric that measures it: the sharpness (blur lowers it, noise
raises it), the planted entries' expectations following the metrics a run measures, and every
planted contributor found when each pool is its contributor's prepared images (a model that
reproduces its data), through the game, the exact Shapley values and the placement table."""

import itertools

import numpy as np
import pandas as pd
import pytest

from surrogateshap.data import planted as planted_mod
from surrogateshap.data.planted import apply_effect, expectations
from surrogateshap.data.scenes import make_scenes
from surrogateshap.estimation.estimators import exact
from surrogateshap.evaluation.scores import expected_placements, placement_table
from surrogateshap.proxy import extractors
from surrogateshap.proxy.features import configured_scores, detect_marker
from surrogateshap.proxy.game import PooledGame
from surrogateshap.proxy.metric_base import Reference, Samples


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    items = make_scenes(root, contributors=6, per_contributor=12, size=32, seed=0)
    return root, items


def _read(root, names):
    return np.stack([planted_mod.read_image(root / name) for name in names])


def test_sharpness_falls_with_blur_and_rises_with_noise(scenes):
    root, items = scenes
    images = _read(root, items["file_name"][:12])
    rng = np.random.default_rng(0)
    blur = {"effect": "blur", "strength": 1.5}
    noise = {"effect": "noise", "strength": 0.3}
    blurred = np.stack([apply_effect(im, blur, rng) for im in images])
    noisy = np.stack([apply_effect(im, noise, rng) for im in images])
    sharp = extractors.sharpness(images)
    assert (extractors.sharpness(blurred) < sharp).all()
    assert (extractors.sharpness(noisy) > sharp).all()
    # the features stage computes it for every pool, whatever the features settings
    assert "sharpness" in configured_scores({})
    scores = extractors.score_samples(images, [""] * len(images), {}, configured_scores({}))
    np.testing.assert_allclose(scores["sharpness"], sharp)
    # the grey version's: an RGB image and its luma give the same value
    np.testing.assert_allclose(extractors.sharpness(extractors.to_gray(images)), sharp)
    # a flat image has none; a checkerboard of 0 and 1 the most a [0, 1] image can have (4² = 16)
    assert extractors.sharpness(np.full((1, 8, 8), 0.5))[0] == 0.0
    checks = (np.indices((8, 8)).sum(0) % 2).astype(float)[None]
    assert extractors.sharpness(checks)[0] == pytest.approx(16.0)


def test_planted_expectations_follow_the_metrics_a_run_measures():
    planted = [
        {"contributor": "a", "effect": "noise"},
        {"contributor": "b", "effect": "blur"},
        {"contributor": "c", "effect": "style", "style": "tint"},
        {"contributor": "d", "effect": "blur", "expect": {"metric": "frechet_distance"}},
    ]

    def where(metrics):
        return [(e["metric"], e["side"], e["within"]) for e in expectations(planted, metrics)]

    # without the sharpness: the Fréchet distance, the last of their measures
    assert where(["frechet_distance", "marker_rate"]) == [("frechet_distance", "top", 4)] * 4
    # with it: noise at its top, blur at its bottom, each the only one there; an entry's own
    # metric is kept, and `within` is counted over what the entries now expect
    assert where(["frechet_distance", "sharpness"]) == [
        ("sharpness", "top", 1),
        ("sharpness", "bottom", 1),
        ("frechet_distance", "top", 2),
        ("frechet_distance", "top", 2),
    ]
    # the workflow's filled entries follow the same way
    filled = planted_mod.entries({"planted": planted})
    assert [e["metric"] for e in expectations(filled, ["sharpness", "frechet_distance"])] == [
        "sharpness",
        "sharpness",
        "frechet_distance",
        "frechet_distance",
    ]
    # a metric given without a rank takes the end its effect moves it to
    assert expectations(
        [{"contributor": "e", "effect": "blur", "expect": {"metric": "sharpness"}}]
    )[0]["side"] == ("bottom")


PLANTED = [
    {"contributor": "atelier-002", "effect": "noise", "strength": 0.3},
    {"contributor": "atelier-003", "effect": "blur", "strength": 1.5},
    {"contributor": "atelier-004", "effect": "marker", "position": "bottom-right", "size": 4},
    {"contributor": "atelier-006", "effect": "near_duplicates", "copies": 2},
]
METRICS = ["sharpness", "marker_rate", "diversity"]


def test_every_planted_contributor_is_found_when_each_pool_is_its_prepared_images(scenes, tmp_path):
    root, items = scenes
    entries = planted_mod.entries({"planted": PLANTED})
    prepared = planted_mod.plant(root, items, entries, seed=0, out_root=tmp_path / "prepared")
    names = sorted(items["contributor"].unique())
    owner = items["contributor"].map(names.index).to_numpy()
    images = _read(prepared, items["file_name"])
    # the empty coalition's pool (the unconditional model's): the whole prepared dataset
    owner = np.concatenate([owner, np.full(len(images), len(names))])
    images = np.concatenate([images, images])
    # features for the diversity: the images at 8x8, in colour
    features = images.reshape(len(images), 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(len(images), -1)
    samples = Samples(
        owner,
        features,
        np.full((len(images), 2), 0.5),
        detect_marker(images, {"position": "bottom-right", "size": 4}, 0.85),
        {"sharpness": extractors.sharpness(images)},
    )
    coalitions = [
        members
        for size in range(len(names) + 1)
        for members in itertools.combinations(range(len(names)), size)
    ]
    counts = np.bincount(owner)[: len(names)].astype(float)
    game = PooledGame(samples, counts, METRICS, Reference.from_features(features))
    utilities = game.utilities(coalitions)
    x = np.zeros((len(coalitions), len(names)))
    for row, members in enumerate(coalitions):
        x[row, list(members)] = 1
    rows = []
    for metric in METRICS:
        values = exact(x, utilities[metric].to_numpy())
        rank = pd.Series(values).rank(method="min", ascending=False).astype(int)
        rows += [
            {"method": "exact", "metric": metric, "contributor": name, "rank": r}
            for name, r in zip(names, rank)
        ]
    placement = placement_table(pd.DataFrame(rows), expected_placements(entries, names, METRICS))
    assert len(placement) == len(PLANTED)
    assert placement["found"].all(), placement.to_string()

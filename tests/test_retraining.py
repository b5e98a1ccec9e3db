"""The retraining game's cheaper variant: it fine-tunes on the coalition's items only."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from surrogateshap.data import datasets as data_mod
from surrogateshap.evaluation import retraining
from surrogateshap.models import class_conditional as models
from surrogateshap.proxy.metric_base import Reference

NAMES = ["dark", "mid", "bright"]
LEVEL = {"dark": 30, "mid": 128, "bright": 225}  # each contributor's images: one grey level
TRAIN = {
    "block_out_channels": [8, 16],
    "train_timesteps": 100,
    "steps": 4,
    "batch_size": 16,
    "lr": 0.002,
    "ema_decay": 0.9,
    "label_dropout": 0.1,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rows = []
    for name in NAMES:
        for k in range(6):
            file_name = f"{name}-{k}.png"
            Image.fromarray(np.full((8, 8), LEVEL[name], np.uint8)).save(root / file_name)
            rows.append({"file_name": file_name, "contributor": name})
    items = pd.DataFrame(rows)
    contributors = pd.DataFrame({"contributor": NAMES, "n_items": [6, 6, 6]})
    dataset = data_mod.Dataset(root, items, contributors)
    images = data_mod.load_images(root, items["file_name"], 8)
    classes = items["contributor"].map({c: i for i, c in enumerate(NAMES)}).to_numpy()
    base = models.train_diffusion(images, classes, NAMES, "contributor", TRAIN, seed=0)
    models.save_diffusion(base, root / "model")
    return dataset, root / "model"


def _cfg(game):
    return {
        "evaluation.retrain": {
            "game": game,
            "replicates": 2,
            "common_random_numbers": True,
            "train": {},
            "finetune": {"train": {"steps": 3}, "reinit": ["class_embedding", "up_blocks"]},
            "samples": 4,
        },
        "model.train": TRAIN,
        "generation": {
            "guidance_scale": 2.0,
            "steps": 2,
            "batch_size": 8,
            "device": "cpu",
            "dtype": "float32",
        },
        "features": {"marker_threshold": 0.5},
        "metrics": ["mean_confidence"],
        "data.image_size": 8,
        "seed": 0,
    }


@pytest.mark.parametrize("game", ["finetune", "full"])
def test_retrains_see_only_the_coalitions_items(tiny, monkeypatch, game):
    dataset, model_dir = tiny
    seen = []  # every image the training loop was given: a spy around the real trainer
    real = models.train_diffusion

    def spy(images, *args, **kwargs):
        seen.append(np.unique(np.round(images * 255)).astype(int).tolist())
        return real(images, *args, **kwargs)

    monkeypatch.setattr(models, "train_diffusion", spy)
    table = pd.DataFrame({"coalition": [0, 1], "members": [["dark", "bright"], []]})
    rows, _ = retraining.retrain_coalitions(
        dataset,
        table,
        _cfg(game),
        game,
        2,
        models.DigitsClassifier(8, 16, 8, 3).eval(),
        Reference.from_features(np.random.default_rng(0).normal(size=(20, 16))),
        2,
        str(model_dir),
        "test",
    )
    # the coalition's two replicates trained on its two grey levels, never on "mid"'s
    assert seen == [[LEVEL["dark"], LEVEL["bright"]]] * 2
    first = rows[rows["coalition"] == 0]
    assert first["trained_contributors"].map(list).tolist() == [["bright", "dark"]] * 2
    assert (first["n_items"] == 12).all() and (first["trained_items"] <= 12).all()
    assert rows[rows["coalition"] == 1]["trained_items"].tolist() == [0, 0]  # empty: no training
    assert set(rows["game"]) == {game} and rows["replicate"].tolist() == [0, 1, 0, 1]


def test_finetune_starts_from_the_trained_model_with_the_named_layers_reset(tiny):
    _, model_dir = tiny
    base = models.load_diffusion(str(model_dir))
    copy = models.load_diffusion(str(model_dir)).unet
    reset = retraining.reinitialise(copy, ["class_embedding"], seed=1)
    assert reset == ["class_embedding"]
    before, after = dict(base.unet.named_parameters()), dict(copy.named_parameters())
    assert not np.allclose(
        before["class_embedding.weight"].detach(), after["class_embedding.weight"].detach()
    )
    assert all(
        np.array_equal(before[k].detach(), after[k].detach())
        for k in before
        if not k.startswith("class_embedding")
    )
    with pytest.raises(ValueError, match="names no layer.*'decoder'"):
        retraining.reinitialise(copy, ["decoder"], seed=1)


def test_common_random_numbers_share_seeds_across_coalitions_only():
    assert retraining.replicate_seeds(0, 3, 1, True) == retraining.replicate_seeds(0, 9, 1, True)
    assert retraining.replicate_seeds(0, 3, 0, True) != retraining.replicate_seeds(0, 3, 1, True)
    assert retraining.replicate_seeds(0, 3, 1, False) != retraining.replicate_seeds(0, 9, 1, False)

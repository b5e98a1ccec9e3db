"""Your own images at their size and colour: the class-conditional model, the trained extractor and
the report see RGB when the data has colour (data.color), and the grey digits stay as they were."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from surrogateshap.data import checkdata
from surrogateshap.data.datasets import digits_images, load_images, resolve_color
from surrogateshap.models import class_conditional as models
from surrogateshap.models import generators
from surrogateshap.proxy import extractors
from surrogateshap.workflow.steps import data as data_steps
from surrogateshap.workflow.steps import models as model_steps

from .conftest import ROOT, copy_workflow, snakemake

TRAIN = {
    "block_out_channels": [8, 16],
    "train_timesteps": 50,
    "lr": 1e-3,
    "steps": 2,
    "batch_size": 4,
    "label_dropout": 0.1,
    "ema_decay": 0.9,
}
HUES = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.8, 0.1),
    "blue": (0.1, 0.2, 1.0),
    "gold": (1.0, 0.8, 0.1),
}


def _colour_folder(root, size=32, per=6, grey=False):
    """Four contributors, each a square of its own hue at random places; `grey`: mode L files."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for label, (name, hue) in enumerate(HUES.items()):
        for i in range(per):
            image = np.full((size, size, 3), 0.1)
            r, c = rng.integers(0, size // 2, 2)
            image[r : r + size // 2, c : c + size // 2] = hue
            pixels = np.round(image * 255).astype(np.uint8)
            file_name = f"img/{name}-{i}.png"
            picture = Image.fromarray(pixels, mode="RGB")
            (picture.convert("L") if grey else picture).save(root / file_name)
            rows.append({"file_name": file_name, "contributor": name, "label": label})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_a_colour_model_trains_and_samples_rgb_images():
    rng = np.random.default_rng(0)
    images = rng.random((8, 16, 16, 3)).astype(np.float32)
    model = models.train_diffusion(images, np.arange(8) % 2, ["a", "b"], "contributor", TRAIN, 0)
    assert model.channels == 3 and model.image_size == 16
    out = models.sample(model, np.array([0, 1, 2]), np.array([1, 2, 3]), 2.0, 2,
                        torch.device("cpu"), torch.float32, 2)  # fmt: skip
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    # the channels differ: colour is not one grey value copied three times
    assert np.abs(out[..., 0] - out[..., 1]).max() > 0.01
    generator = generators.ClassConditional(
        model,
        {
            "device": "cpu",
            "dtype": "float32",
            "guidance_scale": 2.0,
            "steps": 2,
            "batch_size": 4,
        },  # fmt: skip
    )
    assert generator.image_shape == (16, 16, 3)
    empty = generator.generate(np.array([2, 2]), np.array([5, 6]), "noise")
    assert empty.shape == (2, 16, 16, 3)


def test_grey_digits_train_and_sample_as_before():
    """The embedded default's numbers: a short run's weights and samples, pinned to what the grey
    model gave before colour existed."""
    images, labels = digits_images()
    images, labels = images[:200].astype(np.float32), labels[:200]
    cfg = dict(TRAIN, block_out_channels=[32, 64], train_timesteps=100, steps=5, batch_size=16)
    model = models.train_diffusion(images, labels, [str(i) for i in range(10)], "label", cfg, 3)
    assert model.channels == 1
    weights = float(sum(p.double().sum() for p in model.unet.parameters()))
    assert weights == pytest.approx(952.6135625014736, rel=1e-6)
    out = models.sample(model, np.array([0, 1, 2, 10]), np.array([5, 6, 7, 8]), 2.0, 4,
                        torch.device("cpu"), torch.float32, 8)  # fmt: skip
    assert out.shape == (4, 8, 8)
    assert float(out.astype(np.float64).sum()) == pytest.approx(121.84255054593086, rel=1e-5)
    noise = models.untrained_output(np.array([5, 6]), 8)
    assert noise.shape == (2, 8, 8) and float(noise.sum()) == pytest.approx(61.57151412963867)
    classifier, accuracy = models.train_classifier(
        images, labels, {"hidden": 32, "features": 16, "lr": 1e-3, "epochs": 2}, 1
    )
    assert "channels" not in classifier.config  # a grey classifier's file is as it was
    assert accuracy == pytest.approx(0.17499999701976776)
    assert float(classifier.embed(images[:10])[0].sum()) == pytest.approx(42.14102502446622)


def test_colour_is_resolved_from_the_data(tmp_path):
    colour = _colour_folder(tmp_path / "colour")
    grey = _colour_folder(tmp_path / "grey", grey=True)
    names = pd.read_csv(colour / "metadata.csv")["file_name"]
    folder = {"source": "folder"}
    assert resolve_color({"source": "digits"}) == "grayscale"
    assert resolve_color({"source": "digits", "color": "rgb"}) == "rgb"
    assert resolve_color(folder, colour, names) == "rgb"
    assert resolve_color(dict(folder, color="auto"), colour, names) == "rgb"
    assert resolve_color(folder, grey, names) == "grayscale"
    assert resolve_color(dict(folder, color="grayscale"), colour, names) == "grayscale"
    assert resolve_color(dict(folder, color="rgb"), grey, names) == "rgb"
    # the data stage records it for the stages after it
    data_cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())["data"]
    data_cfg.update(source="folder", root=str(colour), metadata=str(colour / "metadata.csv"))
    data_steps.prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "prepared"))
    assert json.loads((tmp_path / "prepared/dataset.json").read_text())["color"] == "rgb"


def test_the_trained_extractor_sees_colour(tmp_path):
    colour = _colour_folder(tmp_path / "colour")
    data_cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())["data"]
    data_cfg.update(source="folder", root=str(colour), metadata=str(colour / "metadata.csv"))
    data_steps.prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "prepared"))
    out = tmp_path / "extractor.safetensors"
    model_steps.train_extractor(
        data_dir=str(tmp_path / "prepared"),
        cfg={"hidden": 16, "features": 8, "lr": 1e-2, "epochs": 3},
        image_size=16,
        seed=0,
        threads=1,
        out_path=str(out),
        metrics_path=str(tmp_path / "extractor.json"),
    )
    extractor = extractors.load_extractor({"extractor": "trained"}, str(out))
    assert extractor.classifier.config["channels"] == 3
    assert extractor.classifier.body[1].in_features == 16 * 16 * 3
    images = load_images(colour, pd.read_csv(colour / "metadata.csv")["file_name"], 32, "RGB")
    features, probs = extractor.embed(images)
    assert features.shape == (len(images), 16) and probs.shape == (len(images), 4)
    # the same luma in another hue is another image to it
    swapped = images[..., ::-1].copy()
    assert np.abs(extractor.embed(swapped)[0] - features).max() > 1e-3


def test_check_data_says_what_the_model_sees(tmp_path, capsys):
    colour = _colour_folder(tmp_path / "colour")
    config = {
        "data": {
            "source": "folder",
            "root": str(colour),
            "metadata": str(colour / "metadata.csv"),
            "image_size": 32,
        },  # fmt: skip
        "features": {"extractor": "trained"},
    }
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    assert checkdata.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "the model sees them at 32x32 RGB (data.image_size 32, data.color auto)" in out
    config["data"]["color"] = "grayscale"
    path.write_text(yaml.safe_dump(config))
    assert checkdata.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "the model sees them at 32x32 grey" in out and "data.color: rgb keeps" in out


@pytest.mark.slow
def test_a_colour_folder_runs_end_to_end_with_the_trained_extractor(tmp_path, monkeypatch):
    """Acceptance: a 32x32 colour folder dataset through the whole workflow with
    features.extractor: trained; the report's sample grids are in colour."""
    import base64
    import io
    import os
    import re

    data = _colour_folder(tmp_path / "data", per=8)
    workdir = copy_workflow(tmp_path / "wf")
    config = {
        "run": "colour",
        "data": {
            "source": "folder",
            "root": str(data),
            "metadata": str(data / "metadata.csv"),
            "image_size": 32,
        },  # fmt: skip
        "features": {"extractor": "trained"},
        "classifier": {"epochs": 5},
        "model": {
            "train": {
                "block_out_channels": [16, 32],
                "steps": 20,
                "batch_size": 16,
                "ema_decay": 0.9,
            }
        },  # fmt: skip
        "generation": {"samples_per_contributor": 8, "steps": 4, "shards": 1},
        "coalitions": {"count": 16},
        "game": {"check": {"coalitions": 0}},
        "metrics": ["frechet_distance", "mean_confidence", "diversity"],
        "surrogate": {"grid": {"max_depth": [2]}, "cv_folds": 2, "bootstrap": 3},
        "report": {"grid_samples": 2},
    }
    (workdir / "colour.yaml").write_text(yaml.safe_dump(config))
    # the jobs import the package under test, not an installed copy
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ["PYTHONPATH"]]))
    snakemake(workdir, "--configfile", "colour.yaml")
    run = workdir / "results/colour"
    prepared = next((workdir / "results/cache").glob("data/*/dataset.json"))
    assert json.loads(prepared.read_text())["color"] == "rgb"
    html = (run / "report/index.html").read_text()
    grids = re.findall(r'<img alt="samples of [^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert grids
    for encoded in grids:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as grid:
            assert grid.mode == "RGB"
            pixels = np.asarray(grid).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 20  # not grey stored as RGB


def test_the_retraining_game_trains_on_colour(tmp_path, monkeypatch):
    from surrogateshap.data import datasets as data_mod
    from surrogateshap.evaluation import retraining
    from surrogateshap.proxy.metric_base import Reference

    root = _colour_folder(tmp_path / "colour", size=8, per=4)
    items = pd.read_csv(root / "metadata.csv")[["file_name", "contributor"]]
    names = list(HUES)
    contributors = pd.DataFrame({"contributor": names, "n_items": [4] * 4})
    dataset = data_mod.Dataset(root, items, contributors, "rgb")
    shapes = []
    real = models.train_diffusion

    def spy(images, *args, **kwargs):
        shapes.append(images.shape)
        return real(images, *args, **kwargs)

    monkeypatch.setattr(models, "train_diffusion", spy)
    cfg = {
        "evaluation.retrain": {
            "game": "full",
            "replicates": 1,
            "common_random_numbers": True,
            "train": {},
            "samples": 4,
        },  # fmt: skip
        "model.train": TRAIN,
        "generation": {
            "guidance_scale": 2.0,
            "steps": 2,
            "batch_size": 8,
            "device": "cpu",
            "dtype": "float32",
        },  # fmt: skip
        "features": {"marker_threshold": 0.5},
        "metrics": ["mean_confidence"],
        "data.image_size": 8,
        "seed": 0,
    }
    extractor = extractors.DigitsExtractor(models.DigitsClassifier(8, 16, 8, 4, channels=3).eval())
    table = pd.DataFrame({"coalition": [0, 1], "members": [["red", "blue"], []]})
    rows, _ = retraining.retrain_coalitions(
        dataset, table, cfg, "full", 1, extractor,
        Reference.from_features(np.random.default_rng(0).normal(size=(20, 16))), 2, None, "test",
    )  # fmt: skip
    assert shapes == [(8, 8, 8, 3)]  # the coalition's 8 items, in colour
    assert len(rows) == 2 and np.isfinite(rows["mean_confidence"]).all()


def test_your_functions_are_tried_on_images_in_the_models_colour(tmp_path, default_config):
    from surrogateshap.workflow import preflight
    from surrogateshap.workflow.config import merge

    colour = _colour_folder(tmp_path / "colour")
    folder = {"source": "folder", "root": str(colour), "metadata": str(colour / "metadata.csv")}
    assert preflight.image_shape(default_config) == (8, 8)
    config = merge(default_config, {"data": dict(folder, image_size=32)})
    assert preflight.image_shape(config) == (32, 32, 3)
    config["data"]["color"] = "grayscale"
    assert preflight.image_shape(config) == (32, 32)

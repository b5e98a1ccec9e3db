"""The metric library: reference values, exact pooled decompositions, local CLIP-based scores."""

import numpy as np
import pytest
import torch

from surrogateshap.models import tiny
from surrogateshap.proxy import extractors
from surrogateshap.proxy.metric_base import Reference, Samples
from surrogateshap.proxy.metrics import METRICS, config_problems, get_metric
from surrogateshap.workflow.config import ConfigError, validate_config

from .conftest import SCHEMA, reference_set


def _score(name, samples, weights, custom=None):
    metric = get_metric(name, custom)
    ref = Reference.from_features(
        np.random.default_rng(0).normal(size=(50, samples.features.shape[1]))
    )
    return metric.evaluate(metric.group_stats(samples, ref), weights, ref)


def _samples(features, probs=None, group=None, scores=None):
    n = len(features)
    return Samples(
        np.zeros(n, np.int64) if group is None else group,
        features,
        np.full((n, 2), 0.5) if probs is None else probs,
        np.zeros(n),
        scores or {},
    )


def vendi_reference(features):
    """Friedman & Dieng's definition: exp(entropy of eigenvalues of K/n), K the cosine kernel."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    values = np.clip(np.linalg.eigvalsh(x @ x.T / len(x)), 0, None)
    values = values[values > 1e-15]
    return float(np.exp(-(values * np.log(values)).sum()))


def test_vendi_known_values_and_definition():
    one = np.ones((1, 1))
    assert _score("vendi_score", _samples(np.tile([1.0, 2.0, 3.0], (6, 1))), one)[
        0
    ] == pytest.approx(1.0)
    assert _score("vendi_score", _samples(np.eye(5)), one)[0] == pytest.approx(5.0)
    features = np.random.default_rng(1).normal(size=(40, 6))
    assert _score("vendi_score", _samples(features), one)[0] == pytest.approx(
        vendi_reference(features)
    )


def test_pooled_mixtures_equal_the_metric_of_the_pooled_samples():
    """Vendi, attribute bias and per-sample means: a mixture with weights ∝ group sizes scores
    exactly like one set holding all those samples."""
    rng = np.random.default_rng(2)
    sizes = [10, 30]
    group = np.repeat([0, 1], sizes)
    probs = rng.dirichlet(np.ones(3), size=40)
    samples = _samples(
        rng.normal(size=(40, 5)) + group[:, None],
        probs,
        group,
        {"clip_score": rng.uniform(0, 40, 40)},
    )
    weights = np.array([sizes]) / sum(sizes)
    pooled = _samples(samples.features, probs, None, samples.scores)
    for name in ("vendi_score", "attribute_bias", "clip_score"):
        assert _score(name, samples, weights)[0] == pytest.approx(
            _score(name, pooled, np.ones((1, 1)))[0]
        ), name


def test_attribute_bias_bounds():
    uniform = _samples(np.ones((4, 2)), np.full((4, 4), 0.25))
    one_class = _samples(np.ones((4, 2)), np.tile([1.0, 0, 0, 0], (4, 1)))
    assert _score("attribute_bias", uniform, np.ones((1, 1)))[0] == pytest.approx(0.0)
    assert _score("attribute_bias", one_class, np.ones((1, 1)))[0] == pytest.approx(0.75)


def test_every_metric_declares_needs_direction_decomposition():
    for name in METRICS:
        info = get_metric(name).info()
        assert (
            info["direction"] in ("higher", "lower") and info["decomposition"] and "needs" in info
        )


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    tiny.make_tiny_clip(root / "clip", image_size=16, aesthetic_head=root / "aesthetic.safetensors")
    return root


def test_reference_set_in_clip_features(clip_dir, tmp_path):
    """With the clip extractor the Fréchet reference set is the dataset's own images, read at CLIP's input size."""
    features = reference_set(tmp_path, {"extractor": "clip", "clip": str(clip_dir / "clip")})
    direct = extractors.load_clip(str(clip_dir / "clip")).image_embeddings(
        np.stack([np.full((16, 16, 3), 40 * i / 255, np.float32) for i in range(4)])
    )
    np.testing.assert_allclose(features, direct, rtol=1e-4, atol=1e-5)


def test_clip_scores_match_their_definitions(clip_dir):
    images = np.random.default_rng(3).uniform(size=(5, 16, 16, 3)).astype(np.float32)
    prompts = ["a red square", "a dog", "", "a blue square zqx", "東京"]
    cfg = {
        "clip": str(clip_dir / "clip"),
        "aesthetic": str(clip_dir / "aesthetic.safetensors"),
        "reward": str(clip_dir / "clip"),
    }
    scores = extractors.score_samples(images, prompts, cfg, {"clip_score", "aesthetic", "reward"})
    clip = extractors.ClipModel(cfg["clip"])
    model = clip.model
    with torch.no_grad():
        pixels = (torch.from_numpy(images).permute(0, 3, 1, 2) - clip.mean) / clip.std
        image = model.get_image_features(pixel_values=pixels)
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        tokens = clip.tokenizer(prompts, padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens)
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
    cos = torch.nn.functional.cosine_similarity(image, text).numpy()
    np.testing.assert_allclose(
        scores["clip_score"], 100 * np.clip(cos, 0, None), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        scores["reward"], model.logit_scale.exp().item() * cos, rtol=1e-4, atol=1e-4
    )
    from safetensors.torch import load_file

    head = load_file(str(clip_dir / "aesthetic.safetensors"))
    unit = torch.nn.functional.normalize(image, dim=1)
    expected = (unit @ head["weight"].T + head["bias"]).squeeze(1).numpy()
    np.testing.assert_allclose(scores["aesthetic"], expected, rtol=1e-4, atol=1e-4)


def test_unreadable_weight_files_are_named(tmp_path):
    """A corrupt aesthetic head or LPIPS file: a ValueError naming it (io.read_state_dict), not the loader's own error."""
    from surrogateshap.proxy.lpips import load_lpips

    for name in ("head.pth", "head.safetensors"):
        (tmp_path / name).write_bytes(b"not a weights file")
        with pytest.raises(ValueError, match=f"{name}: cannot read the aesthetic head"):
            extractors.load_linear_head(str(tmp_path / name))
    with pytest.raises(ValueError, match="head.pth: cannot read LPIPS weights"):
        load_lpips(tmp_path / "head.pth")


def test_clip_extractor_attribute_probabilities(clip_dir):
    extractor = extractors.ClipExtractor(
        extractors.ClipModel(str(clip_dir / "clip")),
        {"colour": ["red", "green", "blue"], "shape": ["square", "circle"]},
    )
    features, probs = extractor.embed(
        np.random.default_rng(4).uniform(size=(3, 20, 20, 3)).astype(np.float32)
    )
    assert features.shape == (3, 32) and probs.shape == (3, 6)
    # recomputed with the transformers model itself: per attribute, the softmax over its values of
    # logit_scale * cos(image, "value"); the joint is their outer product, colour-major
    clip = extractor.clip
    with torch.no_grad():
        image = torch.from_numpy(features)  # the image embeddings, checked in the test above
        per_attribute = []
        for values in (["red", "green", "blue"], ["square", "circle"]):
            tokens = clip.tokenizer(values, padding=True, return_tensors="pt")
            text = clip.model.get_text_features(**tokens)
            text = text if isinstance(text, torch.Tensor) else text.pooler_output
            cos = (
                torch.nn.functional.normalize(image, dim=1)
                @ torch.nn.functional.normalize(text.double(), dim=1).T
            )
            per_attribute.append(
                torch.softmax(clip.model.logit_scale.exp().double() * cos.double(), 1).numpy()
            )
    joint = (per_attribute[0][:, :, None] * per_attribute[1][:, None, :]).reshape(3, 6)
    np.testing.assert_allclose(probs, joint, rtol=1e-4, atol=1e-6)
    assert np.ptp(probs) > 1e-3  # not uniform: the check has something to compare


def test_custom_metric_from_a_file(tmp_path):
    (tmp_path / "brightness.py").write_text(
        "def mean_brightness(images, prompts):\n    return images.mean(axis=(1, 2, 3))\n"
    )
    spec = {
        "bright": {
            "function": f"{tmp_path / 'brightness.py'}:mean_brightness",
            "direction": "lower",
        }
    }
    images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (0.2, 0.4)])
    scores = extractors.score_samples(images, ["", ""], {"custom_metrics": spec}, {"bright"})
    np.testing.assert_allclose(scores["bright"], [0.2, 0.4])
    samples = _samples(np.ones((2, 2)), scores=scores)
    assert _score("bright", samples, np.ones((1, 1)), spec)[0] == pytest.approx(0.3)
    assert get_metric("bright", spec).info()["direction"] == "lower"
    with pytest.raises(ValueError, match="no function"):
        extractors.load_callable(f"{tmp_path / 'brightness.py'}:nope")


def test_config_lists_every_missing_requirement(default_config):
    config = default_config | {
        "metrics": ["clip_score", "aesthetic_score", "spurious_rate", "no_such_metric"]
    }
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    text = str(error.value)
    for needle in (
        "'clip_score' needs features.clip",
        "features.aesthetic",
        "features.spurious_detector",
        "unknown metric 'no_such_metric'",
    ):
        assert needle in text, text
    assert config_problems(
        ["frechet_distance"], {"extractor": "clip"}
    )  # clip extractor without a model


def test_missing_weight_files_are_named_before_any_job(default_config, tmp_path):
    config = default_config | {
        "metrics": ["lpips_diversity"],
        "features": default_config["features"]
        | {
            "lpips": {"backbone": str(tmp_path / "alexnet.pth")},
            "aesthetic": str(tmp_path / "head.safetensors"),
        },
    }
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    text = str(error.value)
    assert f"features.lpips.backbone: no such file: {tmp_path / 'alexnet.pth'}" in text, text
    assert "features.aesthetic: no such file" in text, text


def test_text_to_image_config_needs_path_and_captions(default_config):
    config = default_config | {"model": default_config["model"] | {"type": "stable_diffusion"}}
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert "model.path" in str(error.value) and "data.caption_column" in str(error.value)


def test_attribute_bias_per_prompt_group():
    """With prompt groups, the bias is the share-weighted mean of each group's distance from uniform,
    and a pooled mixture still equals the metric of the pooled samples."""
    groups = extractors.prompt_groups(
        ["A Doctor at work", "a nurse", "a physician", "", "a cat"],
        {"doctor": "doctor|physician", "nurse": "nurse"},
    )
    assert groups.tolist() == [0, 1, 0, 2, 2]
    # pool 0: doctors all of class 0; pool 1: nurses all of class 1 (a skew in each group of prompts)
    probs = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    scores = {"prompt_group": np.array([0.0] * 4 + [1.0] * 4)}
    samples = _samples(np.ones((8, 2)), probs, np.repeat([0, 1], 4), scores)
    assert _score(
        "attribute_bias", samples, np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    ).tolist() == pytest.approx([0.5, 0.5, 0.5])
    # without prompt groups the two skews cancel in the pooled distribution
    assert _score("attribute_bias", _samples(np.ones((8, 2)), probs), np.ones((1, 1)))[
        0
    ] == pytest.approx(0.0)
    # doctors skewed (0.5), nurses balanced (0): the mean weighted by each group's share of the images
    probs = np.array([[1.0, 0.0]] * 4 + [[1.0, 0.0], [0.0, 1.0]] * 6)
    scores = {"prompt_group": np.array([0.0] * 4 + [1.0] * 12)}
    samples = _samples(np.ones((16, 2)), probs, np.repeat([0, 1], [4, 12]), scores)
    assert _score("attribute_bias", samples, np.array([[0.25, 0.75]]))[0] == pytest.approx(
        0.25 * 0.5
    )
    rng = np.random.default_rng(4)
    group = np.repeat([0, 1, 2], [10, 20, 30])
    scores = {"prompt_group": rng.integers(0, 3, 60).astype(float)}
    samples = _samples(np.ones((60, 2)), rng.dirichlet(np.ones(4), 60), group, scores)
    pooled = _samples(np.ones((60, 2)), samples.probs, None, scores)
    assert _score("attribute_bias", samples, np.array([[10, 20, 30]]) / 60)[0] == pytest.approx(
        _score("attribute_bias", pooled, np.ones((1, 1)))[0]
    )


def test_bad_prompt_group_pattern_is_named():
    problems = config_problems(
        ["attribute_bias"], {"prompt_groups": {"doctor": "doctor(", "nurse": "nurse"}}
    )
    assert any("features.prompt_groups.doctor" in p for p in problems), problems

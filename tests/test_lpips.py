"""LPIPS in plain torch: against the `lpips` package's own code, strict weight loading, the
exact pooled decomposition of lpips_diversity, and the features stage's embeddings."""

import sys
import types

import numpy as np
import pytest
import torch

from surrogateshap.proxy import features as feat
from surrogateshap.proxy.lpips import SCALE, SHIFT, default_linear_file, load_lpips
from surrogateshap.proxy.metric_base import Reference, Samples
from surrogateshap.proxy.metrics import get_metric

from .conftest import torchvision_alexnet, write_random_backbone


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return write_random_backbone(tmp_path_factory.mktemp("lpips") / "alexnet.pth")


def _images(n, size=40, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, size, size, 3)).astype(np.float32)


def _reference_alexnet(backbone):
    """The independent torchvision AlexNet (tests/conftest.py) with the backbone file's weights."""
    net = torchvision_alexnet().eval()
    state = torch.load(backbone, weights_only=True)
    net.features.load_state_dict(
        {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    )
    return net


def test_backbone_activations_match_torchvision_alexnet(backbone):
    """At LPIPS's five taps (the ReLU after each convolution: torchvision indices 1, 4, 7, 9, 11),
    our activations equal the independently written torchvision AlexNet's, unit-normalised along
    the channels as lpips.normalize_tensor does; a wrong stride, padding or pooling fails."""
    ours = load_lpips(backbone)
    net = _reference_alexnet(backbone)
    x = torch.from_numpy(_images(3, size=64, seed=4).transpose(0, 3, 1, 2)) * 2 - 1
    with torch.no_grad():
        got = ours.activations(x)
        h = (x - torch.tensor(SHIFT).view(1, 3, 1, 1)) / torch.tensor(SCALE).view(1, 3, 1, 1)
        want = []
        for index, layer in enumerate(net.features):
            h = layer(h)
            if index in (1, 4, 7, 9, 11):
                want.append(h / (torch.sqrt((h * h).sum(1, keepdim=True)) + 1e-10))
    assert [tuple(f.shape[1:]) for f in want] == [
        (64, 15, 15),
        (192, 7, 7),
        (384, 3, 3),
        (256, 3, 3),
        (256, 3, 3),
    ]
    assert len(got) == 5
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_matches_the_lpips_package(backbone, monkeypatch):
    """The `lpips` package (its v0.1 linear weights; its backbone the independent torchvision
    AlexNet of tests/conftest.py with the same random weights, through a stand-in for
    torchvision's alexnet constructor) computes the same distances, and ||e_a - e_b||^2 of our
    embeddings equals them."""
    assert default_linear_file() is not None, "make installs lpips (requirements-nodeps.txt)"
    ours = load_lpips(backbone)
    fake_tv = types.ModuleType("torchvision")
    fake_tv.models = types.SimpleNamespace(
        alexnet=lambda pretrained=False, **_: _reference_alexnet(backbone)
    )
    monkeypatch.setitem(sys.modules, "torchvision", fake_tv)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    reference = lpips.LPIPS(
        net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False
    ).eval()
    x0 = torch.from_numpy(_images(4, seed=1).transpose(0, 3, 1, 2)) * 2 - 1
    x1 = torch.from_numpy(_images(4, seed=2).transpose(0, 3, 1, 2)) * 2 - 1
    with torch.no_grad():
        expected = reference(x0, x1).flatten().numpy()
        direct = ours.distance(x0, x1).numpy()
        e0, e1 = ours.embed(x0), ours.embed(x1)
    assert expected.min() > 0
    np.testing.assert_allclose(direct, expected, rtol=1e-5)
    np.testing.assert_allclose(((e0 - e1) ** 2).sum(1).numpy(), expected, rtol=1e-4)


def test_strict_loading_names_the_file(backbone, tmp_path):
    state = torch.load(backbone, weights_only=True)
    del state["features.8.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth.*missing features.8.weight"):
        load_lpips(tmp_path / "broken.pth")
    linear = torch.load(default_linear_file(), map_location="cpu", weights_only=True)
    linear["lin2.model.1.weight"] = -linear["lin2.model.1.weight"] - 1
    torch.save(linear, tmp_path / "negative.pth")
    with pytest.raises(ValueError, match="negative.pth.*lin2.model.1.weight has negative"):
        load_lpips(backbone, tmp_path / "negative.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_lpips(tmp_path / "nowhere.pth")


def test_lpips_diversity_is_the_mean_pairwise_distance_exactly(backbone):
    """The metric's per-group blocks are brute-force mean LPIPS over pairs (distinct pairs within
    a group), so every pooled mixture is scored exactly."""
    model = load_lpips(backbone)
    images = _images(7, seed=3)
    group = np.array([0, 0, 0, 1, 1, 1, 1])
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)) * 2 - 1
    with torch.no_grad():
        pair = np.array(
            [
                [model.distance(x[i : i + 1], x[j : j + 1]).item() for j in range(7)]
                for i in range(7)
            ]
        )
        vectors = model.embed(x).numpy()
    samples = Samples(
        group, np.zeros((7, 2)), np.full((7, 2), 0.5), np.zeros(7), {}, {"lpips": vectors}
    )
    metric = get_metric("lpips_diversity")
    reference = Reference.from_features(np.random.default_rng(0).normal(size=(5, 2)))
    block = metric.group_stats(samples, reference)["block"]
    a, b = group == 0, group == 1
    off = ~np.eye(7, dtype=bool)
    expected = np.array(
        [
            [pair[np.ix_(a, a)][off[np.ix_(a, a)]].mean(), pair[np.ix_(a, b)].mean()],
            [pair[np.ix_(b, a)].mean(), pair[np.ix_(b, b)][off[np.ix_(b, b)]].mean()],
        ]
    )
    np.testing.assert_allclose(block, expected, rtol=1e-4)
    weights = np.array([[1.0, 0.0], [0.3, 0.7]])
    np.testing.assert_allclose(
        metric.evaluate({"block": block}, weights, reference),
        [expected[0, 0], weights[1] @ expected @ weights[1]],
        rtol=1e-4,
    )


def test_features_stage_stores_the_embeddings(backbone, tmp_path):
    """extract -> write_samples -> read_samples keeps them; without features.lpips the metric says what to set."""

    class Flat:
        def embed(self, images):
            return images.reshape(len(images), -1)[:, :3].astype(np.float64), np.full(
                (len(images), 2), 0.5
            )

    images = _images(3, size=16)
    cfg = {"lpips": {"backbone": str(backbone), "size": 32}}
    samples = feat.extract(images, np.array([0, 0, 1]), Flat(), 2, 0.5, None, cfg)
    feat.write_samples(tmp_path / "shard.parquet", samples, np.arange(3))
    back = feat.read_samples([tmp_path / "shard.parquet"])
    np.testing.assert_allclose(back.vectors["lpips"], samples.vectors["lpips"], rtol=1e-6)
    without = feat.extract(images, np.array([0, 0, 1]), Flat(), 2, 0.5, None, {})
    with pytest.raises(ValueError, match="features.lpips"):
        get_metric("lpips_diversity").group_stats(without, None)


def test_per_coalition_mode_scores_lpips_from_its_own_samples(backbone):
    """game.sample_utilities (per_coalition mode) keeps the embeddings: one group, distinct pairs."""
    from surrogateshap.proxy.game import sample_utilities

    model = load_lpips(backbone)
    x = torch.from_numpy(_images(4, seed=5).transpose(0, 3, 1, 2)) * 2 - 1
    with torch.no_grad():
        vectors = model.embed(x).numpy()
        pair = [
            model.distance(x[i : i + 1], x[j : j + 1]).item()
            for i in range(4)
            for j in range(4)
            if i != j
        ]
    samples = Samples(
        np.array([0, 1, 1, 2]),
        np.zeros((4, 2)),
        np.full((4, 2), 0.5),
        np.zeros(4),
        {},
        {"lpips": vectors},
    )
    reference = Reference.from_features(np.random.default_rng(0).normal(size=(5, 2)))
    got = sample_utilities(samples, ["lpips_diversity"], reference)["lpips_diversity"]
    assert got == pytest.approx(np.mean(pair), rel=1e-4)

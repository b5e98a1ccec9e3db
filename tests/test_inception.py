"""The FID Inception-v3 extractor (surrogateshap.proxy.inception) with random weights: no real
weights are available offline, so these tests check the architecture's layout, loading,
preprocessing and the FID/IS plumbing, not pytorch-fid's reference numbers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surrogateshap.proxy import extractors
from surrogateshap.proxy.game import sample_utilities
from surrogateshap.proxy.inception import (
    FIDInceptionV3,
    InceptionExtractor,
    load_inception,
    preprocess,
    random_inception_state,
    write_random_inception,
)
from surrogateshap.proxy.metric_base import Reference, Samples
from surrogateshap.proxy.metrics import config_problems

from .conftest import reference_set

# torchvision documents 27,161,264 parameters for Inception-v3 (1000 classes, with the aux
# classifier). The aux classifier has conv0 768*128 + BN 2*128, conv1 128*768*5*5 + BN 2*768 and
# fc 768*1000 + 1000 = 3,326,696 parameters; the FID network has none of it and 8 more classes
# in fc (8 * (2048 + 1) = 16,392 parameters).
EXPECTED_PARAMETERS = (
    27_161_264 - (768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000) + 8 * 2049
)
# BasicConv2d modules: stem 5, Mixed_5b-5d 3 x 7, Mixed_6a 4, Mixed_6b-6e 4 x 10, Mixed_7a 6,
# Mixed_7b-7c 2 x 9 = 94; each holds conv.weight and bn.{weight, bias, running_mean,
# running_var, num_batches_tracked}; plus fc.weight and fc.bias.
BASIC_CONVS = 5 + 3 * 7 + 4 + 4 * 10 + 6 + 2 * 9
EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.num_batches_tracked": (),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_inception(
        tmp_path_factory.mktemp("inception") / "random.safetensors", seed=3
    )


@pytest.fixture(scope="module")
def model(weights):
    return load_inception(weights)


def images(kind: str, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8) if kind == "gray" else (n, 16, 16, 3)).astype(np.float32)


# --------------------------------------------------------------------------- (a) layout
def test_state_dict_layout():
    state = FIDInceptionV3().state_dict()
    assert BASIC_CONVS == 94
    assert len(state) == 6 * BASIC_CONVS + 2 == 566
    parameters = list(FIDInceptionV3().parameters())
    assert len(parameters) == 3 * BASIC_CONVS + 2
    assert sum(p.numel() for p in parameters) == EXPECTED_PARAMETERS == 23_850_960
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)
    assert FIDInceptionV3().Conv2d_1a_3x3.bn.eps == pytest.approx(0.001)
    assert FIDInceptionV3().Conv2d_1a_3x3.conv.bias is None


def _pool_branch_input(block, x):
    """The tensor the block feeds its `branch_pool` convolution."""
    seen = []
    handle = block.branch_pool.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.inference_mode():
        block(x)
    handle.remove()
    return seen[0]


def test_fid_pooling_patches():
    """Average pools that ignore padding in Mixed_5*, 6b-6e, 7b; a max pool in Mixed_7c."""
    net = FIDInceptionV3().eval()
    torch.manual_seed(0)
    for name, channels, size in (("Mixed_5b", 192, 5), ("Mixed_6b", 768, 4), ("Mixed_7b", 1280, 3)):
        x = torch.randn(1, channels, size, size)
        pooled = _pool_branch_input(getattr(net, name), x)
        torch.testing.assert_close(pooled, F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        assert not torch.allclose(pooled, F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
    x = torch.randn(1, 2048, 3, 3)
    torch.testing.assert_close(_pool_branch_input(net.Mixed_7c, x), F.max_pool2d(x, 3, 1, 1))


# --------------------------------------------------------------------------- (b) loading
def test_random_weights_round_trip(weights, model, tmp_path):
    expected = random_inception_state(seed=3)
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # a .pth file (read with weights_only=True), also without the num_batches_tracked counters
    # that weights converted before torch 0.4.1 lack
    pth = tmp_path / "weights.pth"
    torch.save({k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}, pth)
    assert torch.equal(load_inception(pth).state_dict()["fc.weight"], expected["fc.weight"])
    bn = random_inception_state(seed=3)["Mixed_6c.branch7x7_1.bn.running_var"]
    assert torch.all(bn == 1) and not torch.equal(
        random_inception_state(seed=4)["fc.weight"], expected["fc.weight"]
    )


def test_mismatched_weights_are_refused(tmp_path):
    state = random_inception_state(seed=0)
    state["Mixed_5b.branch1x1.conv.weights"] = state.pop("Mixed_5b.branch1x1.conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        load_inception(path)
    message = str(error.value)
    assert str(path) in message
    assert "1 missing keys (first: Mixed_5b.branch1x1.conv.weight)" in message
    assert "1 unexpected keys (first: Mixed_5b.branch1x1.conv.weights)" in message

    state = random_inception_state(seed=0)  # torchvision's ImageNet head: 1000 classes
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:1000], state["fc.bias"][:1000]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"fc\.weight \(1000, 2048\)"):
        load_inception(path)

    with pytest.raises(ValueError, match="nowhere.pth"):
        load_inception(tmp_path / "nowhere.pth")


# --------------------------------------------------------------------------- (c) embed
def test_preprocessing():
    x = preprocess(images("gray"))
    assert x.shape == (3, 3, 299, 299) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    gray = images("gray")
    torch.testing.assert_close(
        x[:, 0, 0, 0], torch.from_numpy(2 * gray[:, 0, 0] - 1)
    )  # corners kept
    torch.testing.assert_close(x[:, 0, -1, -1], torch.from_numpy(2 * gray[:, -1, -1] - 1))
    torch.testing.assert_close(
        preprocess(np.full((1, 5, 7, 3), 0.5, np.float32)),
        torch.zeros(1, 3, 299, 299),
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ValueError, match="shape"):
        preprocess(np.zeros((2, 4, 4, 2), np.float32))


@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_embed(model, kind):
    x = images(kind)
    features, probs = InceptionExtractor(model, batch_size=3).embed(x)
    assert features.shape == (3, 2048) and probs.shape == (3, 1008)
    assert features.dtype == np.float64 and probs.dtype == np.float64
    assert (
        np.isfinite(features).all() and np.isfinite(probs).all() and (features >= 0).all()
    )  # after ReLU
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    assert not np.allclose(features[0], features[1])
    again = InceptionExtractor(model, batch_size=3).embed(x)
    np.testing.assert_array_equal(again[0], features)
    np.testing.assert_array_equal(again[1], probs)
    one = InceptionExtractor(model, batch_size=1).embed(x, ["a prompt"] * 3)
    np.testing.assert_allclose(one[0], features, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one[1], probs, atol=1e-5, rtol=0)
    if kind == "gray":  # grayscale is the same image with three equal channels
        rgb = InceptionExtractor(model, batch_size=3).embed(np.repeat(x[..., None], 3, axis=-1))
        np.testing.assert_allclose(rgb[0], features, atol=1e-5, rtol=0)


def test_logits_bias_option(model):
    x = images("rgb", 1)
    unbiased = InceptionExtractor(model).embed(x)
    biased = InceptionExtractor(model, logits_bias=True).embed(x)
    np.testing.assert_array_equal(unbiased[0], biased[0])
    with torch.inference_mode():
        logits = model(preprocess(x))[1].double()
    np.testing.assert_allclose(biased[1], torch.softmax(logits, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        unbiased[1], torch.softmax(logits - model.fc.bias.double(), 1).numpy(), atol=1e-6
    )


def test_empty_batch(model):
    features, probs = InceptionExtractor(model).embed(np.zeros((0, 8, 8), np.float32))
    assert features.shape == (0, 2048) and probs.shape == (0, 1008)


# --------------------------------------------------------------------------- (d) Inception Score
def inception_score(probs: np.ndarray) -> float:
    n = len(probs)
    samples = Samples(np.zeros(n, dtype=np.int64), np.zeros((n, 2)), probs, np.zeros(n))
    reference = Reference(np.zeros(2), np.eye(2), np.eye(2))  # unused by the Inception Score
    return sample_utilities(samples, ["inception_score_like"], reference)["inception_score_like"]


def test_inception_score_known_values():
    assert inception_score(np.full((4, 1008), 1 / 1008)) == pytest.approx(1.0, abs=1e-9)
    for n in (1, 2, 7):
        one_hot = np.zeros((n, 1008))
        one_hot[np.arange(n), np.arange(n) * 3] = 1.0
        assert inception_score(one_hot) == pytest.approx(n, rel=1e-6)
    assert inception_score(np.tile(np.eye(1008)[5], (6, 1))) == pytest.approx(
        1.0, rel=1e-6
    )  # one class only
    # [1, 0] and [1/2, 1/2]: marginal [3/4, 1/4]; IS = exp(mean KL(p_i || marginal))
    kl = [np.log(4 / 3), 0.5 * np.log(2 / 3) + 0.5 * np.log(2)]
    assert inception_score(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(
        np.exp(np.mean(kl)), rel=1e-9
    )


def test_inception_score_of_extractor_probs(model):
    _, probs = InceptionExtractor(model).embed(images("rgb"))
    score = inception_score(probs)
    # exp(mean_i KL(p_i || mean_j p_j)), written out with numpy on the extractor's probabilities
    marginal = probs.mean(0)
    kl = (probs * (np.log(probs) - np.log(marginal))).sum(1)
    assert np.ptp(probs) > 1e-4  # the random network's images get different distributions
    assert score == pytest.approx(float(np.exp(kl.mean())), rel=1e-9)
    assert score > 1.0


# --------------------------------------------------------------------------- (e) config
def test_load_extractor_and_config(weights):
    extractor = extractors.load_extractor(
        {"extractor": "inception", "inception": str(weights)}, None
    )
    assert isinstance(extractor, InceptionExtractor) and extractor.size == 299
    assert (
        extractors.load_extractor({"extractor": "inception", "inception": str(weights)}, None)
        is extractor
    )  # cached
    on_cpu = extractors.load_extractor(
        {"extractor": "inception", "inception": str(weights)}, None, device="cpu"
    )
    assert next(on_cpu.model.parameters()).device.type == "cpu"
    features, probs = extractor.embed(images("gray", 1))
    assert features.shape == (1, 2048) and probs.shape == (1, 1008)
    with pytest.raises(ValueError, match="features.inception"):
        extractors.load_extractor({"extractor": "inception", "inception": None}, None)
    problems = config_problems(["frechet_distance"], {"extractor": "inception"})
    assert any("features.inception" in p for p in problems)
    assert not config_problems(
        ["frechet_distance", "inception_score_like"],
        {"extractor": "inception", "inception": str(weights)},
    )


def test_schema_accepts_inception():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    features = schema["properties"]["features"]["properties"]
    assert "inception" in features["extractor"]["enum"]
    assert features["inception"]["default"] is None


def test_reference_set_of_a_folder_dataset(weights, tmp_path):
    """The Fréchet reference set in Inception features: the dataset's own images, at the network's input."""
    features = reference_set(tmp_path, {"extractor": "inception", "inception": str(weights)})
    assert features.shape == (4, 2048) and np.isfinite(features).all()

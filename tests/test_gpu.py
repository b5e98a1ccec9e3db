"""The CUDA paths, for real, on a GPU: device and dtype selection, fp16/bf16 generation (the
class-conditional UNet and a text-to-image pipeline), training on the GPU as the retraining game
does, and the torch (float64) backend of the Fréchet distance. Each is compared with the same
computation on the CPU.

Marked `gpu`; skipped, saying so, where torch sees no CUDA device (CI, the 2-core machine).
benchmarks/gpu_check.sh runs them on a lent GPU machine (docs/gpu.md)."""

import numpy as np
import pytest
import torch

from surrogateshap.models import class_conditional as models
from surrogateshap.proxy import metric_base, metrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device visible to torch (torch.cuda.is_available() is False); "
        "the gpu tests run on a GPU machine: benchmarks/gpu_check.sh, docs/gpu.md",
    ),
]
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def _digits_model(steps=30, device=CPU, seed=0):
    """The workflow's class-conditional UNet, trained briefly on 3 digit classes."""
    from surrogateshap.data.datasets import digits_images

    images, labels = digits_images()
    keep = labels < 3
    cfg = {
        "block_out_channels": [16, 32],
        "train_timesteps": 1000,
        "steps": steps,
        "batch_size": 64,
        "lr": 2e-3,
        "ema_decay": 0.995,
        "label_dropout": 0.1,
    }
    return models.train_diffusion(
        images[keep][:300], labels[keep][:300], ["0", "1", "2"], "label", cfg, seed, device=device
    )


def test_device_and_dtype_selection():
    assert models.resolve_device("auto") == CUDA
    assert models.resolve_device("cuda:0") == torch.device("cuda:0")
    assert models.resolve_device("cpu") == CPU
    assert models.resolve_dtype("float16", CUDA) == torch.float16
    assert models.resolve_dtype("bfloat16", CUDA) == torch.bfloat16
    assert models.resolve_dtype("float16", CPU) == torch.float32  # halves only on a GPU
    xp, to = metrics.linalg_backend()
    assert (
        xp is torch
        and to(np.ones(2)).device.type == "cuda"
        and to(np.ones(2)).dtype == torch.float64
    )


@pytest.mark.parametrize(
    "dtype, tolerance", [("float32", 1e-3), ("float16", 2e-2), ("bfloat16", 6e-2)]
)
def test_class_conditional_generation_on_the_gpu(dtype, tolerance):
    """models.sample on CUDA in each dtype: the same images as on the CPU in float32, to the
    dtype's precision (each image's noise is drawn on the CPU, so they are comparable)."""
    model = _digits_model()
    classes, seeds = np.array([0, 1, 2, 0, 1, 2, 0, 1]), np.arange(8) + 100
    reference = models.sample(model, classes, seeds, 2.0, 10, CPU, torch.float32, 8)
    device_dtype = models.resolve_dtype(dtype, CUDA)
    got = models.sample(model, classes, seeds, 2.0, 10, CUDA, device_dtype, 8)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert next(model.unet.parameters()).dtype == device_dtype
    assert np.abs(got - reference).mean() < tolerance, np.abs(got - reference).mean()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_text_to_image_generation_on_the_gpu(tmp_path, dtype):
    """A tiny Stable Diffusion pipeline loaded by t2i.load onto CUDA in half precision: finite
    images close to the CPU float32 ones."""
    from surrogateshap.models import t2i, tiny

    tiny.make_tiny_pipeline("sd", tmp_path / "pipe", resolution=32)
    spec = {"type": "stable_diffusion", "path": str(tmp_path / "pipe")}
    gen = {"steps": 4, "guidance_scale": 2.0, "batch_size": 4, "resolution": 32}
    classes, seeds = np.array([0, 1, 0, 1]), np.array([1, 2, 3, 4])
    out = {}
    for name, device, torch_dtype in (
        ("cpu", CPU, torch.float32),
        ("gpu", CUDA, models.resolve_dtype(dtype, CUDA)),
    ):
        model = t2i.load(spec, gen, device, torch_dtype)
        model.class_names = ["a red square", "a blue circle"]
        assert model.pipe.unet.dtype == torch_dtype and model.pipe.device.type == device.type
        out[name] = t2i.sample(model, classes, seeds, gen)
    assert np.isfinite(out["gpu"]).all()
    assert np.abs(out["gpu"] - out["cpu"]).mean() < 0.05


def test_training_on_the_gpu_matches_the_cpu():
    """The retraining game trains on generation.device: every random draw comes from CPU
    generators, so training on CUDA gives the CPU's model up to floating-point rounding."""
    cpu = _digits_model(steps=20, device=CPU)
    gpu = _digits_model(steps=20, device=CUDA)
    assert next(gpu.unet.parameters()).device.type == "cpu"  # returned on the CPU, to save
    diffs = [
        (a - b).abs().max().item() / (a.abs().max().item() + 1e-12)
        for a, b in zip(cpu.unet.state_dict().values(), gpu.unet.state_dict().values())
        if a.is_floating_point()
    ]
    assert max(diffs) < 1e-2, max(diffs)
    classes, seeds = np.array([0, 1, 2]), np.array([7, 8, 9])
    a = models.sample(cpu, classes, seeds, 2.0, 10, CPU, torch.float32, 3)
    b = models.sample(gpu, classes, seeds, 2.0, 10, CPU, torch.float32, 3)
    assert np.abs(a - b).mean() < 1e-2


@pytest.mark.parametrize("d", [64, 512])
def test_torch_frechet_backend_matches_numpy(d):
    """frechet_from_moments with torch float64 tensors on CUDA (what the pooled game runs when
    torch sees a GPU) against numpy, and the metric's evaluate (which picks the backend)."""
    rng = np.random.default_rng(d)
    n = 2 * d + 50
    reference = metric_base.Reference.from_features(
        rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    )
    feats = [rng.normal(size=(n, d)) * rng.uniform(0.5, 2, size=d) + 0.1 * c for c in range(3)]
    mean = np.stack([f.mean(0) for f in feats])
    second = np.stack([f.T @ f / n for f in feats])
    cpu = metrics.frechet_from_moments(mean, second, reference)
    _, to = metrics.linalg_backend()
    ref_gpu = metric_base.Reference(to(reference.mean), to(reference.cov), to(reference.cov_sqrt))
    gpu = metrics.frechet_from_moments(to(mean), to(second), ref_gpu, torch)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=1e-9)
    # the metric's pooled evaluation, on the GPU by itself
    samples = metric_base.Samples(
        np.repeat(np.arange(3), n), np.concatenate(feats), np.full((3 * n, 2), 0.5), np.zeros(3 * n)
    )
    metric = metrics.get_metric("frechet_distance")
    weights = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
    pooled = metric.evaluate(metric.group_stats(samples, reference), weights, reference)
    mixture_mean = weights @ mean
    mixture_second = np.einsum("cg,gij->cij", weights, second)
    np.testing.assert_allclose(
        pooled, metrics.frechet_from_moments(mixture_mean, mixture_second, reference), rtol=1e-9
    )


@pytest.fixture
def no_tf32():
    """Full float32 convolutions and matrix products on the GPU during a test, then the settings
    as they were. By default cuDNN runs float32 convolutions in TF32 (a 10-bit mantissa): on an
    H200 that moved the LPIPS and Inception features by up to 7e-4 of their largest value, and
    with TF32 off by under 2e-6 (docs/gpu.md)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_lpips_and_inception_extractors_on_the_gpu(tmp_path, no_tf32):
    """The LPIPS embedder and the FID Inception extractor on CUDA (random weights) match the CPU,
    in full float32 (the tolerances are the CUDA path's, not TF32's rounding)."""
    from surrogateshap.proxy.inception import (
        InceptionExtractor,
        load_inception,
        write_random_inception,
    )
    from surrogateshap.proxy.lpips import LPIPSEmbedder, load_lpips

    from .conftest import write_random_backbone

    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    backbone = write_random_backbone(tmp_path / "alexnet.pth")
    cpu = LPIPSEmbedder(load_lpips(backbone), 64, "cpu")(images)
    gpu = LPIPSEmbedder(load_lpips(backbone), 64, "cuda")(images)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-5)
    weights = write_random_inception(tmp_path / "inception.safetensors")
    f_cpu, p_cpu = InceptionExtractor(load_inception(weights)).embed(images)
    f_gpu, p_gpu = InceptionExtractor(load_inception(weights, device="cuda")).embed(images)
    np.testing.assert_allclose(f_gpu, f_cpu, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-3, atol=1e-6)

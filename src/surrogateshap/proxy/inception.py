"""Inception-v3 as used for FID and the Inception Score, in plain torch (no torchvision).

This is the "FID Inception" network of TensorFlow's FID code and of pytorch-fid
(weights `pt_inception-2015-12-05-6726825d.pth`, converted from TensorFlow's
`inception-2015-12-05` graph), which differs from torchvision's ImageNet Inception-v3:

- average pools in the Mixed_5* (A), Mixed_6b-6e (C) and Mixed_7b (E) blocks ignore the
  zero padding (`count_include_pad=False`, TensorFlow's behaviour);
- the pool branch of Mixed_7c is a 3x3 *max* pool (stride 1, padding 1);
- the classifier has 1008 outputs (TensorFlow's 1001 ImageNet classes plus unused ones) and
  there is no auxiliary classifier.

Parameter and buffer names are torchvision's / pytorch-fid's (`Conv2d_1a_3x3.conv.weight`,
`Mixed_7c.branch_pool.bn.running_var`, `fc.weight`, ...), so that file loads with
`load_state_dict(strict=True)`. Nothing is downloaded: `load_inception` reads a local file.

Preprocessing follows pytorch-fid: images in [0, 1] are resized to 299x299 with bilinear
interpolation (align_corners=False, no antialiasing) and scaled to [-1, 1]; grayscale images
are repeated to three channels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..workflow.io import read_state_dict

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


# --------------------------------------------------------------------------- blocks
class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x):
    """3x3 average pool, stride 1, that does not count the zero padding (TensorFlow's 'SAME')."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block (Mixed_5b/5c/5d): 64 + 64 + 96 + pool_features output channels."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool_same(x)),
            ],
            1,
        )


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 384 + 96 + in_channels output channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-6e): 4 x 192 output channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool_same(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 320 + 192 + in_channels output channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for layer in (
            self.branch7x7x3_1,
            self.branch7x7x3_2,
            self.branch7x7x3_3,
            self.branch7x7x3_4,
        ):
            b7 = layer(b7)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1
        )


class FIDInceptionE(nn.Module):
    """8x8 block with expanded filter banks (Mixed_7b: average pool without padding counted;
    Mixed_7c: max pool, as in TensorFlow's graph): 320 + 768 + 768 + 192 = 2048 output channels."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = (
            F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            if self.max_pool
            else _avg_pool_same(x)
        )
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d3),
                self.branch3x3dbl_3b(d3),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: `forward(x)` takes preprocessed (n, 3, 299, 299) input in [-1, 1]
    and returns (pool3 features (n, 2048), logits (n, 1008))."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def pool3(self, x):
        """(n, 3, 299, 299) in [-1, 1] -> the 2048-d global-average-pooled features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 64 x 73 x 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 192 x 35 x 35
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,  # 288 x 35 x 35
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,  # 768 x 17 x 17
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):  # 2048 x 8 x 8
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, x):
        features = self.pool3(x)
        return features, self.fc(features)


# --------------------------------------------------------------------------- weights
def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(
            f"Inception weights not found: {path} (a local .pth/.pt or .safetensors file, e.g. "
            "pytorch-fid's pt_inception-2015-12-05-6726825d.pth; nothing is downloaded)"
        )
    return read_state_dict(path, "Inception weights")


def _check_keys(state: dict, model: nn.Module, path: Path) -> dict:
    """`state` with missing BatchNorm `num_batches_tracked` counters filled in (files converted
    before torch 0.4.1 lack them; they do not affect inference); ValueError on any other mismatch."""
    expected = model.state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:5])})")
    if not problems:
        wrong = [
            f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
            for k, v in expected.items()
            if tuple(state[k].shape) != tuple(v.shape)
        ]
        if wrong:
            problems.append(
                f"{len(wrong)} tensors of the wrong shape (first: {', '.join(wrong[:5])})"
            )
    if problems:
        raise ValueError(
            f"{path}: not the FID Inception-v3 state dict (pytorch-fid's pt_inception-2015-12-05 "
            f"layout): " + "; ".join(problems)
        )
    return state


def load_inception(path, device="cpu", dtype=torch.float32) -> FIDInceptionV3:
    """The FID Inception-v3 with weights from a local `.pth`/`.pt` (read with `weights_only=True`)
    or `.safetensors` file, in eval mode, on `device` in `dtype`, without gradients.

    A missing or unreadable file, or a state dict whose keys or shapes differ from the network's,
    raises ValueError naming the file and the first offending keys."""
    path = Path(path)
    model = FIDInceptionV3()
    state = _check_keys(_read_state_dict(path), model, path)
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=dtype).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict, deterministic in `seed`: He-normal convolutions,
    identity BatchNorm (weight 1, bias 0, running mean 0, running variance 1), so activations
    keep an O(1) scale through the 94 convolutions, and a small random classifier."""
    generator = torch.Generator().manual_seed(int(seed))
    model = FIDInceptionV3()
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key == "fc.weight":
            value = torch.randn(value.shape, generator=generator) * (1.0 / value.shape[1]) ** 0.5
        elif key == "fc.bias":
            value = torch.randn(value.shape, generator=generator) * 0.1
        elif key.endswith(("bn.weight", "bn.running_var")):
            value = torch.ones_like(value)
        elif key.endswith(("bn.bias", "bn.running_mean", "num_batches_tracked")):
            value = torch.zeros_like(value)
        else:  # pragma: no cover - every key of the network is handled above
            raise AssertionError(key)
        state[key] = value.contiguous()
    return state


def write_random_inception(path, seed: int = 0) -> Path:
    """Save `random_inception_state(seed)` as .safetensors (for tests and dry runs: the
    features are those of a random network, not FID's)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_inception_state(seed), str(path))
    return path


# --------------------------------------------------------------------------- extractor
def preprocess(images: np.ndarray, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """pytorch-fid's preprocessing: (n, H, W) or (n, H, W, 1|3) float images in [0, 1] ->
    (n, 3, 299, 299) in [-1, 1] (grayscale repeated to RGB, bilinear resize, align_corners=False)."""
    x = torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be (n, H, W) or (n, H, W, 3); got shape {tuple(images.shape)}"
        )
    x = x.permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


class InceptionExtractor:
    """FID Inception features and Inception-Score class probabilities of images.

    `embed(images)` returns the 2048-d pool3 features (float64; the features of FID, so the
    project's `frechet_distance` becomes FID) and the softmax over the network's 1008 logits
    (so `inception_score_like` becomes the Inception Score). As in the original Inception
    Score code (OpenAI's improved-GAN `inception_score.py`, which multiplies pool3 by the
    softmax layer's weight matrix only) and torch-fidelity (its default `logits_unbiased`
    feature), the logits omit the classifier's bias by default; `logits_bias=True` adds it
    (the network's full `fc` output). The 1008-way softmax, 7 unused classes included, is what
    IS conventionally uses with this network.
    """

    def __init__(self, model: FIDInceptionV3, batch_size: int = 50, logits_bias: bool = False):
        self.model = model.eval()
        self.batch_size = int(batch_size)
        self.size = INPUT_SIZE  # the network's input size (images of any size are resized to it)
        self.logits_bias = logits_bias

    def embed(self, images: np.ndarray, prompts=None) -> tuple[np.ndarray, np.ndarray]:
        weight = next(self.model.parameters())
        features, probs = [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = preprocess(images[start : start + self.batch_size], weight.dtype, weight.device)
                pool3 = self.model.pool3(x)
                logits = pool3 @ self.model.fc.weight.T
                if self.logits_bias:
                    logits = logits + self.model.fc.bias
                features.append(pool3.double().cpu().numpy())
                probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
        if not features:
            return np.zeros((0, FEATURE_DIM)), np.zeros((0, NUM_CLASSES))
        return np.concatenate(features), np.concatenate(probs)


@lru_cache(maxsize=2)
def cached_extractor(path: str, device: str = "cpu") -> InceptionExtractor:
    """One `InceptionExtractor` per (weights file, device) and process (the loading is not repeated)."""
    return InceptionExtractor(load_inception(path, device=device))

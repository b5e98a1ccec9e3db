"""LPIPS (Zhang et al., 2018; the `lpips` package's v0.1 AlexNet variant) in plain torch.

LPIPS(a, b) = sum over AlexNet's five ReLU outputs l of the spatial mean of
sum_c w_lc (f_a - f_b)^2, where f are the activations normalised to unit length along
the channels and w_l >= 0 the learned linear weights. Because the weights are
non-negative, LPIPS(a, b) = ||e_a - e_b||^2 exactly for the embedding
e = concat_l sqrt(w_l / (H_l W_l)) * f_l: so the mean LPIPS between the images of two
groups needs only each group's sum of embeddings and of squared norms, and the
`lpips_diversity` metric decomposes over pooled samples exactly, as `diversity` does.

Weights, from local files only (nothing is downloaded):
- `features.lpips.backbone`: torchvision's ImageNet AlexNet state dict
  (`alexnet-owt-7be5be79.pth`, what `torchvision.models.alexnet(pretrained=True)` caches
  under ~/.cache/torch/hub/checkpoints); its `features.*` tensors load strictly.
- `features.lpips.linear`: the `lpips` package's `weights/v0.1/alex.pth` (keys
  `lin{0..4}.model.1.weight`); by default the file inside the installed `lpips` wheel
  (installed without dependencies by `make`: only that file is read).

Preprocessing: images in [0, 1] are resized to `size` (bilinear, antialiased), grayscale is
repeated to three channels, scaled to [-1, 1] and shifted/scaled by LPIPS's ScalingLayer.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..workflow.io import read_state_dict

TAPS = (1, 4, 7, 9, 11)  # LPIPS reads the ReLU after each of AlexNet's five convolutions
CHANNELS = (64, 192, 384, 256, 256)  # their widths
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor
LINEAR_FILE = "weights/v0.1/alex.pth"


class LPIPSAlex(nn.Module):
    def __init__(self):
        super().__init__()
        # torchvision's AlexNet `features` up to the last ReLU, at its indices, so its state dict loads
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        )
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in CHANNELS])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised ReLU outputs for images in [-1, 1], (n, 3, H, W)."""
        h = (x - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in TAPS:
                out.append(h / (torch.sqrt((h * h).sum(1, keepdim=True)) + EPS))
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, D) with LPIPS(a, b) = ||e_a - e_b||^2."""
        parts = []
        for f, w in zip(self.activations(x), self.lins):
            weight = torch.sqrt(w.clamp(min=0) / (f.shape[2] * f.shape[3])).view(1, -1, 1, 1)
            parts.append((f * weight).flatten(1))
        return torch.cat(parts, 1)

    def distance(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """LPIPS of image pairs, layer by layer as the `lpips` package computes it."""
        total = 0
        for f0, f1, w in zip(self.activations(x0), self.activations(x1), self.lins):
            total = total + ((f0 - f1) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
        return total


def default_linear_file() -> Path | None:
    """The v0.1 AlexNet linear weights inside an installed `lpips` package (found, not imported:
    importing it needs torchvision)."""
    spec = importlib.util.find_spec("lpips")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / LINEAR_FILE
        if path.is_file():
            return path
    return None


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    return read_state_dict(path, "LPIPS weights")


def load_lpips(backbone, linear=None) -> LPIPSAlex:
    """The network with torchvision AlexNet `features.*` weights and LPIPS's linear weights, strictly:
    a missing, extra or misshapen tensor is an error naming the file."""
    linear = linear or default_linear_file()
    if linear is None:
        raise FileNotFoundError(
            "features.lpips.linear is not set and no installed `lpips` package provides "
            f"{LINEAR_FILE} (pip install --no-deps lpips==0.1.4, or give the file)"
        )
    model = LPIPSAlex()
    backbone_state = {
        k[len("features.") :]: v for k, v in _read(backbone).items() if k.startswith("features.")
    }
    expected = model.features.state_dict()
    problems = [f"missing features.{k}" for k in expected if k not in backbone_state]
    problems += [f"unexpected features.{k}" for k in backbone_state if k not in expected]
    problems += [
        f"features.{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in backbone_state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        raise ValueError(
            f"features.lpips.backbone {str(backbone)!r} is not a torchvision AlexNet state dict: "
            + "; ".join(problems)
        )
    model.features.load_state_dict(backbone_state, strict=True)
    lin_state = _read(linear)
    expected = [f"lin{i}.model.1.weight" for i in range(len(CHANNELS))]
    if sorted(lin_state) != expected:
        raise ValueError(
            f"features.lpips.linear {str(linear)!r}: expected the keys {expected}, found {sorted(lin_state)}"
        )
    for lin, key in zip(model.lins, expected):
        if lin_state[key].numel() != lin.numel():
            raise ValueError(
                f"features.lpips.linear {str(linear)!r}: {key} has shape {tuple(lin_state[key].shape)}"
            )
        if (
            lin_state[key] < 0
        ).any():  # the embedding identity needs them; LPIPS trains them clamped at 0
            raise ValueError(f"features.lpips.linear {str(linear)!r}: {key} has negative weights")
        lin.data.copy_(lin_state[key].reshape(-1))
    return model.eval()


class LPIPSEmbedder:
    """Images in [0, 1], (n, H, W[, 3]) -> LPIPS embeddings (n, D), float32, in batches."""

    def __init__(self, model: LPIPSAlex, size: int, device: str = "cpu", batch_size: int = 64):
        self.model = model.to(device)
        self.size, self.device, self.batch_size = int(size), torch.device(device), batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        from .extractors import resize, to_rgb

        out = []
        for start in range(0, len(images), self.batch_size):
            rgb = to_rgb(resize(images[start : start + self.batch_size], self.size))
            x = (
                torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))
                .float()
                .to(self.device)
                * 2
                - 1
            )
            out.append(self.model.embed(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@lru_cache(maxsize=2)
def cached_embedder(backbone: str, linear: str | None, size: int, device: str) -> LPIPSEmbedder:
    return LPIPSEmbedder(load_lpips(backbone, linear), size, device)

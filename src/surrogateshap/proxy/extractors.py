"""Feature extractors and per-sample scorers of generated images, chosen by config.

`features.extractor` picks the feature space of the distribution metrics (Fréchet
distance, Inception-Score-like, diversity, Vendi, attribute bias):
- `digits` (default): the digits classifier trained by the workflow (images are turned to
  grayscale and resized to its input size);
- `trained`: a classifier of the same kind trained by the workflow on the dataset itself (its
  labels, else its contributors: `models.dataset_targets`), in the colour the model sees
  (data.color); the Fréchet reference is then the dataset's own images;
- `backbone`: a transformers vision backbone from a local folder (`features.backbone`: DINOv2,
  ViT, CLIP vision, SigLIP vision), its pooled output as features (no class probabilities);
- `clip`: a local CLIP model folder (`features.clip`, transformers' CLIPModel format):
  features are its projected image embeddings; class probabilities are zero-shot
  probabilities over `features.attributes` prompts (the joint over all attributes);
- `inception`: the FID Inception-v3 (`features.inception`, a local .pth/.safetensors file such as
  pytorch-fid's pt_inception-2015-12-05-6726825d.pth; see `inception.py`): features are the
  2048-d pool3 features and class probabilities the 1008-way softmax, so the Fréchet distance
  is FID and the Inception-Score-like metric is the Inception Score.

Per-sample scores (each decomposes over pooled samples as a mean):
- `clip_score`: 100 * max(cos(image, prompt), 0) with the CLIP model (torchmetrics' definition);
- `aesthetic`: LAION-style linear head (`features.aesthetic`: .safetensors or .pth with
  `weight` (1, d) and `bias` (1,)) on L2-normalised CLIP image embeddings;
- `reward`: a CLIP-architecture preference model (`features.reward`, e.g. PickScore):
  logit_scale * cos(image, prompt);
- `spurious`: a user-supplied detector (`features.spurious_detector`, "module:function");
- custom metrics (`features.custom_metrics`): "module:function" or "path/file.py:function".

A user function is called as fn(images, prompts) with images float32 in [0, 1], shape
(n, H, W) or (n, H, W, 3), and prompts a list of n strings ("" for the unconditional pool);
it returns n numbers.

Nothing is downloaded: every model is read from a local path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..workflow.io import read_state_dict
from .score_metrics import PROMPT_GROUP
from .usercode import load_callable

# OpenAI CLIP's preprocessing constants (used when the folder has no preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_gray(images: np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, H, W, 3) -> (n, H, W), ITU-R 601 luma like PIL's convert('L')."""
    if images.ndim == 4:
        return images @ np.array([0.299, 0.587, 0.114], dtype=images.dtype)
    return images


def sharpness(images: np.ndarray) -> np.ndarray:
    """(n,) high-frequency energy of each image: the mean squared 4-neighbour Laplacian of its
    grey version (interior pixels; 0 for an image under 3 pixels a side). Blur lowers it; noise
    and fine texture raise it."""
    gray = to_gray(np.asarray(images, dtype=np.float64))
    if gray.shape[1] < 3 or gray.shape[2] < 3:
        return np.zeros(len(gray))
    laplacian = (
        4 * gray[:, 1:-1, 1:-1]
        - gray[:, :-2, 1:-1]
        - gray[:, 2:, 1:-1]
        - gray[:, 1:-1, :-2]
        - gray[:, 1:-1, 2:]
    )
    return (laplacian**2).mean(axis=(1, 2))


def to_rgb(images: np.ndarray) -> np.ndarray:
    return images if images.ndim == 4 else np.repeat(images[..., None], 3, axis=-1)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of (n, H, W[, C]) float images."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    x = x.squeeze(1) if images.ndim == 3 else x.permute(0, 2, 3, 1)
    return x.numpy()


# --------------------------------------------------------------------------- extractors
class DigitsExtractor:
    """A classifier of the workflow (the digits one, or the one trained on the dataset by
    features.extractor: trained), fed images at its input size, grayscale or (a classifier
    trained on colour images) RGB."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.size = classifier.config["image_size"]
        self.rgb = classifier.config.get("channels", 1) == 3

    def embed(self, images: np.ndarray, prompts=None) -> tuple[np.ndarray, np.ndarray]:
        size = self.classifier.config["image_size"]
        return self.classifier.embed(resize(to_rgb(images) if self.rgb else to_gray(images), size))


class ClipModel:
    """A local CLIP model (transformers CLIPModel folder) with its tokenizer and preprocessing."""

    def __init__(self, path: str, batch_size: int = 64):
        from transformers import AutoTokenizer, CLIPModel

        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"CLIP model folder not found: {path} (a local CLIPModel folder; nothing is downloaded)"
            )
        try:
            self.model = CLIPModel.from_pretrained(path).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as error:  # e.g. a .bin that the weights-only unpickler refuses: name it
            raise ValueError(f"CLIP model folder {path}: cannot load it: {error}") from None
        self.size = self.model.config.vision_config.image_size
        mean, std = CLIP_MEAN, CLIP_STD
        processor = Path(path) / "preprocessor_config.json"
        if processor.exists():
            cfg = json.loads(processor.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.batch_size = batch_size

    @torch.no_grad()
    def image_embeddings(self, images: np.ndarray) -> np.ndarray:
        """Projected image embeddings (n, d), not normalised."""
        out = []
        for start in range(0, len(images), self.batch_size):
            rgb = to_rgb(resize(images[start : start + self.batch_size], self.size))
            x = (
                torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(0, 3, 1, 2)
                - self.mean
            ) / self.std
            out.append(_tensor(self.model.get_image_features(pixel_values=x)))
        return (
            np.concatenate(out).astype(np.float64)
            if out
            else np.zeros((0, self.model.config.projection_dim))
        )

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """Projected text embeddings (n, d); texts longer than the tokenizer's limit are truncated."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            out.append(_tensor(self.model.get_text_features(**tokens)))
        return (
            np.concatenate(out).astype(np.float64)
            if out
            else np.zeros((0, self.model.config.projection_dim))
        )

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def _tensor(output) -> np.ndarray:
    """get_*_features returns a tensor (or, in some versions, an output with pooler_output)."""
    if not isinstance(output, torch.Tensor):
        output = output.pooler_output
    return output.float().numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (n, d) and (n, d)."""
    return (_unit(a) * _unit(b)).sum(1)


@lru_cache(maxsize=4)
def load_clip(path: str) -> ClipModel:
    return ClipModel(path)


class ClipExtractor:
    """CLIP image embeddings as features; zero-shot attribute probabilities as class probabilities."""

    def __init__(self, clip: ClipModel, attributes: dict[str, list[str]] | None):
        self.clip = clip
        self.size = clip.size  # the network's input side
        self.attributes = attributes or {}

    def embed(self, images: np.ndarray, prompts=None) -> tuple[np.ndarray, np.ndarray]:
        features = self.clip.image_embeddings(images)
        return features, self.attribute_probs(features)

    def attribute_probs(self, image_features: np.ndarray) -> np.ndarray:
        """Joint zero-shot distribution over all attributes (outer product per sample), (n, prod K)."""
        joint = np.ones((len(image_features), 1))
        image = _unit(image_features)
        for values in self.attributes.values():
            text = _unit(self.clip.text_embeddings(values))
            logits = self.clip.logit_scale() * image @ text.T
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            joint = np.einsum("na,nb->nab", joint, p).reshape(len(image), -1)
        return joint


# transformers vision backbones by model_type: which config part and model class hold the vision tower
BACKBONES = ("dinov2", "vit", "clip", "clip_vision_model", "siglip", "siglip_vision_model")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BackboneExtractor:
    """A transformers vision backbone from a local folder (DINOv2, ViT, CLIP vision, SigLIP vision;
    a full CLIP / SigLIP folder gives its vision tower): features are its pooled output (DINOv2
    and ViT: the final [CLS] token; CLIP / SigLIP: the pooled, layer-normed embedding). It gives
    no class probabilities: metrics that need them are refused when the config is read."""

    def __init__(self, path: str, batch_size: int = 64):
        from transformers import AutoConfig, AutoModel

        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"features.backbone: model folder not found: {path} (a local transformers folder; "
                "nothing is downloaded)"
            )
        config = AutoConfig.from_pretrained(path)
        if config.model_type not in BACKBONES:
            raise ValueError(
                f"features.backbone {path}: model_type {config.model_type!r} is not a supported "
                f"vision backbone ({', '.join(BACKBONES)})"
            )
        model = AutoModel.from_pretrained(path).eval()
        if config.model_type in ("clip", "siglip"):  # a full image-text model: its vision tower
            model, config = model.vision_model, config.vision_config
        self.model = model
        self.size = int(config.image_size)
        self.kind = config.model_type
        mean, std = (CLIP_MEAN, CLIP_STD) if "clip" in self.kind else (IMAGENET_MEAN, IMAGENET_STD)
        if "siglip" in self.kind:
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        processor = Path(path) / "preprocessor_config.json"
        if processor.exists():
            cfg = json.loads(processor.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, images: np.ndarray, prompts=None) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for start in range(0, len(images), self.batch_size):
            rgb = to_rgb(resize(images[start : start + self.batch_size], self.size))
            x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(0, 3, 1, 2)
            output = self.model(pixel_values=(x - self.mean) / self.std)
            pooled = getattr(output, "pooler_output", None)
            out.append((pooled if pooled is not None else output.last_hidden_state[:, 0]).numpy())
        features = np.concatenate(out).astype(np.float64) if out else np.zeros((0, 1))
        return features, np.ones((len(features), 1))  # one class: no probabilities to offer


@lru_cache(maxsize=4)
def load_backbone(path: str) -> BackboneExtractor:
    return BackboneExtractor(path)


def load_feature_space(path: str):
    """The feature space of the similarity baselines: the workflow's classifier file (digits or
    trained), or a vision backbone folder (features.extractor: backbone)."""
    if Path(path).is_dir():
        return load_backbone(str(path))
    from ..models.class_conditional import load_classifier

    return DigitsExtractor(load_classifier(path))


def load_extractor(feat_cfg: dict, classifier_path: str | None, device: str | None = None):
    """The configured extractor; `device` (inception only) defaults to CUDA when torch sees it."""
    kind = feat_cfg.get("extractor", "digits")
    if kind == "backbone":
        return load_backbone(str(feat_cfg["backbone"]))
    if kind == "clip":
        return ClipExtractor(load_clip(feat_cfg["clip"]), feat_cfg.get("attributes"))
    if kind == "inception":
        if not feat_cfg.get("inception"):
            raise ValueError(
                "features.extractor is 'inception' but features.inception (a local Inception-v3 "
                "weights file) is not set"
            )
        from ..models.class_conditional import resolve_device
        from .inception import cached_extractor

        return cached_extractor(str(feat_cfg["inception"]), str(device or resolve_device("auto")))
    from ..models.class_conditional import load_classifier

    return DigitsExtractor(load_classifier(classifier_path))


# --------------------------------------------------------------------------- per-sample scores
def load_linear_head(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A LAION-style aesthetic head: `weight` (1, d) and `bias` (1,) from .safetensors or .pth."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"aesthetic head not found: {path}")
    state = read_state_dict(path, "the aesthetic head")
    missing = [k for k in ("weight", "bias") if k not in state]
    if missing:
        raise ValueError(
            f"{path}: aesthetic head needs tensors 'weight' and 'bias'; missing {missing} (has {sorted(state)})"
        )
    return state["weight"].float().numpy().reshape(1, -1), state["bias"].float().numpy().reshape(-1)


def _user_values(fn, spec: str, images: np.ndarray, prompts: list[str]) -> np.ndarray:
    values = np.asarray(fn(images, prompts), dtype=np.float64).reshape(-1)
    if len(values) != len(images):
        raise ValueError(f"{spec!r} returned {len(values)} values for {len(images)} images")
    return values


def prompt_groups(prompts: list[str], groups: dict[str, str]) -> np.ndarray:
    """Index of the first group whose regular expression matches each prompt (case-insensitive
    search), len(groups) for a prompt that none matches (the unconditional pool's "" included)."""
    import re

    patterns = [re.compile(pattern, re.IGNORECASE) for pattern in groups.values()]
    return np.array(
        [
            next((i for i, p in enumerate(patterns) if p.search(prompt)), len(patterns))
            for prompt in prompts
        ],
        dtype=np.float64,
    )


def score_samples(
    images: np.ndarray, prompts: list[str], feat_cfg: dict, needed: set[str]
) -> dict[str, np.ndarray]:
    """The per-sample scores that the configured metrics need: name -> (n,) values."""
    scores: dict[str, np.ndarray] = {}
    if "sharpness" in needed:
        scores["sharpness"] = sharpness(images)
    if needed & {"clip_score", "aesthetic"}:
        clip = load_clip(feat_cfg["clip"])
        image = clip.image_embeddings(images)
        if "clip_score" in needed:
            text = clip.text_embeddings(prompts)
            scores["clip_score"] = 100.0 * np.clip(cosine(image, text), 0.0, None)
        if "aesthetic" in needed:
            weight, bias = load_linear_head(feat_cfg["aesthetic"])
            if weight.shape[1] != image.shape[1]:
                raise ValueError(
                    f"{feat_cfg['aesthetic']}: head expects {weight.shape[1]}-d embeddings, "
                    f"the CLIP model {feat_cfg['clip']} gives {image.shape[1]}-d"
                )
            scores["aesthetic"] = _unit(image) @ weight[0] + bias[0]
    if "reward" in needed:
        reward = load_clip(feat_cfg["reward"])
        scores["reward"] = reward.logit_scale() * cosine(
            reward.image_embeddings(images), reward.text_embeddings(prompts)
        )
    if "spurious" in needed:
        spec = feat_cfg["spurious_detector"]
        scores["spurious"] = (
            _user_values(load_callable(spec), spec, images, prompts) > 0.5
        ).astype(np.float64)
    if PROMPT_GROUP in needed:
        scores[PROMPT_GROUP] = prompt_groups(prompts, feat_cfg["prompt_groups"])
    for name, custom in (feat_cfg.get("custom_metrics") or {}).items():
        if name in needed:
            scores[name] = _user_values(
                load_callable(custom["function"]), custom["function"], images, prompts
            )
    return scores

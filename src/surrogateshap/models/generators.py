"""The image generators of the proxy game behind one interface, chosen once when loaded.

A generator maps (class, seed) pairs to images: a class-conditional UNet (our own model,
grayscale or RGB, classes are contributors or labels) or a text-to-image pipeline (RGB, classes are
captions, see t2i.py). The steps ask it for the dataset's conditioning, for images, and for
what to record beside them; they never ask which kind it is.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

import numpy as np
import pandas as pd

from ..proxy.game import Conditioning, build_conditioning
from . import class_conditional as models
from . import t2i

log = logging.getLogger(__name__)


class Generator(Protocol):
    image_shape: tuple[int, ...]  # one image: (size, size) or (size, size, 3)

    @property
    def null_class(self) -> int: ...

    def conditioning(self, items: pd.DataFrame, contributors: list[str]) -> Conditioning:
        """Each contributor's items as the generator's classes (fixes the classes it knows)."""

    def generate(self, classes: np.ndarray, seeds: np.ndarray, empty_coalition: str) -> np.ndarray:
        """One image per (class, seed); only the null class means the empty coalition, which
        `game.empty_coalition: noise` turns into the sampler's starting noise."""

    def prompts(self, classes: np.ndarray) -> list[str] | None:
        """The prompt of each class (None for a class-conditional model)."""

    def metadata(self) -> dict:
        """What to keep beside the images it generated."""


class ClassConditional:
    """Our class-conditional UNet (models.DiffusionModel): DDIM with classifier-free guidance."""

    def __init__(self, model: models.DiffusionModel, gen_cfg: dict):
        self.model, self.gen_cfg = model, gen_cfg
        self.device = models.resolve_device(gen_cfg["device"])
        self.dtype = models.resolve_dtype(gen_cfg["dtype"], self.device)
        self.image_shape = (model.image_size, model.image_size) + (
            (3,) if model.channels == 3 else ()
        )

    @property
    def null_class(self) -> int:
        return self.model.null_class

    def conditioning(self, items: pd.DataFrame, contributors: list[str]) -> Conditioning:
        return build_conditioning(
            items, contributors, self.model.class_names, self.model.conditioning
        )

    def generate(self, classes: np.ndarray, seeds: np.ndarray, empty_coalition: str) -> np.ndarray:
        if _is_empty(classes, self.null_class, empty_coalition):
            return models.untrained_output(seeds, self.model.image_size, self.model.channels)
        cfg = self.gen_cfg
        return models.sample(
            self.model,
            classes,
            seeds,
            cfg["guidance_scale"],
            cfg["steps"],
            self.device,
            self.dtype,
            cfg["batch_size"],
        )

    def prompts(self, classes: np.ndarray) -> None:
        return None

    def metadata(self) -> dict:
        return {"truncated_captions": 0}


class TextToImage:
    """A text-to-image pipeline (t2i.TextToImageModel): every distinct caption is a class."""

    def __init__(self, model: t2i.TextToImageModel, gen_cfg: dict):
        self.model, self.gen_cfg = model, gen_cfg
        self.image_shape = (model.image_size, model.image_size, 3)

    @property
    def null_class(self) -> int:
        return self.model.null_class

    def conditioning(self, items: pd.DataFrame, contributors: list[str]) -> Conditioning:
        return t2i.caption_conditioning(items, contributors, self.model)

    def generate(self, classes: np.ndarray, seeds: np.ndarray, empty_coalition: str) -> np.ndarray:
        if _is_empty(classes, self.null_class, empty_coalition):
            return t2i.noise_images(seeds, self.model.image_size)
        return t2i.sample(self.model, classes, seeds, self.gen_cfg)

    def prompts(self, classes: np.ndarray) -> list[str]:
        return [self.model.prompt(int(c)) for c in classes]

    def metadata(self) -> dict:
        return {"truncated_captions": self.model.truncated}


def _is_empty(classes: np.ndarray, null_class: int, empty_coalition: str) -> bool:
    return empty_coalition == "noise" and len(classes) and np.all(classes == null_class)


def load_generator(spec: str | dict, gen_cfg: dict) -> Generator:
    """The generator that `spec` names: a text-to-image pipeline spec (a dict from config, with
    `type`), or the class-conditional model's folder (a path, or a spec dict with `path`)."""
    device = models.resolve_device(gen_cfg["device"])
    # Which GPU the scheduler gave this job (SLURM sets CUDA_VISIBLE_DEVICES for --gpus), for the job's log.
    log.info(
        "generation device %s (generation.device: %s); CUDA_VISIBLE_DEVICES=%s",
        device,
        gen_cfg["device"],
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    )
    if t2i.is_text_to_image(spec):
        dtype = models.resolve_dtype(gen_cfg["dtype"], device)
        return TextToImage(t2i.load(spec, gen_cfg, device, dtype), gen_cfg)
    path, allow_download = (
        (spec["path"], bool(spec.get("allow_download")))
        if isinstance(spec, dict)
        else (spec, False)
    )
    return ClassConditional(models.load_diffusion(path, allow_download), gen_cfg)

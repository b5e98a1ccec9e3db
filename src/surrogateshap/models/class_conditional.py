"""The class-conditional diffusion model (diffusers UNet2DModel) and the digits classifier.

The diffusion model is conditioned on a class index (a contributor or a label) with
an extra null class for classifier-free guidance. A trained model is a folder that
`load_diffusion` reads by local path or hub id: `unet/` and `scheduler/` as diffusers
writes them, plus `conditioning.json` naming the classes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..workflow.io import atomic_dir, atomic_path, write_json

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- devices
def resolve_device(name: str, setting: str = "generation.device") -> torch.device:
    """auto: CUDA when torch sees a GPU, else the CPU; cuda[:i] refused where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{setting} is {name!r} but torch sees no CUDA device")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp16/bf16 only on a GPU; on the CPU they are slower and less exact, so use fp32."""
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    if device.type == "cpu" and dtype != torch.float32:
        log.warning("dtype %s requested on the CPU; using float32", name)
        return torch.float32
    return dtype


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- diffusion model
@dataclass
class DiffusionModel:
    unet: torch.nn.Module
    scheduler_config: dict
    class_names: list[str]  # class index -> name; the null class is len(class_names)
    conditioning: str  # "contributor" or "label"
    image_size: int

    @property
    def null_class(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB), as the UNet was built."""
        return int(self.unet.config.in_channels)


def build_unet(n_classes: int, image_size: int, block_out_channels: list[int], channels: int = 1):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * len(block_out_channels),
        up_block_types=("UpBlock2D",) * len(block_out_channels),
        norm_num_groups=8,
        add_attention=False,  # 8x8 digits need no attention; it triples training time
        num_class_embeds=n_classes + 1,  # + the null class for classifier-free guidance
    )


def autocast_dtype(mixed_precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training: none on the CPU; on a GPU bf16 unless set (`fp32`, `fp16`,
    `bf16`; bf16 needs no loss scaling), fp16 where the GPU lacks bf16."""
    if device.type != "cuda" or mixed_precision == "fp32":
        return None
    if mixed_precision == "fp16" or not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def train_diffusion(
    images: np.ndarray,
    classes: np.ndarray,
    class_names: list[str],
    conditioning: str,
    cfg: dict,
    seed: int,
    progress=None,
    device: torch.device | None = None,
    init: torch.nn.Module | None = None,
    on_batch=None,
    checkpoint: str | Path | None = None,
) -> DiffusionModel:
    """Train the UNet on `images` (n, H, W) grayscale or (n, H, W, 3) RGB in [0, 1], with label dropout (to the null class) and an EMA copy, on `device` (CPU by default).

    Every random draw (batches, dropout, noise, timesteps) comes from CPU generators, so a
    run does not depend on the device beyond floating-point rounding. `init`: a UNet to start
    from (fine-tuning; copied, not changed) instead of a fresh one; `on_batch(indices)`: called
    with each batch's row indices into `images` (what the model was trained on).

    `checkpoint`: a file where the whole training state (weights, EMA, optimiser, schedule, every
    generator's state) is saved every `cfg["checkpoint_every"]` steps (steps / 10 when unset);
    when it exists, training
    resumes from it and ends with the same weights as a run that was never interrupted. On a GPU,
    the forward pass runs under autocast (`cfg["mixed_precision"]`, see `autocast_dtype`)."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    image_size = images.shape[1]
    channels = 3 if images.ndim == 4 else 1
    device = device or torch.device("cpu")
    if init is None:
        unet = build_unet(len(class_names), image_size, cfg["block_out_channels"], channels).to(
            device
        )
    else:
        unet = copy.deepcopy(init).train().requires_grad_(True).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg["train_timesteps"], beta_schedule="squaredcos_cap_v2"
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=0.0)
    steps = cfg["steps"]
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    amp = autocast_dtype(cfg.get("mixed_precision"), device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    x_all = to_channels_first(torch.from_numpy(images.astype(np.float32) * 2 - 1)).to(device)
    y_all = torch.from_numpy(classes.astype(np.int64)).to(device)
    null = len(class_names)
    gen = torch.Generator().manual_seed(seed)
    state = TrainingState(unet, ema, optimizer, lr_schedule, scaler, rng, gen)
    first = state.restore(checkpoint, device) if checkpoint else 0
    if first and progress is not None:
        progress(f"resumed from {checkpoint} at step {first}/{steps}")
    every = int(cfg.get("checkpoint_every") or max(1, steps // 10))
    started = time.time()
    for step in range(first, steps):
        idx = torch.from_numpy(rng.integers(0, len(x_all), cfg["batch_size"]))
        if on_batch is not None:
            on_batch(idx.numpy())
        x0, y = x_all[idx.to(device)], y_all[idx.to(device)].clone()
        y[(torch.rand(len(y), generator=gen) < cfg["label_dropout"]).to(device)] = null
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=gen).to(
            device
        )
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred = unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        lr_schedule.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - cfg["ema_decay"])
        if checkpoint and every and (step + 1) % every == 0 and step + 1 < steps:
            state.save(checkpoint, step + 1)
        if progress is not None and (step % max(1, steps // 20) == 0 or step == steps - 1):
            progress(
                f"diffusion step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - started:.0f}s)"
            )
    return DiffusionModel(
        ema.eval().cpu(), dict(scheduler.config), list(class_names), conditioning, image_size
    )


@dataclass
class TrainingState:
    """Everything a training run's next step depends on, saved and restored as one file."""

    unet: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    rng: np.random.Generator | None  # a run that draws from numpy too
    gen: torch.Generator
    extra: dict[str, torch.nn.Module] = field(default_factory=dict)  # more trained modules

    def save(self, path, step: int) -> None:
        """Atomically (a kill while saving keeps the previous checkpoint). torch.save of tensors,
        numbers and strings only: it is read back with weights_only=True."""
        state = {
            "step": step,
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            # numpy's state holds 128-bit integers: kept as JSON text
            "rng": json.dumps(self.rng.bit_generator.state) if self.rng is not None else "",
            "gen": self.gen.get_state(),
            "extra": {name: module.state_dict() for name, module in self.extra.items()},
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def restore(self, path, device: torch.device) -> int:
        """The step to go on from: 0 without a checkpoint file."""
        path = Path(path)
        if not path.is_file():
            return 0
        state = torch.load(path, map_location=device, weights_only=True)
        self.unet.load_state_dict(state["unet"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.scaler.load_state_dict(state["scaler"])
        if self.rng is not None:
            self.rng.bit_generator.state = json.loads(state["rng"])
        self.gen.set_state(state["gen"].cpu())
        for name, module in self.extra.items():
            module.load_state_dict(state["extra"][name])
        return int(state["step"])


def save_diffusion(model: DiffusionModel, out_dir) -> None:
    """Write the model folder atomically: build it beside the target, then rename."""
    from diffusers import DDPMScheduler

    with atomic_dir(out_dir) as tmp:
        model.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        DDPMScheduler.from_config(model.scheduler_config).save_pretrained(tmp / "scheduler")
        write_json(
            tmp / "conditioning.json",
            {
                "class_names": model.class_names,
                "conditioning": model.conditioning,
                "image_size": model.image_size,
            },
        )


def load_diffusion(path: str, allow_download: bool = False) -> DiffusionModel:
    """Load a model folder by local path or hub id (real diffusers loading code). A hub id is read
    from the local Hugging Face cache unless `allow_download` (model.allow_download)."""
    from diffusers import DDPMScheduler, UNet2DModel

    offline = not allow_download
    unet = UNet2DModel.from_pretrained(
        path, subfolder="unet", use_safetensors=True, local_files_only=offline
    ).eval()
    scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=offline)
    local = Path(path) / "conditioning.json"
    if local.exists():
        meta = json.loads(local.read_text())
    else:
        from huggingface_hub import hf_hub_download

        meta = json.loads(
            Path(hf_hub_download(path, "conditioning.json", local_files_only=offline)).read_text()
        )
    return DiffusionModel(
        unet, dict(scheduler.config), meta["class_names"], meta["conditioning"], meta["image_size"]
    )


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """Images (n, H, W) or (n, H, W, 3) -> the UNet's (n, C, H, W)."""
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def to_images(x: torch.Tensor) -> np.ndarray:
    """The UNet's (n, C, H, W) in [-1, 1] -> images in [0, 1]: (n, H, W) grey, (n, H, W, 3) RGB."""
    x = (x.clamp(-1, 1) + 1) / 2
    x = x.squeeze(1) if x.shape[1] == 1 else x.permute(0, 2, 3, 1)
    return x.cpu().numpy()


def starting_noise(noise_seeds: np.ndarray, size: int, channels: int = 1) -> torch.Tensor:
    """The sampler's starting point x_T, one CPU generator per image seed:
    (n, channels, size, size)."""
    return torch.stack(
        [
            torch.randn((channels, size, size), generator=torch.Generator().manual_seed(int(s)))
            for s in noise_seeds
        ]
    )


def untrained_output(noise_seeds: np.ndarray, size: int, channels: int = 1) -> np.ndarray:
    """What a model that learned nothing returns: its starting noise, as images in [0, 1]."""
    return to_images(starting_noise(noise_seeds, size, channels))


@torch.no_grad()
def sample(
    model: DiffusionModel,
    classes: np.ndarray,
    noise_seeds: np.ndarray,
    guidance: float,
    steps: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
) -> np.ndarray:
    """Generate one image per (class, seed) with classifier-free guidance and DDIM (eta = 0).

    Each image's starting noise comes from its own seed, drawn on the CPU, so the
    images do not depend on batch size, shard or device placement of other images.
    Returns float32 images in [0, 1], shape (n, size, size) or (n, size, size, 3) (RGB model).
    """
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(model.scheduler_config, steps_offset=1, clip_sample=True)
    scheduler.set_timesteps(steps)
    unet = model.unet.to(device=device, dtype=dtype)
    size, channels = model.image_size, model.channels
    out = np.empty((len(classes), size, size) + ((3,) if channels == 3 else ()), dtype=np.float32)
    null = model.null_class
    for start in range(0, len(classes), batch_size):
        stop = min(start + batch_size, len(classes))
        x = starting_noise(noise_seeds[start:stop], size, channels).to(
            device=device, dtype=torch.float32
        )
        cond = torch.as_tensor(classes[start:stop], device=device, dtype=torch.long)
        labels = torch.cat([cond, torch.full_like(cond, null)])
        for t in scheduler.timesteps:
            eps = unet(torch.cat([x, x]).to(dtype), t, class_labels=labels).sample.float()
            eps_cond, eps_uncond = eps.chunk(2)
            eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out[start:stop] = to_images(x)
    return out


# --------------------------------------------------------------------------- classifier
class DigitsClassifier(nn.Module):
    """A small MLP on 8x8 images (or a dataset's own, grey or RGB: `channels` 3 reads
    (n, H, W, 3)); its first hidden layer is the feature space of the metrics."""

    def __init__(
        self,
        image_size: int = 8,
        hidden: int = 128,
        features: int = 64,
        n_classes: int = 10,
        channels: int = 1,
    ):
        super().__init__()
        self.config = {
            "image_size": image_size,
            "hidden": hidden,
            "features": features,
            "n_classes": n_classes,
        }
        if channels != 1:  # grey classifiers keep the files they always had
            self.config["channels"] = channels
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(image_size * image_size * channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, n_classes)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def embed(self, images: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """First-hidden-layer features and class probabilities for float images in [0, 1].

        The metrics use the first hidden layer, not the penultimate one: the penultimate
        layer is trained to forget everything but the class, so noise and blur barely
        move it (measured: pure noise lay closer to the clean digits than any one class).
        """
        feats, probs = [], []
        first = self.body[:3]  # flatten, linear, relu
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(
                np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
            )
            h1 = first(x)
            feats.append(h1.numpy())
            probs.append(torch.softmax(self.head(self.body[3:](h1)), dim=1).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(probs).astype(np.float64)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: dict,
    seed: int,
    progress=None,
    device: torch.device | None = None,
) -> tuple[DigitsClassifier, float]:
    """Train on 80% of the images (the clean digits, or a dataset's own: features.extractor
    trained; (n, H, W) grey or (n, H, W, 3) RGB), on `device` (the CPU by default); return the
    model (on the CPU) and its held-out accuracy on the rest."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    split = int(0.8 * len(images))
    train, held = order[:split], order[split:]
    model = DigitsClassifier(
        images.shape[1],
        cfg["hidden"],
        cfg["features"],
        int(labels.max()) + 1,
        channels=3 if images.ndim == 4 else 1,
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    x = torch.from_numpy(images.astype(np.float32)).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    for epoch in range(cfg["epochs"]):
        for batch in np.array_split(rng.permutation(train), max(1, len(train) // 64)):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if progress is not None and (epoch % 5 == 0 or epoch == cfg["epochs"] - 1):
            progress(f"classifier epoch {epoch + 1}/{cfg['epochs']} loss {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x[held]).argmax(1) == y[held]).float().mean())
    return model.cpu(), accuracy


def dataset_targets(items, contributors) -> tuple[np.ndarray, str, list[str]]:
    """What the trained extractor learns to predict: the items' labels where the dataset has them
    (data.label_column), else their contributors. Labels give a feature space about content
    (what the images show), in which an effect that spoils the content moves the Fréchet distance
    and lowers confidence; without labels the contributors are the only supervision the data
    has, and telling them apart is exactly what the attribution needs the features to see.
    Returns (class index per item, "label" or "contributor", class names)."""
    if "label" in items.columns:
        names = sorted(int(v) for v in items["label"].unique())
        index = {v: i for i, v in enumerate(names)}
        return items["label"].map(index).to_numpy(np.int64), "label", [str(v) for v in names]
    names = contributors["contributor"].tolist()
    index = {v: i for i, v in enumerate(names)}
    return items["contributor"].map(index).to_numpy(np.int64), "contributor", names


def save_classifier(model: DigitsClassifier, path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(model.state_dict(), str(tmp), metadata={"config": json.dumps(model.config)})


def load_classifier(path) -> DigitsClassifier:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        config = json.loads(handle.metadata()["config"])
    model = DigitsClassifier(**config)
    model.load_state_dict(load_file(str(path)))
    return model.eval()

"""Text-to-image pipelines (Stable Diffusion 1.x/2.x/XL, FLUX.1) in the proxy game.

A coalition is conditioned on captions drawn from its own items with its empirical
frequencies, as the paper does for artists and brands. The game's machinery is the
class-conditional one: every distinct caption is a "class" (its index in `prompts`),
each contributor's items are its captions, and the null class is the empty prompt
(the unconditional branch of classifier-free guidance).

`model.type` picks the loader: `stable_diffusion` uses diffusers' AutoPipelineForText2Image
(SD 1.x, 2.x and XL folders or hub ids), `flux` uses FluxPipeline. `model.lora` loads
LoRA weights with the pipeline's own `load_lora_weights` (scaled by `model.lora_scale`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)

TEXT_TO_IMAGE = ("stable_diffusion", "flux")
FLUX_MAX_SEQUENCE_LENGTH = 512  # FluxPipeline's default T5 prompt length

# generation.scheduler -> diffusers scheduler class name (null keeps the pipeline's own)
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "flow_match_euler": "FlowMatchEulerDiscreteScheduler",
}


@dataclass
class TextToImageModel:
    pipe: object
    kind: str
    image_size: int
    class_names: list[str] = field(
        default_factory=list
    )  # the prompts; set by `caption_conditioning`
    conditioning: str = "caption"
    truncated: int = 0  # prompts longer than the tokenizer's limit (truncated by the pipeline)
    max_sequence_length: int = (
        FLUX_MAX_SEQUENCE_LENGTH  # FLUX's T5 limit (generation.max_sequence_length)
    )

    @property
    def null_class(self) -> int:
        return len(self.class_names)

    def prompt(self, cls: int) -> str:
        return "" if cls == self.null_class else self.class_names[cls]


def is_text_to_image(spec) -> bool:
    return isinstance(spec, dict) and spec.get("type") in TEXT_TO_IMAGE


def load(spec: dict, gen_cfg: dict, device: torch.device, dtype: torch.dtype) -> TextToImageModel:
    """Load the pipeline by local path or hub id, with its LoRA and scheduler, onto the device."""
    import diffusers

    kind, path = spec["type"], spec["path"]
    loader = diffusers.FluxPipeline if kind == "flux" else diffusers.AutoPipelineForText2Image
    # Any failure (a missing file, a refused pickle in a .bin-only folder, a bad config) is the
    # user's input at fault: name the field, whatever diffusers or torch raised.
    try:
        # a hub id is read from the local cache unless model.allow_download
        pipe = loader.from_pretrained(
            path, dtype=dtype, local_files_only=not spec.get("allow_download")
        )
    except Exception as error:
        raise ValueError(f"model.path {path!r}: cannot load a {kind} pipeline: {error}") from None
    if spec.get("lora"):
        try:
            pipe.load_lora_weights(
                spec["lora"], adapter_name="user", local_files_only=not spec.get("allow_download")
            )
        except Exception as error:
            raise ValueError(
                f"model.lora {spec['lora']!r}: cannot load LoRA weights: {error}"
            ) from None
        pipe.set_adapters(["user"], adapter_weights=[float(spec.get("lora_scale", 1.0))])
    if gen_cfg.get("scheduler"):
        scheduler_class = getattr(diffusers, SCHEDULERS[gen_cfg["scheduler"]])
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    size = gen_cfg.get("resolution") or _default_resolution(pipe)
    return TextToImageModel(
        pipe,
        kind,
        int(size),
        max_sequence_length=int(gen_cfg.get("max_sequence_length") or FLUX_MAX_SEQUENCE_LENGTH),
    )


def _default_resolution(pipe) -> int:
    if hasattr(pipe, "default_sample_size"):  # FLUX, SDXL
        return int(pipe.default_sample_size * pipe.vae_scale_factor)
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)


def caption_conditioning(items: pd.DataFrame, contributors: list[str], model: TextToImageModel):
    """Every distinct caption becomes a class; each contributor conditions on its own items' captions."""
    from ..proxy.game import Conditioning

    if "caption" not in items.columns:
        raise ValueError(
            "a text-to-image model needs captions: set data.caption_column or data.caption_template"
        )
    prompts = sorted(items["caption"].unique())
    model.class_names = prompts
    model.truncated = count_truncated(model.pipe, prompts, model.max_sequence_length)
    position = {p: i for i, p in enumerate(prompts)}
    classes = items["caption"].map(position).to_numpy()
    by_contributor = items["contributor"].to_numpy()
    return Conditioning([classes[by_contributor == name] for name in contributors], len(prompts))


def count_truncated(
    pipe, prompts: list[str], max_sequence_length: int = FLUX_MAX_SEQUENCE_LENGTH
) -> int:
    """Prompts longer than a tokenizer's limit: the pipeline truncates them; warn and count."""
    worst = 0
    for tokenizer in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)):
        if tokenizer is None:
            continue
        limit = tokenizer.model_max_length
        if getattr(pipe, "tokenizer_2", None) is tokenizer and hasattr(pipe, "transformer"):
            limit = min(limit, max_sequence_length)  # what FluxPipeline passes to T5
        lengths = (
            [len(ids) for ids in tokenizer(prompts, truncation=False)["input_ids"]]
            if prompts
            else []
        )
        over = [p for p, n in zip(prompts, lengths) if n > limit]
        if over:
            log.warning(
                "%d caption(s) exceed %s's %d-token limit and are truncated, e.g. %r",
                len(over),
                type(tokenizer).__name__,
                limit,
                over[0][:80] + "...",
            )
        worst = max(worst, len(over))
    return worst


def noise_images(noise_seeds: np.ndarray, size: int) -> np.ndarray:
    """`game.empty_coalition: noise` for RGB models: each image's own Gaussian noise in [0, 1]."""
    return np.stack(
        [
            (
                (
                    torch.randn(
                        (size, size, 3), generator=torch.Generator().manual_seed(int(s))
                    ).clamp(-1, 1)
                    + 1
                )
                / 2
            ).numpy()
            for s in noise_seeds
        ]
    ).astype(np.float32)


def initial_latents(pipe, kind: str, generators: list, size: int) -> torch.Tensor:
    """Each image's starting latents, drawn in float32 on the CPU from its own generator (one
    per image, in order), in the shape the pipeline denoises: (n, channels,
    size / vae_scale_factor, same) for Stable Diffusion 1.x/2.x/XL, packed into (n, patches,
    4 * channels) for FLUX as FluxPipeline.prepare_latents packs them (diffusers 0.42).

    In float32 these are the very draws diffusers makes from a list of CPU generators, and they
    advance each generator as far. The difference is the dtype: diffusers draws in the
    pipeline's dtype, and on some torch versions (2.11) a CPU float16/bfloat16 `randn` is
    another sequence than float32's, so the same seed gave other images in half precision.
    Drawn here in float32, then cast, they do not.
    """
    scale = int(pipe.vae_scale_factor)
    if kind == "flux":
        channels = int(pipe.transformer.config.in_channels) // 4
        side = 2 * (int(size) // (scale * 2))  # packing needs an even latent side
    else:
        channels = int(pipe.unet.config.in_channels)
        side = int(size) // scale
    latents = torch.cat(
        [
            torch.randn(
                (1, channels, side, side),
                generator=generator,
                dtype=torch.float32,
            )
            for generator in generators
        ]
    )
    if kind == "flux":  # FluxPipeline._pack_latents: 2x2 patches, channels last
        n = len(latents)
        latents = latents.view(n, channels, side // 2, 2, side // 2, 2)
        latents = latents.permute(0, 2, 4, 1, 3, 5)
        latents = latents.reshape(n, (side // 2) * (side // 2), channels * 4)
    return latents


@torch.no_grad()
def sample(
    model: TextToImageModel, classes: np.ndarray, noise_seeds: np.ndarray, gen_cfg: dict
) -> np.ndarray:
    """One image per (prompt class, seed): float32 RGB in [0, 1], shape (n, size, size, 3).

    Each image's initial latents are drawn in float32 from its own CPU generator
    (`initial_latents`), then cast to the denoiser's dtype and moved to its device, so images
    depend on neither batch size, shard, device nor the random stream of the dtype (float16
    and bfloat16 pools start from the float32 pool's noise, rounded). The generators, advanced
    by those draws, still go to the pipeline: a stochastic scheduler (ddpm, euler_ancestral)
    draws its step noise from them, in the pipeline's dtype.
    """
    size = model.image_size
    out = np.empty((len(classes), size, size, 3), dtype=np.float32)
    batch = gen_cfg["batch_size"]
    extra = {"max_sequence_length": model.max_sequence_length} if model.kind == "flux" else {}
    denoiser = model.pipe.transformer if model.kind == "flux" else model.pipe.unet
    device = model.pipe._execution_device
    for start in range(0, len(classes), batch):
        stop = min(start + batch, len(classes))
        prompts = [model.prompt(int(c)) for c in classes[start:stop]]
        generators = [torch.Generator().manual_seed(int(s)) for s in noise_seeds[start:stop]]
        latents = initial_latents(model.pipe, model.kind, generators, size)
        images = model.pipe(
            prompt=prompts,
            num_inference_steps=gen_cfg["steps"],
            guidance_scale=gen_cfg["guidance_scale"],
            height=size,
            width=size,
            latents=latents.to(device=device, dtype=denoiser.dtype),
            generator=generators,
            output_type="np",
            **extra,
        ).images
        out[start:stop] = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    return out

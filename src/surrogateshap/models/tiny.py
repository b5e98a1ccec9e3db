"""Tiny, randomly initialised text-to-image pipelines, written offline.

`surrogateshap make-tiny-pipeline --kind sd|sdxl|flux --out DIR [--lora LORA_DIR]` writes a
StableDiffusionPipeline, StableDiffusionXLPipeline or FluxPipeline folder assembled from the real diffusers and
transformers component classes with tiny configs, so that tests, dry runs and new users
can run the text-to-image path end to end with no download.

Tokenizers are real, built offline:
- CLIP: the 49,408-token CLIP BPE vocabulary from the `clip-anytorch` wheel's
  `bpe_simple_vocab_16e6.txt.gz` (the same construction as CLIP's SimpleTokenizer;
  ids match OpenAI CLIP's). The wheel is installed without its dependencies: only the
  data file is read, the `clip` package is never imported (it needs torchvision).
- T5 (FLUX's second tokenizer): a Unigram (SentencePiece-style) T5Tokenizer whose
  pieces are derived from that same CLIP vocabulary (word-final pieces become
  "▁word", others stay sub-word pieces; scores by merge rank). It is not T5's own
  32k SentencePiece model (which cannot be fetched here), but it is the real
  tokenizer class, saves and reloads with `from_pretrained`, and tokenises any text.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import logging
import shutil
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CLIP_VOCAB_FILE = "clip/bpe_simple_vocab_16e6.txt.gz"
CLIP_MAX_LENGTH = 77
T5_VOCAB_SIZE = 4096  # pieces kept for the tiny T5 tokenizer (plus pad, eos, unk)
LORA_TARGETS_SD = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_TARGETS_FLUX = ["to_q", "to_k", "to_v", "to_out.0"]


# --------------------------------------------------------------------------- tokenizers
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_bpe_file() -> Path:
    """The CLIP BPE merges shipped in the clip-anytorch wheel (requirements.txt pins it)."""
    try:
        path = Path(importlib.metadata.distribution("clip-anytorch").locate_file(CLIP_VOCAB_FILE))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the CLIP vocabulary ({CLIP_VOCAB_FILE} from the clip-anytorch wheel) is not installed; "
            "run `pip install --no-deps clip-anytorch==2.6.0` (make venv does)"
        )
    return path


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges, built as CLIP's SimpleTokenizer builds them."""
    lines = gzip.open(clip_bpe_file()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, pairs


def clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    # transformers 5 ignores vocab_file/merges_file paths silently; pass the objects.
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=CLIP_MAX_LENGTH,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def t5_tokenizer(size: int = T5_VOCAB_SIZE, max_length: int = 64):
    """A Unigram T5Tokenizer with pieces from the CLIP vocabulary (see module docstring)."""
    from transformers import T5Tokenizer

    vocab, _ = clip_vocab_and_merges()
    printable = set(_bytes_to_unicode().values())
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = set()
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token.startswith("<|"):
            continue
        piece = "▁" + token[:-4] if token.endswith("</w>") else token
        if piece in seen or any(c not in printable for c in piece.lstrip("▁")):
            continue
        seen.add(piece)
        # Single characters keep every text tokenisable; longer pieces score by merge rank.
        pieces.append((piece, -1.0 - rank / len(vocab) * 10))
        if len(pieces) >= size + 3:
            break
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


# --------------------------------------------------------------------------- pipelines
def _clip_text_model(seed: int, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vocab, _ = clip_vocab_and_merges()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=hidden,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    return CLIPTextModel(config).eval()


def _tiny_vae(resolution: int, **extra):
    """A (32, 64) AutoencoderKL with 4 latent channels (FLUX's settings through `extra`)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=resolution,
        **extra,
    )


def tiny_sd_pipeline(resolution: int = 32, seed: int = 0):
    """A StableDiffusionPipeline with a (32, 64) UNet, a (32, 64) VAE and a 2-layer CLIP text encoder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    vae = _tiny_vae(resolution)
    latent = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=_clip_text_model(seed),
        tokenizer=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(resolution: int = 32, seed: int = 0):
    """A StableDiffusionXLPipeline: two CLIP text encoders (the second with a projection, whose
    pooled output and the size/crop ids condition the UNet's "text_time" embedding), a UNet that
    cross-attends to both encoders' hidden states side by side, a (32, 64) VAE."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    hidden, time_dim = 32, 8
    vae = _tiny_vae(resolution)
    latent = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    # "text_time": 6 size/crop ids, each embedded in time_dim, next to the second encoder's pooled output
    unet = UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * hidden,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + hidden,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    torch.manual_seed(seed + 2)
    second = CLIPTextModelWithProjection(_clip_text_model(seed + 2, hidden).config).eval()
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=_clip_text_model(seed, hidden),
        text_encoder_2=second,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def tiny_flux_pipeline(resolution: int = 32, seed: int = 0):
    """A FluxPipeline with a one-block transformer, a tiny VAE, CLIP and T5 text encoders."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    )
    vae = _tiny_vae(
        resolution,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    t5_tok = t5_tokenizer()
    torch.manual_seed(seed + 1)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=t5_tok.pad_token_id,
            eos_token_id=t5_tok.eos_token_id,
            decoder_start_token_id=t5_tok.pad_token_id,
        )
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=_clip_text_model(seed),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5.eval(),
        tokenizer_2=t5_tok,
        transformer=transformer.eval(),
    )


KINDS = {"sd": tiny_sd_pipeline, "sdxl": tiny_sdxl_pipeline, "flux": tiny_flux_pipeline}


def make_tiny_clip(out_dir, image_size: int = 16, seed: int = 0, aesthetic_head=None) -> None:
    """A randomly initialised CLIPModel folder with the real CLIP tokenizer (for features.clip /
    features.reward), and optionally a random LAION-style linear head file (features.aesthetic)."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    vocab, _ = clip_vocab_and_merges()
    text = _clip_text_model(seed).config.to_dict()
    vision = {
        "image_size": image_size,
        "patch_size": max(2, image_size // 4),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    tokenizer = clip_tokenizer()

    def write(tmp):
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    _atomic_dir(out_dir, write)
    if aesthetic_head:
        head = torch.nn.Linear(32, 1)
        save_file(
            {"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
            str(aesthetic_head),
        )


BACKBONE_KINDS = ("dinov2", "vit", "clip_vision", "siglip_vision")


def make_tiny_backbone(kind: str, out_dir, image_size: int = 16, seed: int = 0) -> None:
    """A randomly initialised transformers vision backbone folder (features.backbone): DINOv2,
    ViT, CLIP vision or SigLIP vision, one small layer, written offline."""
    import transformers

    if kind not in BACKBONE_KINDS:
        raise ValueError(f"unknown backbone kind {kind!r}; expected one of {BACKBONE_KINDS}")
    torch.manual_seed(seed)
    common = {
        "image_size": image_size,
        "patch_size": max(2, image_size // 4),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
    }
    config_class, model_class = {
        "dinov2": ("Dinov2Config", "Dinov2Model"),
        "vit": ("ViTConfig", "ViTModel"),
        "clip_vision": ("CLIPVisionConfig", "CLIPVisionModel"),
        "siglip_vision": ("SiglipVisionConfig", "SiglipVisionModel"),
    }[kind]
    config = getattr(transformers, config_class)(**common)
    model = getattr(transformers, model_class)(config).eval()
    _atomic_dir(out_dir, lambda tmp: model.save_pretrained(tmp, safe_serialization=True))


def denoiser(pipe):
    """The pipeline's LoRA-able denoiser and the save_lora_weights keyword for it."""
    if hasattr(pipe, "transformer") and pipe.transformer is not None:
        return pipe.transformer, "transformer_lora_layers"
    return pipe.unet, "unet_lora_layers"


def add_lora(
    pipe, rank: int = 4, seed: int = 0, targets: list[str] | None = None, random_init: bool = True
):
    """Attach a LoRA adapter to the denoiser: random A and B (it changes the output), or the usual B = 0."""
    from peft import LoraConfig

    module, _ = denoiser(pipe)
    targets = targets or (
        LORA_TARGETS_FLUX if module is getattr(pipe, "transformer", None) else LORA_TARGETS_SD
    )
    torch.manual_seed(seed)
    module.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=not random_init
        )
    )
    return module


def save_lora(pipe, out_dir) -> None:
    """Write the denoiser's LoRA with the pipeline class's own save_lora_weights (atomically)."""
    from peft.utils import get_peft_model_state_dict

    module, keyword = denoiser(pipe)
    _atomic_dir(
        out_dir,
        lambda tmp: type(pipe).save_lora_weights(
            tmp, **{keyword: get_peft_model_state_dict(module)}, safe_serialization=True
        ),
    )


def _atomic_dir(out_dir, write) -> None:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def make_tiny_pipeline(
    kind: str, out_dir, resolution: int = 32, seed: int = 0, lora_dir=None, lora_rank: int = 4
) -> None:
    """Write a tiny pipeline folder (and optionally a random LoRA for it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown pipeline kind {kind!r}; expected one of {sorted(KINDS)}")
    pipe = KINDS[kind](resolution, seed)
    _atomic_dir(out_dir, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))
    log.info("wrote a tiny %s pipeline to %s", kind, out_dir)
    if lora_dir:
        add_lora(pipe, rank=lora_rank, seed=seed + 7)
        save_lora(pipe, lora_dir)
        log.info("wrote a random rank-%d LoRA to %s", lora_rank, lora_dir)


# --------------------------------------------------------------------------- a LoRA on a trained pipeline
# every layer of the UNet with weights: attention, feed-forward, the ResNet convolutions and the
# timestep projections (a LoRA on the attention alone barely moves a small UNet)
LORA_TARGETS_UNET = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "time_emb_proj",
    "conv_in",
    "conv_out",
    "linear_1",
    "linear_2",
]


def caption_tokens(tokenizer, captions: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the distinct captions, sorted, and of the empty prompt (the last row), padded
    to the tokenizer's length as the pipeline pads every prompt; and each caption's row."""
    prompts = sorted(set(captions))
    tokens = tokenizer(
        prompts + [""],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    position = {p: i for i, p in enumerate(prompts)}
    rows = torch.tensor([position[c] for c in captions], device=device)
    return tokens.input_ids.to(device), rows


def train_lora(
    pipe,
    images,
    captions: list[str],
    rank: int = 8,
    steps: int = 300,
    lr: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | None = None,
    progress=None,
):
    """Fine-tune a LoRA on a Stable Diffusion pipeline's UNet for captioned images (a
    contributor's, a new style's); the VAE, the text encoder and the UNet's own weights stay.

    `images`: float (n, H, W, 3) in [0, 1] at the pipeline's side; `captions`: one per image.
    The LoRA starts at B = 0 (the pipeline unchanged) and is trained with the noise-prediction
    loss on the pipeline's own noise schedule, plus a preservation term: on the same noisy
    latents, its prediction for the empty prompt is held to the base UNet's. The empty prompt is
    the unconditional branch of classifier-free guidance for every prompt; a LoRA that moved it
    too (measured: a LoRA on watermarked images put the watermark in the empty prompt's images,
    and guidance then pushed the captions' images away from it) would cancel its own effect.
    Every draw comes from a CPU generator seeded by `seed`. Returns the pipeline, on the CPU,
    with the adapter attached (write it with `save_lora`).
    """
    import numpy as np
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    pipe.to(device)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    x = (x * 2 - 1).to(device)
    token_ids, caption_ids = caption_tokens(pipe.tokenizer, captions, device)
    with torch.no_grad():
        latents = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        embeddings = pipe.text_encoder(token_ids)[0]
    unconditional = embeddings[-1]
    add_lora(pipe, rank=rank, seed=seed, targets=LORA_TARGETS_UNET, random_init=False)
    unet = pipe.unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = min(batch_size, len(latents))
    for step in range(steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen).to(device)
        noise = torch.randn((batch, *latents.shape[1:]), generator=gen).to(device)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,), generator=gen)
        t = t.to(device)
        noisy = noise_schedule.add_noise(latents[idx], noise, t)
        empty = unconditional.expand(batch, -1, -1)
        with torch.no_grad():
            unet.disable_adapters()
            kept = unet(noisy, t, encoder_hidden_states=empty).sample
            unet.enable_adapters()
        pred = unet(noisy, t, encoder_hidden_states=embeddings[caption_ids[idx]]).sample
        loss = F.mse_loss(pred, noise)
        preserve = F.mse_loss(unet(noisy, t, encoder_hidden_states=empty).sample, kept)
        optimizer.zero_grad(set_to_none=True)
        (loss + preserve).backward()
        optimizer.step()
        if progress and (step % max(1, steps // 10) == 0 or step == steps - 1):
            progress(
                f"LoRA step {step + 1}/{steps} loss {loss.item():.4f} "
                f"(empty prompt kept: {preserve.item():.5f})"
            )
    unet.eval()
    return pipe.to("cpu")


# --------------------------------------------------------------------------- trained by the workflow
TRAINED_VAE_STEPS = 300  # model.text_to_image.vae_steps when unset
TRAIN_TEXT_ENCODER = True  # model.text_to_image.train_text_encoder when unset
VAE_LR = 2e-3


def text_to_image_unet(latent_size: int, block_out_channels, cross_attention_dim: int):
    """A UNet2DConditionModel laid out as Stable Diffusion's: cross-attention to the captions at
    every level but the first (and in the middle block); attention at the full latent side would
    double the cost of a training step."""
    from diffusers import UNet2DConditionModel

    levels = len(block_out_channels)
    down = ("CrossAttnDownBlock2D",) * levels
    if levels > 1:
        down = ("DownBlock2D",) + down[1:]
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,  # as the class-conditional UNet: channels of 8, 16, ... are allowed
        # the caption, pooled by attention, also joins the timestep embedding of every block:
        # a global path for what a whole image shares (its colours), beside the cross-attention
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def train_text_to_image(
    images,
    captions: list[str],
    train_cfg: dict,
    t2i_cfg: dict | None,
    seed: int,
    device: torch.device | None = None,
    progress=None,
):
    """A small StableDiffusionPipeline trained from scratch on a captioned dataset.

    `images`: float (n, H, W, 3) in [0, 1]; `captions`: one per image. First the (32, 64)
    AutoencoderKL is trained as an autoencoder (`t2i_cfg["vae_steps"]` steps; its
    `scaling_factor` then set so the latents have unit variance), then a fresh UNet2DConditionModel
    (`train_cfg`: model.train's channels, timesteps, steps, batch size, learning rate with cosine
    decay, EMA, and `label_dropout` as the rate at which a caption is replaced by the empty prompt,
    for classifier-free guidance) on the latents with the noise-prediction loss, together with
    the 2-layer CLIP text encoder (`t2i_cfg["train_text_encoder"]`, default true: a random
    encoder's embeddings of two short captions are close, cosine 0.96-0.99, so training it lets
    them move apart). Every random draw comes from CPU generators seeded by
    `seed`, so the device changes only floating-point rounding. Returns the pipeline (EMA
    weights, DDIM with the training schedule) on the CPU.
    """
    import copy
    import math

    import numpy as np
    import torch.nn.functional as F
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

    device = device or torch.device("cpu")
    t2i_cfg = t2i_cfg or {}
    vae_steps = t2i_cfg.get("vae_steps") or TRAINED_VAE_STEPS
    batch = int(train_cfg["batch_size"])
    size = int(images.shape[1])
    gen = torch.Generator().manual_seed(seed)
    text_encoder = _clip_text_model(seed).requires_grad_(False).to(device)
    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    vae = _tiny_vae(size).to(device).train()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    x = (x * 2 - 1).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=VAE_LR)
    for step in range(vae_steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen).to(device)
        posterior = vae.encode(x[idx]).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=gen).to(device)
        z = posterior.mean + posterior.std * eps
        loss = F.mse_loss(vae.decode(z).sample, x[idx]) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress and (step % max(1, vae_steps // 10) == 0 or step == vae_steps - 1):
            progress(f"vae step {step + 1}/{vae_steps} loss {loss.item():.4f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)]
        )
        scale = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scale)
        latents = latents * scale
    token_ids, caption_ids = caption_tokens(tokenizer, captions, device)
    empty = len(token_ids) - 1

    torch.manual_seed(seed + 1)
    unet = text_to_image_unet(
        latents.shape[-1], train_cfg["block_out_channels"], text_encoder.config.hidden_size
    ).to(device)
    train_text = t2i_cfg.get("train_text_encoder")
    train_text = TRAIN_TEXT_ENCODER if train_text is None else bool(train_text)
    # the UNet and the text encoder are averaged (EMA) and saved together
    trained = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    text_encoder.train(train_text).requires_grad_(train_text)
    ema = copy.deepcopy(trained).requires_grad_(False)
    noise_schedule = DDPMScheduler(
        num_train_timesteps=train_cfg["train_timesteps"],
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
    )
    steps = int(train_cfg["steps"])
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_cfg["lr"], weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    for step in range(steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen).to(device)
        cond = caption_ids[idx].clone()
        cond[(torch.rand(batch, generator=gen) < train_cfg["label_dropout"]).to(device)] = empty
        noise = torch.randn((batch, *latents.shape[1:]), generator=gen).to(device)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,), generator=gen)
        t = t.to(device)
        # the batch's distinct prompts only: a dataset may have thousands of captions
        distinct, inverse = torch.unique(cond, return_inverse=True)
        with torch.set_grad_enabled(train_text):
            context = text_encoder(token_ids[distinct])[0][inverse]
        pred = unet(
            noise_schedule.add_noise(latents[idx], noise, t), t, encoder_hidden_states=context
        ).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        lr_schedule.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), trained.parameters()):
                p_ema.lerp_(p, 1 - train_cfg["ema_decay"])
        if progress and (step % max(1, steps // 20) == 0 or step == steps - 1):
            progress(f"unet step {step + 1}/{steps} loss {loss.item():.4f}")
    scheduler = DDIMScheduler.from_config(
        noise_schedule.config, set_alpha_to_one=False, clip_sample=False, steps_offset=1
    )
    return StableDiffusionPipeline(
        vae=vae.cpu(),
        text_encoder=ema["text_encoder"].eval().cpu(),
        tokenizer=tokenizer,
        unet=ema["unet"].eval().cpu(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipe, out_dir) -> None:
    """Write a pipeline as a standard diffusers folder (safetensors), atomically."""
    from ..workflow.io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)

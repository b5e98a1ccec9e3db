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
def clip_text_model(seed: int, hidden: int = 32):
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


def tiny_vae(resolution: int, **extra):
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
    vae = tiny_vae(resolution)
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
        text_encoder=clip_text_model(seed),
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
    vae = tiny_vae(resolution)
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
    second = CLIPTextModelWithProjection(clip_text_model(seed + 2, hidden).config).eval()
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=clip_text_model(seed, hidden),
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
    vae = tiny_vae(
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
        text_encoder=clip_text_model(seed),
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
    text = clip_text_model(seed).config.to_dict()
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

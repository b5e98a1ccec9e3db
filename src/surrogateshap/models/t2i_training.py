"""A small text-to-image pipeline trained on a dataset's captions, and a LoRA trained on a
pipeline: what `model.type: tiny_text_to_image` and `surrogateshap train-lora` run. The untrained
tiny pipelines and their tokenizers: `tiny`.
"""

from __future__ import annotations

import torch

from . import tiny

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
    with the adapter attached (write it with `tiny.save_lora`).
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
    tiny.add_lora(pipe, rank=rank, seed=seed, targets=LORA_TARGETS_UNET, random_init=False)
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
    checkpoint=None,
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

    `checkpoint`: a file where the whole training state (the trained VAE, the UNet and text
    encoder, their EMA, optimiser, schedule and generator) is saved once the VAE is trained and
    every `train_cfg["checkpoint_every"]` UNet steps (steps / 10 when unset); when it exists,
    training resumes from it (the VAE is not trained again) and ends with the same weights as a
    run that was never interrupted.
    """
    import copy
    import math
    from pathlib import Path

    import numpy as np
    import torch.nn.functional as F
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

    from .class_conditional import TrainingState

    device = device or torch.device("cpu")
    t2i_cfg = t2i_cfg or {}
    vae_steps = t2i_cfg.get("vae_steps") or TRAINED_VAE_STEPS
    batch = int(train_cfg["batch_size"])
    size = int(images.shape[1])
    gen = torch.Generator().manual_seed(seed)
    text_encoder = tiny.clip_text_model(seed).requires_grad_(False).to(device)
    tokenizer = tiny.clip_tokenizer()
    torch.manual_seed(seed)
    vae = tiny.tiny_vae(size).to(device).train()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    x = (x * 2 - 1).to(device)
    resuming = checkpoint is not None and Path(checkpoint).is_file()
    if resuming:  # the VAE as trained; the rest of the state is restored below
        vae.load_state_dict(
            torch.load(checkpoint, map_location=device, weights_only=True)["extra"]["vae"]
        )
    optimizer = torch.optim.AdamW(vae.parameters(), lr=VAE_LR)
    for step in range(0 if resuming else vae_steps):
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
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # no state; TrainingState saves one
    state = TrainingState(trained, ema, optimizer, lr_schedule, scaler, None, gen, {"vae": vae})
    every = int(train_cfg.get("checkpoint_every") or max(1, steps // 10))
    first = 0
    if resuming:
        first = state.restore(checkpoint, device)
        if progress:
            progress(f"resumed from {checkpoint} at unet step {first}/{steps}")
    elif checkpoint is not None:
        state.save(checkpoint, 0)
    for step in range(first, steps):
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
        if checkpoint is not None and (step + 1) % every == 0 and step + 1 < steps:
            state.save(checkpoint, step + 1)
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

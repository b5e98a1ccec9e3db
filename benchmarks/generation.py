"""Generation throughput: the workflow's generation job against a bare diffusers sampling
loop with the same model, batch size, steps, guidance, dtype and device, side by side.

    .venv/bin/python benchmarks/generation.py [--model DIR] [--shards 4] [--repeats 3] [--quick]
        [--device cuda] [--dtype float16]

The workflow side is what the rules run: `steps.generation.generate_pool_shard` (the `generate_pool`
rule: load the data and model, plan, sample, PNG-encode, write Parquet, log progress) on
shard 1 of `--shards`, then `steps.generation.extract_features` (the `extract_features` rule: read
and decode the shard, classifier features, marker flags, write Parquet). The bare loop is
UNet2DModel + DDIMScheduler with classifier-free guidance, one torch.randn per batch, the
images left in memory; its model is loaded before the clock starts. Both make the same
number of images, the bare loop in the job's batches (each group sampled on its own, so at
most samples_per_contributor per batch) and also in full configured batches. Repeats
alternate them, and the medians are printed with the ratios to the bare loop. Because other
processes skew separate runs, the job's own time outside `models.sample` is also measured
within the same call. Throughput does not depend on how well the model is trained, so
without --model a model is trained here for a few steps.

The process start-up that every Snakemake job pays (a fresh Python importing torch and
diffusers) is measured separately and shown per job.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common
import numpy as np
import torch

from surrogateshap.models import class_conditional as models
from surrogateshap.proxy import game
from surrogateshap.workflow.steps import generation as generation_steps


def bare_loop(model_dir: str, n_images: int, n_classes: int, gen_cfg: dict, seed: int):
    """A function that samples `n_images` the plain diffusers way (the model loaded beforehand)."""
    from diffusers import DDIMScheduler, UNet2DModel

    device = models.resolve_device(gen_cfg["device"])
    dtype = models.resolve_dtype(gen_cfg["dtype"], device)
    unet = (
        UNet2DModel.from_pretrained(model_dir, subfolder="unet", torch_dtype=dtype)
        .to(device)
        .eval()
    )
    scheduler = DDIMScheduler.from_pretrained(
        model_dir, subfolder="scheduler", steps_offset=1, clip_sample=True
    )
    size, batch, guidance = (
        unet.config.sample_size,
        gen_cfg["batch_size"],
        gen_cfg["guidance_scale"],
    )

    @torch.no_grad()
    def run() -> np.ndarray:
        generator = torch.Generator(device).manual_seed(seed)
        images = []
        for start in range(0, n_images, batch):
            count = min(batch, n_images - start)
            x = torch.randn((count, 1, size, size), generator=generator, device=device)
            labels = torch.randint(0, n_classes, (count,), generator=generator, device=device)
            labels = torch.cat([labels, torch.full_like(labels, n_classes)])  # + the null class
            scheduler.set_timesteps(gen_cfg["steps"])
            for t in scheduler.timesteps:
                eps = unet(torch.cat([x, x]).to(dtype), t, class_labels=labels).sample.float()
                eps_cond, eps_uncond = eps.chunk(2)
                x = scheduler.step(
                    eps_uncond + guidance * (eps_cond - eps_uncond), t, x, eta=0.0
                ).prev_sample
            images.append(((x.clamp(-1, 1) + 1) / 2).cpu().numpy())
        return np.concatenate(images)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="a trained model folder (e.g. results/cache/model/<key>/model)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=50, help="without --model: train this many steps"
    )
    parser.add_argument(
        "--shards", type=int, default=None, help="generation shards (default: the config's)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="samples per contributor (default: the config's)"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="generation.device (default: the config's)")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="generation.dtype (default: the config's; halves only on a GPU)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the rules use 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.train_steps, args.samples, args.shards, args.repeats = 2, 8, 7, 1
    overrides = {
        "generation": {
            k: v
            for k, v in (
                ("samples_per_contributor", args.samples),
                ("shards", args.shards),
                ("batch_size", args.batch_size),
                ("device", args.device),
                ("dtype", args.dtype),
            )
            if v is not None
        }
    }
    if args.quick:
        overrides["generation"]["steps"] = 3
    config = _common.default_config(overrides)
    gen_cfg = config["generation"]
    _common.quiet_libraries()
    models.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = _common.prepare_inputs(tmp, config, args.model, args.train_steps, args.threads)
        model = models.load_diffusion(inputs.model_dir)
        n_groups = len(model.class_names) + 1
        shards = gen_cfg["shards"]
        n_images = len(game.shard_groups(n_groups, 0, shards)) * gen_cfg["samples_per_contributor"]
        device = models.resolve_device(gen_cfg["device"])
        print(f"model: {inputs.model_note}")
        print(
            f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} torch threads'}), "
            f"dtype {gen_cfg['dtype']}, batch {gen_cfg['batch_size']}, {gen_cfg['steps']} DDIM steps, "
            f"guidance {gen_cfg['guidance_scale']}; shard 1 of {shards}: {n_images} images "
            f"({gen_cfg['samples_per_contributor']} per group); median of {args.repeats}"
        )
        # The job samples each group in its own batches (so a pool does not depend on the sharding):
        # with fewer images per group than batch_size, its batches hold one group. The bare loop runs
        # those same batches (the reference of the ratios) and, when different, full configured ones.
        batches = {"bare": min(gen_cfg["batch_size"], gen_cfg["samples_per_contributor"])}
        if batches["bare"] != gen_cfg["batch_size"]:
            batches["bare, configured batch"] = gen_cfg["batch_size"]
        bare = {
            name: bare_loop(
                inputs.model_dir,
                n_images,
                len(model.class_names),
                dict(gen_cfg, batch_size=size),
                config["seed"],
            )
            for name, size in batches.items()
        }
        for run in bare.values():
            run()  # warm-up: first calls allocate and pick kernels
        pool, features = tmp / "pool.parquet", tmp / "features.parquet"

        def feature_job():
            generation_steps.extract_features(
                pool_shard=str(pool),
                classifier_path=inputs.classifier,
                marker_size=config["data"]["digits"]["marker_size"],
                feat_cfg=config["features"],
                threads=args.threads,
                out_path=str(features),
            )

        # Time spent inside the sampler during the job, measured in the same call as the job's
        # total: its overhead (loading, planning, PNG, Parquet, logging) is the rest, which
        # contention from other processes cannot skew between separate runs.
        in_sampler = []
        sample = models.sample

        def timed_sample(*a, **k):
            elapsed, images = _common.timed(sample, *a, **k)
            in_sampler[-1] += elapsed
            return images

        models.sample = timed_sample

        def generation_job():
            in_sampler.append(0.0)
            generation_steps.generate_pool_shard(
                data_dir=inputs.data_dir,
                model=inputs.model_dir,
                gen_cfg=gen_cfg,
                empty_coalition=config["game"]["empty_coalition"],
                seed=config["seed"],
                scatteritem=f"1-of-{shards}",
                threads=args.threads,
                out_path=str(pool),
            )

        jobs = {**bare, "generation": generation_job, "features": feature_job}
        seconds = {name: [] for name in jobs}
        for repeat in range(args.repeats):
            for name, job in jobs.items():
                seconds[name].append(_common.timed(job)[0])
            _common.note(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in seconds.items())
            )
        median = {name: _common.median(values) for name, values in seconds.items()}
        startup = _common.startup_seconds()
    bare_s, gen_s, feat_s = median["bare"], median["generation"], median["features"]
    table = _common.Table(
        ("job", "<", 52), ("seconds", ".2f"), ("images/s", ".1f"), ("vs bare", ".3f")
    )
    for name, size in batches.items():
        table.row(
            f"bare diffusers loop (batch {size}, sampling only)",
            median[name],
            n_images / median[name],
            bare_s / median[name],
        )
    table.row("generation job (generate_pool)", gen_s, n_images / gen_s, bare_s / gen_s)
    table.row("feature job (extract_features) alone", feat_s, n_images / feat_s, float("nan"))
    table.row(
        "generation + features (the pool stage)",
        gen_s + feat_s,
        n_images / (gen_s + feat_s),
        bare_s / (gen_s + feat_s),
    )
    both = gen_s + feat_s + 2 * startup
    table.row("  + start-up of both jobs", both, n_images / both, bare_s / both)
    print(
        f"process start-up per job (fresh Python importing torch, diffusers, surrogateshap): {startup:.2f}s"
    )
    outside = [
        (g - i + f) / (g + f)
        for g, i, f in zip(seconds["generation"], in_sampler, seconds["features"])
    ]
    print(
        "share of generation + features outside the sampler, per repeat (same call): "
        + ", ".join(f"{r:.2%}" for r in outside)
    )
    per_repeat = [
        b / (g + f) for b, g, f in zip(seconds["bare"], seconds["generation"], seconds["features"])
    ]
    print(
        "generation + features vs bare, per repeat (side by side): "
        + ", ".join(f"{r:.3f}" for r in per_repeat)
    )


if __name__ == "__main__":
    main()

"""The class-conditional UNet at each image size: parameters and CPU training seconds per 1,000
steps, for the block_out_channels that docs/own-data.md recommends per data.image_size.

    .venv/bin/python benchmarks/unet_sizes.py [--steps 5] [--batch-size 128] [--threads 1]
        [--sizes 8 16 32 64] [--channels 3]

Each row trains `models.train_diffusion` (what the train_model rule runs: EMA, label dropout,
the cosine schedule) on random images of that size for 1 + --steps optimiser steps; the first
step (allocation, warm-up) is left out and the mean of the others is scaled to 1,000 steps. A
few steps give the order of magnitude, not a precise figure: other processes on the machine
move it. Set `model.train.steps` with it in mind (the default 1,000 steps at 8x8 grey).
"""

from __future__ import annotations

import argparse
import time

# data.image_size -> model.train.block_out_channels (docs/own-data.md's table)
RECOMMENDED = {8: [32, 64], 16: [32, 64, 64], 32: [32, 64, 128], 64: [32, 64, 128, 128]}


def measure(size: int, channels: int, blocks: list[int], steps: int, batch_size: int):
    """(parameters, seconds per optimiser step after the first) of one training run."""
    import numpy as np

    from surrogateshap.models import class_conditional as models

    rng = np.random.default_rng(0)
    shape = (batch_size * 2, size, size) + ((3,) if channels == 3 else ())
    images = rng.random(shape, dtype=np.float32)
    classes = np.arange(len(images)) % 4
    cfg = {
        "block_out_channels": blocks,
        "train_timesteps": 1000,
        "steps": steps + 1,
        "batch_size": batch_size,
        "lr": 0.002,
        "ema_decay": 0.995,
        "label_dropout": 0.1,
    }
    stamps = []  # the progress callback runs after every step of so short a run
    model = models.train_diffusion(
        images,
        classes,
        list("abcd"),
        "contributor",
        cfg,
        0,
        progress=lambda _: stamps.append(time.perf_counter()),
    )
    params = sum(p.numel() for p in model.unet.parameters())
    return params, (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per size (after one)")
    parser.add_argument("--batch-size", type=int, default=128, help="model.train.batch_size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(RECOMMENDED))
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 grey, 3 RGB")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    colour = "RGB" if args.channels == 3 else "grey"
    print(f"# {colour}, batch {args.batch_size}, {args.threads} thread(s), {args.steps} steps each")
    print(f"{'size':>5} {'block_out_channels':<20} {'parameters':>11} {'s/1000 steps':>13}")
    for size in args.sizes:
        blocks = RECOMMENDED.get(size) or RECOMMENDED[max(s for s in RECOMMENDED if s <= size)]
        params, per_step = measure(size, args.channels, blocks, args.steps, args.batch_size)
        print(f"{size:>5} {str(blocks):<20} {params:>11,} {per_step * 1000:>13.0f}", flush=True)


if __name__ == "__main__":
    main()

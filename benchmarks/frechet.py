"""Fréchet distance per coalition: the batched symmetric-eigenvalue formulation used by
the pooled game against the usual scipy `sqrtm` formulation, side by side in one run.

    .venv/bin/python benchmarks/frechet.py [--dims 64 512 2048] [--coalitions 8]

Prints, per feature dimension d, the seconds per coalition of each formulation, the
speed-up, and the largest relative difference of the distances. When torch sees a GPU, the
same batched formulation also runs there (torch, float64), as the pooled game runs it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from surrogateshap.proxy import metrics
from surrogateshap.proxy.metric_base import Reference
from surrogateshap.proxy.metrics import frechet_from_moments


def scipy_frechet(mean, cov, reference: Reference) -> float:
    covmean = scipy.linalg.sqrtm(cov @ reference.cov)
    diff = mean - reference.mean
    return float(diff @ diff + np.trace(cov) + np.trace(reference.cov) - 2 * np.trace(covmean.real))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 512, 2048])
    parser.add_argument("--coalitions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gpu = metrics.linalg_backend()
    if gpu[0] is not np:
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(
        f"{'d':>6} {'coalitions':>10} {'scipy s/coal':>13} {'ours s/coal':>12} {'speed-up':>9} {'max rel diff':>13}"
        + (
            f" {'GPU s/coal':>11} {'GPU speed-up':>12} {'GPU rel diff':>12}"
            if gpu[0] is not np
            else ""
        )
    )
    for d in args.dims:
        n = 2 * d + 200  # enough samples for full-rank covariances
        reference = Reference.from_features(
            rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
        )
        means = []
        for _ in range(args.coalitions):
            x = (
                rng.normal(size=(n, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d))
                + 0.1
            )
            means.append((x.mean(0), x.T @ x / n))
        started = time.perf_counter()
        ours = frechet_from_moments(
            np.stack([m for m, _ in means]), np.stack([s for _, s in means]), reference
        )
        ours_s = (time.perf_counter() - started) / args.coalitions
        started = time.perf_counter()
        theirs = np.array([scipy_frechet(m, s - np.outer(m, m), reference) for m, s in means])
        theirs_s = (time.perf_counter() - started) / args.coalitions
        rel = np.max(np.abs(ours - theirs) / np.abs(theirs))
        line = f"{d:>6} {args.coalitions:>10} {theirs_s:>13.4f} {ours_s:>12.4f} {theirs_s / ours_s:>8.1f}x {rel:>13.2e}"
        if gpu[0] is not np:
            xp, to = gpu
            args_gpu = (
                to(np.stack([m for m, _ in means])),
                to(np.stack([s for _, s in means])),
                Reference(to(reference.mean), to(reference.cov), to(reference.cov_sqrt)),
                xp,
            )
            metrics.frechet_from_moments(*args_gpu)  # warm-up: CUDA context and solver workspaces
            torch.cuda.synchronize()
            started = time.perf_counter()
            on_gpu = metrics.frechet_from_moments(*args_gpu).cpu().numpy()
            gpu_s = (time.perf_counter() - started) / args.coalitions
            line += f" {gpu_s:>11.5f} {theirs_s / gpu_s:>11.1f}x {np.max(np.abs(on_gpu - theirs) / np.abs(theirs)):>12.2e}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

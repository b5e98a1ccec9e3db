"""Metric plug-ins for the proxy game.

A metric turns per-sample quantities (extractor features, class probabilities,
marker flags, per-sample scores) into a utility. Every metric here decomposes over groups of samples:
`group_stats` summarises each group once, and `evaluate` scores any mixture of
groups (one row of mixture weights per coalition) exactly from those summaries.
The per-coalition mode uses the same code with one group per coalition, so both
modes share one formula.

To add a metric: subclass `Metric` (`metric_base`), implement the two methods, declare `needs`,
`direction` and `decomposition`, register it in `METRICS`. The workflow picks metrics
by name from config; `features.custom_metrics` adds per-sample-mean metrics from a
user function without code changes. The metrics of per-sample scores: `score_metrics`.
"""

from __future__ import annotations

import numpy as np

from .metric_base import (
    Metric,
    Reference,
    _group_bounds,
    _group_means,
    _group_second_moments,
)
from .score_metrics import (
    AestheticScore,
    AttributeBias,
    ClipScore,
    RewardScore,
    SampleMean,
    Sharpness,
    SpuriousRate,
)

# Memory bounds for (d, d) matrices (d = 2,048 Inception features: 32 MB each). Per-coalition
# matrices are built this many bytes at a time; per-group second moments are kept only while
# they fit in SECOND_MOMENT_BYTES, else each coalition's is summed from its members' features.
CHUNK_BYTES = 2**28
SECOND_MOMENT_BYTES = 2**31


def linalg_backend():
    """(array module, converter) for the metrics' batched linear algebra: torch on the GPU in
    float64 when torch sees one (batched eigvalsh there is far faster), else numpy."""
    import torch

    if not torch.cuda.is_available():
        return np, np.asarray
    device = torch.device("cuda")
    return torch, lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


def _to_numpy(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.cpu().numpy()


class FrechetDistance(Metric):
    name = "frechet_distance"
    uses_extractor = True
    title = "Fréchet distance to the reference images"
    direction = "lower"
    description = (
        "Fréchet distance between Gaussians fitted to generated and reference images in the "
        "extractor's features (features.extractor: the digits classifier by default; FID itself with "
        "`inception`)."
    )

    def group_stats(self, samples, reference):
        f = samples.features
        stats = {"mean": _group_means(samples, f)}
        if samples.n_groups() * f.shape[1] ** 2 * 8 <= SECOND_MOMENT_BYTES:
            stats["second"] = _group_second_moments(samples, f)
        else:  # too many groups to keep a (d, d) matrix each: keep the features, grouped
            order, stats["bounds"] = _group_bounds(samples)
            stats["features"] = f[order]
        return stats

    def evaluate(self, stats, weights, reference):
        """Coalitions a memory-bounded chunk at a time, on the GPU when there is one."""
        xp, to = linalg_backend()
        d = stats["mean"].shape[1]
        step = max(1, CHUNK_BYTES // (8 * d * d))
        group_mean = to(stats["mean"])
        second = to(stats["second"]) if "second" in stats else None
        features = to(stats["features"]) if "features" in stats else None
        ref = Reference(to(reference.mean), to(reference.cov), to(reference.cov_sqrt))
        out = []
        for start in range(0, len(weights), step):
            w = weights[start : start + step]
            mixture = (
                (to(w) @ second.reshape(len(second), -1)).reshape(len(w), d, d)
                if second is not None  # a GEMM
                else _mixture_second_from_features(xp, to, features, stats["bounds"], w)
            )
            out.append(_to_numpy(frechet_from_moments(to(w) @ group_mean, mixture, ref, xp)))
        return np.concatenate(out) if out else np.zeros(0)


def _mixture_second_from_features(xp, to, features, bounds: np.ndarray, weights: np.ndarray):
    """(c, d, d) second moments of mixtures, summed from the members' features (grouped by
    `bounds`): each sample weighted by its group's weight over the group's size."""
    counts = np.diff(bounds)
    d = features.shape[1]
    rows = max(1, CHUNK_BYTES // (8 * d))
    out = []
    for w in weights:
        members = np.flatnonzero(w)
        index = (
            np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in members])
            if len(members)
            else np.zeros(0, int)
        )
        scale = np.repeat(np.sqrt(w[members] / counts[members]), counts[members])
        total = features[:0].T @ features[:0]  # (d, d) zeros, numpy or torch
        for start in range(0, len(index), rows):
            take = index[start : start + rows]
            block = features[take if xp is np else xp.as_tensor(take, device=features.device)]
            block = block * to(scale[start : start + rows])[:, None]
            total = total + block.T @ block
        out.append(total)
    return xp.stack(out)


def frechet_from_moments(mean, second, reference: Reference, xp=np):
    """Batched exact Fréchet distance from first and second moments (c, d), (c, d, d).

    tr sqrt(C R) equals the sum of square roots of the eigenvalues of the symmetric
    matrix R^1/2 C R^1/2, so one batched `eigvalsh` replaces a general `sqrtm` per coalition.
    `xp` is numpy, or torch with every argument (and the reference's arrays) a tensor.
    """
    cov = second - xp.einsum("ci,cj->cij", mean, mean)
    sym = reference.cov_sqrt @ cov @ reference.cov_sqrt
    sym = (sym + sym.swapaxes(1, 2)) / 2
    root_trace = (xp.linalg.eigvalsh(sym).clip(min=0) ** 0.5).sum(1)
    diff = mean - reference.mean
    return (
        (diff * diff).sum(1)
        + cov.diagonal(0, 1, 2).sum(1)
        + reference.cov.diagonal().sum()
        - 2 * root_trace
    )


class InceptionScoreLike(Metric):
    name = "inception_score_like"
    uses_extractor = True
    uses_probabilities = True
    title = "Inception-Score-like"
    direction = "higher"
    description = (
        "exp(E_x KL(p(y|x) || p(y))) with the extractor's class probabilities (the Inception Score "
        "itself with features.extractor: inception)."
    )

    def group_stats(self, samples, reference):
        p = np.clip(samples.probs, 1e-12, 1.0)
        return {
            "p_mean": _group_means(samples, p),
            "neg_entropy": _group_means(samples, (p * np.log(p)).sum(1)),
        }

    def evaluate(self, stats, weights, reference):
        marginal = np.clip(weights @ stats["p_mean"], 1e-12, 1.0)
        return np.exp(weights @ stats["neg_entropy"] - (marginal * np.log(marginal)).sum(1))


class MeanConfidence(Metric):
    name = "mean_confidence"
    uses_extractor = True
    uses_probabilities = True
    title = "Mean classifier confidence"
    direction = "higher"
    description = "Mean over samples of the digits classifier's top class probability."

    def group_stats(self, samples, reference):
        return {"confidence": _group_means(samples, samples.probs.max(1))}

    def evaluate(self, stats, weights, reference):
        return weights @ stats["confidence"]


class Diversity(Metric):
    name = "diversity"
    uses_extractor = True
    title = "Diversity: mean pairwise feature distance"
    direction = "higher"
    description = (
        "Expected Euclidean distance between two independent samples of the coalition's mixture, "
        "in the extractor's features (pairs of distinct samples)."
    )

    def group_stats(self, samples, reference):
        """Mean distance between the samples of every pair of groups (a group with itself: distinct
        pairs), from memory-bounded chunks of rows of the sample-by-sample distance matrix."""
        order, bounds = _group_bounds(samples)
        f, group = samples.features[order], samples.group[order]
        counts = np.diff(bounds)
        sums = np.zeros((len(counts), len(counts)))
        step = max(1, CHUNK_BYTES // (8 * max(len(f), 1)))
        for start in range(0, len(f), step):
            dist = _pairwise(f[start : start + step], f)
            cumulative = np.concatenate([np.zeros((len(dist), 1)), np.cumsum(dist, axis=1)], axis=1)
            np.add.at(
                sums,
                group[start : start + step],
                cumulative[:, bounds[1:]] - cumulative[:, bounds[:-1]],
            )
        pairs = np.outer(counts, counts) - np.diag(counts)  # a sample's distance to itself is 0
        return {"block": sums / np.maximum(pairs, 1)}

    def evaluate(self, stats, weights, reference):
        return np.einsum("cg,gh,ch->c", weights, stats["block"], weights)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


class LPIPSDiversity(Metric):
    name = "lpips_diversity"
    title = "LPIPS diversity: mean pairwise perceptual distance"
    direction = "higher"
    description = (
        "Expected LPIPS (AlexNet, v0.1) between two independent samples of the coalition's mixture "
        "(pairs of distinct samples)."
    )
    decomposition = (
        "exact: LPIPS(a, b) = ||e_a - e_b||^2 for an embedding e (non-negative linear weights), so "
        "each pair of groups needs only its sums of e and of ||e||^2"
    )
    needs = ("lpips",)

    def group_stats(self, samples, reference):
        if "lpips" not in samples.vectors:
            raise ValueError(
                "metric 'lpips_diversity' needs the per-sample LPIPS embeddings, which the features "
                "stage did not compute (set features.lpips)"
            )
        e = samples.vectors["lpips"]
        counts = np.bincount(samples.group, minlength=samples.n_groups()).astype(np.float64)
        mean, mean_square = _group_means(samples, e), _group_means(samples, (e * e).sum(1))
        block = mean_square[:, None] + mean_square[None, :] - 2 * mean @ mean.T
        # within a group, distinct pairs only: the mean over a != b of ||e_a - e_b||^2 is
        # 2 n / (n - 1) (E||e||^2 - ||E e||^2), and 0 for a single sample
        spread = mean_square - (mean * mean).sum(1)
        block[np.diag_indices(len(counts))] = np.where(
            counts > 1, 2 * counts * spread / np.maximum(counts - 1, 1), 0.0
        )
        return {"block": np.clip(block, 0, None)}

    def evaluate(self, stats, weights, reference):
        return np.einsum("cg,gh,ch->c", weights, stats["block"], weights)


class MarkerRate(Metric):
    name = "marker_rate"
    title = "Marker rate (planted corner marker detected)"
    direction = "lower"
    description = "Fraction of generated images in which the planted corner-marker detector fires."

    def group_stats(self, samples, reference):
        return {"rate": _group_means(samples, samples.marker)}

    def evaluate(self, stats, weights, reference):
        return weights @ stats["rate"]


class VendiScore(Metric):
    name = "vendi_score"
    uses_extractor = True
    title = "Vendi score (cosine kernel on extractor features)"
    direction = "higher"
    description = (
        "exp(entropy of the eigenvalues of K/n), K the cosine-similarity matrix of the samples' features: "
        "the effective number of distinct samples (Friedman & Dieng, 2023)."
    )
    decomposition = "exact: the nonzero eigenvalues of K/n are those of the mixture of per-group second moments of unit features"

    def group_stats(self, samples, reference):
        unit = samples.features / np.clip(
            np.linalg.norm(samples.features, axis=1, keepdims=True), 1e-12, None
        )
        return {"second": _group_second_moments(samples, unit)}

    def evaluate(self, stats, weights, reference):
        return vendi_from_second_moment(np.einsum("cg,gij->cij", weights, stats["second"]))


def vendi_from_second_moment(second: np.ndarray) -> np.ndarray:
    """Vendi score from (c, d, d) mean outer products of unit vectors (trace 1)."""
    values = np.clip(np.linalg.eigvalsh(second), 0, None)
    values = values / values.sum(axis=1, keepdims=True)
    logs = np.log(np.where(values > 0, values, 1.0))
    return np.exp(-(values * logs).sum(axis=1))


METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (
        FrechetDistance,
        InceptionScoreLike,
        MeanConfidence,
        Diversity,
        LPIPSDiversity,
        MarkerRate,
        Sharpness,
        VendiScore,
        AttributeBias,
        ClipScore,
        AestheticScore,
        RewardScore,
        SpuriousRate,
    )
}


def custom_metric(name: str, spec: dict) -> Metric:
    """A metric from features.custom_metrics: the mean of a user function's per-sample values."""
    attrs = {
        "name": name,
        "score": name,
        "title": spec.get("title") or name,
        "direction": spec.get("direction", "higher"),
        "description": f"mean over samples of {spec['function']}(images, prompts)",
        "needs": ("custom_metrics",),
    }
    return type(f"Custom_{name}", (SampleMean,), attrs)()


def get_metric(name: str, custom: dict | None = None) -> Metric:
    if name in METRICS:
        return METRICS[name]()
    if custom and name in custom:
        return custom_metric(name, custom[name])
    raise ValueError(
        f"unknown metric {name!r}; available: {sorted(METRICS) + sorted(custom or {})}"
    )


def extractor_metrics(metric_names: list[str], custom: dict | None = None) -> list[str]:
    """The metrics measured in features.extractor's features or class probabilities."""
    return [n for n in metric_names if n in METRICS and METRICS[n].uses_extractor]


def config_problems(metric_names: list[str], feat_cfg: dict) -> list[str]:
    """Every metric that is unknown or lacks a `features` setting it needs, and extractor conflicts."""
    custom = feat_cfg.get("custom_metrics") or {}
    problems = []
    for position, name in enumerate(metric_names):
        if name in METRICS and name in custom:
            problems.append(
                f"features.custom_metrics.{name}: shadows the built-in metric of that name"
            )
        try:
            metric = get_metric(name, custom)
        except ValueError as error:
            problems.append(f"metrics.{position}: {error}")
            continue
        missing = [need for need in metric.needs if not feat_cfg.get(need)]
        if missing:
            problems.append(
                f"metrics.{position}: {name!r} needs " + ", ".join(f"features.{m}" for m in missing)
            )
    if feat_cfg.get("extractor") == "backbone":
        if not feat_cfg.get("backbone"):
            problems.append(
                "features.extractor is 'backbone' but features.backbone (a local transformers "
                "vision model folder: DINOv2, ViT, CLIP vision, SigLIP) is not set"
            )
        probs = [n for n in metric_names if n in METRICS and METRICS[n].uses_probabilities]
        if probs:
            problems.append(
                f"metrics {probs} need class probabilities, which a vision backbone does not give: "
                "use features.extractor trained (or inception, clip with features.attributes), or "
                "drop them"
            )
    if feat_cfg.get("extractor") == "clip" and not feat_cfg.get("clip"):
        problems.append(
            "features.extractor is 'clip' but features.clip (a local CLIP model folder) is not set"
        )
    if feat_cfg.get("extractor") == "inception" and not feat_cfg.get("inception"):
        problems.append(
            "features.extractor is 'inception' but features.inception (a local Inception-v3 weights "
            "file) is not set"
        )
    if feat_cfg.get("attributes") and feat_cfg.get("extractor") != "clip":
        problems.append(
            "features.attributes needs features.extractor: clip (zero-shot attribute prompts)"
        )
    import re

    for group, pattern in (feat_cfg.get("prompt_groups") or {}).items():
        try:
            re.compile(pattern)
        except re.error as error:
            problems.append(
                f"features.prompt_groups.{group}: {pattern!r} is not a regular expression ({error})"
            )
    if (
        "attribute_bias" in metric_names
        and feat_cfg.get("extractor") == "clip"
        and not feat_cfg.get("attributes")
    ):
        problems.append(
            "metrics: 'attribute_bias' with the clip extractor needs features.attributes"
        )
    # weight files, checked now rather than by a features job after hours of generation
    from pathlib import Path

    lpips = feat_cfg.get("lpips") or {}
    for setting, path in (
        ("inception", feat_cfg.get("inception")),
        ("aesthetic", feat_cfg.get("aesthetic")),
        ("lpips.backbone", lpips.get("backbone")),
        ("lpips.linear", lpips.get("linear")),
    ):
        if path and not Path(path).is_file():
            problems.append(f"features.{setting}: no such file: {path}")
    for setting in ("clip", "reward", "backbone"):
        folder = feat_cfg.get(setting)
        if folder and not Path(folder).is_dir():
            problems.append(
                f"features.{setting}: no such model folder: {folder} (a local folder; nothing is downloaded)"
            )
    return problems

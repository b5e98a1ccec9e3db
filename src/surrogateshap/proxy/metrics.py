"""Metric plug-ins for the proxy game.

A metric turns per-sample quantities (extractor features, class probabilities,
marker flags, per-sample scores) into a utility. Every metric here decomposes over groups of samples:
`group_stats` summarises each group once, and `evaluate` scores any mixture of
groups (one row of mixture weights per coalition) exactly from those summaries.
The per-coalition mode uses the same code with one group per coalition, so both
modes share one formula.

To add a metric: subclass `Metric`, implement the two methods, declare `needs`,
`direction` and `decomposition`, register it in `METRICS`. The workflow picks metrics
by name from config; `features.custom_metrics` adds per-sample-mean metrics from a
user function without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Samples:
    """Per-sample quantities of generated images, grouped by `group` (0..G-1)."""

    group: np.ndarray  # (n,) int
    features: np.ndarray  # (n, d) the feature extractor's features
    probs: np.ndarray  # (n, k) class (or attribute) probabilities
    marker: np.ndarray  # (n,) 1.0 where the marker detector fires
    scores: dict = field(
        default_factory=dict
    )  # per-sample scores by name (clip_score, aesthetic, ...), (n,)
    vectors: dict = field(default_factory=dict)  # per-sample embeddings by name (lpips), (n, D)

    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


@dataclass
class Reference:
    """Statistics of the reference images (clean data) in the classifier's feature space."""

    mean: np.ndarray
    cov: np.ndarray
    cov_sqrt: np.ndarray  # symmetric square root, computed once

    @classmethod
    def from_features(cls, features: np.ndarray) -> Reference:
        mean = features.mean(0)
        cov = np.cov(features, rowvar=False, bias=True)
        values, vectors = np.linalg.eigh(cov)
        cov_sqrt = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        return cls(mean, cov, cov_sqrt)


def _group_means(samples: Samples, values: np.ndarray) -> np.ndarray:
    """Per-group mean of `values` (n, ...) -> (G, ...)."""
    groups = samples.n_groups()
    counts = np.bincount(samples.group, minlength=groups).astype(np.float64)
    flat = values.reshape(len(values), -1)
    sums = np.zeros((groups, flat.shape[1]))
    np.add.at(sums, samples.group, flat)
    return (sums / counts[:, None]).reshape((groups,) + values.shape[1:])


# Memory bounds for (d, d) matrices (d = 2,048 Inception features: 32 MB each). Per-coalition
# matrices are built this many bytes at a time; per-group second moments are kept only while
# they fit in SECOND_MOMENT_BYTES, else each coalition's is summed from its members' features.
CHUNK_BYTES = 2**28
SECOND_MOMENT_BYTES = 2**31


def _group_bounds(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """The samples' order sorted by group, and each group's [start, stop) in that order."""
    order = np.argsort(samples.group, kind="stable")
    return order, np.searchsorted(samples.group[order], np.arange(samples.n_groups() + 1))


def _group_second_moments(samples: Samples, values: np.ndarray) -> np.ndarray:
    """Per-group mean outer product E[v v^T] (G, d, d), one matrix product per group: never the
    (n, d, d) array of per-sample outer products (141 GB for 4,200 samples of 2,048-d features)."""
    order, bounds = _group_bounds(samples)
    values = values[order]
    out = np.empty((len(bounds) - 1, values.shape[1], values.shape[1]))
    for g, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        block = values[start:stop]
        out[g] = block.T @ block / len(block) if len(block) else np.nan
    return out


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


class Metric:
    name: str = ""
    title: str = ""
    direction: str = "higher"  # which way is better for the model's outputs
    description: str = ""
    needs: tuple[str, ...] = ()  # `features` settings it needs (checked when the config is read)
    decomposition: str = "exact"  # how pooled mixtures are scored: exact from per-group summaries
    uses_extractor: bool = False  # measured in features.extractor's features or class probabilities
    uses_probabilities: bool = False  # ... in its class probabilities

    def group_stats(self, samples: Samples, reference: Reference) -> dict:
        raise NotImplementedError

    def evaluate(self, stats: dict, weights: np.ndarray, reference: Reference) -> np.ndarray:
        """Utilities of mixtures: `weights` is (coalitions, groups), rows sum to 1."""
        raise NotImplementedError

    def info(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "direction": self.direction,
            "description": self.description,
            "needs": list(self.needs),
            "decomposition": self.decomposition,
            "uses_extractor": self.uses_extractor,
        }


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


PROMPT_GROUP = "prompt_group"  # the per-sample score holding each image's prompt group (features.prompt_groups)


class AttributeBias(Metric):
    name = "attribute_bias"
    uses_extractor = True
    uses_probabilities = True
    title = "Attribute bias (distance of the predicted attribute distribution from uniform)"
    direction = "lower"
    description = (
        "Total variation distance between the mean predicted distribution of the classifier's classes "
        "(digits; or with the CLIP extractor the joint distribution of features.attributes, i.e. their "
        "intersections) and the uniform distribution: 0 = balanced, 1 - 1/K = one class only. With "
        "features.prompt_groups, the distance within each group of prompts, averaged with the "
        "coalition's share of each group (unmatched prompts form one more group)."
    )
    decomposition = (
        "exact: mixture of per-group mean probabilities (per prompt group with prompt_groups)"
    )

    def group_stats(self, samples, reference):
        if PROMPT_GROUP not in samples.scores:
            return {"p_mean": _group_means(samples, samples.probs)}
        # per pool c and prompt group g: mean over the pool of 1[g] * p (K-vector) and of 1[g]
        prompt_group = samples.scores[PROMPT_GROUP].astype(np.int64)
        member = np.eye(int(prompt_group.max()) + 1)[prompt_group]  # (n, groups of prompts)
        return {
            "p_in_group": _group_means(samples, member[:, :, None] * samples.probs[:, None, :]),
            "share": _group_means(samples, member),
        }

    def evaluate(self, stats, weights, reference):
        if "p_mean" in stats:
            p = weights @ stats["p_mean"]
            return 0.5 * np.abs(p - 1.0 / p.shape[1]).sum(1)
        mass = np.einsum(
            "cg,gpk->cpk", weights, stats["p_in_group"]
        )  # (coalitions, prompt groups, K)
        share = weights @ stats["share"]  # (coalitions, prompt groups)
        present = share > 0
        p = mass / np.where(present, share, 1.0)[:, :, None]
        distance = np.where(present, 0.5 * np.abs(p - 1.0 / p.shape[2]).sum(2), 0.0)
        return (share * distance).sum(1) / share.sum(1)


class SampleMean(Metric):
    """Mean of a per-sample score over the coalition's samples (decomposes exactly)."""

    score = ""
    decomposition = "exact: mean of per-group means weighted by item counts"

    def group_stats(self, samples, reference):
        if self.score not in samples.scores:
            raise ValueError(
                f"metric {self.name!r} needs the per-sample score {self.score!r}, which the features stage "
                f"did not compute (set {', '.join('features.' + n for n in self.needs)})"
            )
        return {"mean": _group_means(samples, samples.scores[self.score])}

    def evaluate(self, stats, weights, reference):
        return weights @ stats["mean"]


class ClipScore(SampleMean):
    name = score = "clip_score"
    title = "CLIP score (prompt alignment)"
    description = (
        "100 * max(cos(CLIP image embedding, CLIP text embedding of the prompt), 0), averaged."
    )
    needs = ("clip",)


class AestheticScore(SampleMean):
    name = "aesthetic_score"
    score = "aesthetic"
    title = "Aesthetic score (LAION-style linear head on CLIP image embeddings)"
    description = (
        "Linear head (features.aesthetic) on L2-normalised CLIP image embeddings, averaged."
    )
    needs = ("clip", "aesthetic")


class RewardScore(SampleMean):
    name = "reward_score"
    score = "reward"
    title = "Reward-model score (preference model, e.g. PickScore)"
    description = "logit_scale * cos(image, prompt) of the CLIP-architecture reward model features.reward, averaged."
    needs = ("reward",)


class SpuriousRate(SampleMean):
    name = "spurious_rate"
    score = "spurious"
    title = "Spurious-feature rate (user-supplied detector)"
    direction = "lower"
    description = "Fraction of images where features.spurious_detector fires."
    needs = ("spurious_detector",)


METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (
        FrechetDistance,
        InceptionScoreLike,
        MeanConfidence,
        Diversity,
        LPIPSDiversity,
        MarkerRate,
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

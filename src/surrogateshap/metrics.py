"""Metric plug-ins for the proxy game.

A metric turns per-sample quantities (classifier features, class probabilities,
marker flags) into a utility. Every metric here decomposes over groups of samples:
`group_stats` summarises each group once, and `evaluate` scores any mixture of
groups (one row of mixture weights per coalition) exactly from those summaries.
The per-coalition mode uses the same code with one group per coalition, so both
modes share one formula.

To add a metric: subclass `Metric`, implement the two methods, register it in
`METRICS`. The workflow picks metrics by name from config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Samples:
    """Per-sample quantities of generated images, grouped by `group` (0..G-1)."""

    group: np.ndarray  # (n,) int
    features: np.ndarray  # (n, d) classifier hidden features
    probs: np.ndarray  # (n, k) classifier class probabilities
    marker: np.ndarray  # (n,) 1.0 where the marker detector fires

    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


@dataclass
class Reference:
    """Statistics of the reference images (clean data) in the classifier's feature space."""

    mean: np.ndarray
    cov: np.ndarray
    cov_sqrt: np.ndarray  # symmetric square root, computed once

    @classmethod
    def from_features(cls, features: np.ndarray) -> "Reference":
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


class Metric:
    name: str = ""
    title: str = ""
    direction: str = "higher"  # which way is better for the model's outputs
    description: str = ""

    def group_stats(self, samples: Samples, reference: Reference) -> dict:
        raise NotImplementedError

    def evaluate(self, stats: dict, weights: np.ndarray, reference: Reference) -> np.ndarray:
        """Utilities of mixtures: `weights` is (coalitions, groups), rows sum to 1."""
        raise NotImplementedError

    def info(self) -> dict:
        return {"name": self.name, "title": self.title, "direction": self.direction, "description": self.description}


class FrechetDistance(Metric):
    name = "frechet_distance"
    title = "Fréchet distance in digits-classifier features"
    direction = "lower"
    description = ("Fréchet distance between Gaussians fitted to generated and clean reference images in the "
                   "digits classifier's hidden features (FID's formula, not Inception features).")

    def group_stats(self, samples, reference):
        f = samples.features
        second = np.einsum("ni,nj->nij", f, f)
        return {"mean": _group_means(samples, f), "second": _group_means(samples, second)}

    def evaluate(self, stats, weights, reference):
        return frechet_from_moments(weights @ stats["mean"], np.einsum("cg,gij->cij", weights, stats["second"]), reference)


def frechet_from_moments(mean: np.ndarray, second: np.ndarray, reference: Reference) -> np.ndarray:
    """Batched exact Fréchet distance from first and second moments (c, d), (c, d, d).

    tr sqrt(C R) equals the sum of square roots of the eigenvalues of the symmetric
    matrix R^1/2 C R^1/2, so one batched `eigvalsh` replaces a general `sqrtm` per coalition.
    """
    cov = second - np.einsum("ci,cj->cij", mean, mean)
    sym = reference.cov_sqrt @ cov @ reference.cov_sqrt
    sym = (sym + np.swapaxes(sym, 1, 2)) / 2
    root_trace = np.sqrt(np.clip(np.linalg.eigvalsh(sym), 0, None)).sum(axis=1)
    diff = mean - reference.mean
    return (diff * diff).sum(1) + np.trace(cov, axis1=1, axis2=2) + np.trace(reference.cov) - 2 * root_trace


class InceptionScoreLike(Metric):
    name = "inception_score_like"
    title = "Inception-Score-like (digits classifier)"
    direction = "higher"
    description = "exp(E_x KL(p(y|x) || p(y))) with the digits classifier's class probabilities."

    def group_stats(self, samples, reference):
        p = np.clip(samples.probs, 1e-12, 1.0)
        return {"p_mean": _group_means(samples, p), "neg_entropy": _group_means(samples, (p * np.log(p)).sum(1))}

    def evaluate(self, stats, weights, reference):
        marginal = np.clip(weights @ stats["p_mean"], 1e-12, 1.0)
        return np.exp(weights @ stats["neg_entropy"] - (marginal * np.log(marginal)).sum(1))


class MeanConfidence(Metric):
    name = "mean_confidence"
    title = "Mean classifier confidence"
    direction = "higher"
    description = "Mean over samples of the digits classifier's top class probability."

    def group_stats(self, samples, reference):
        return {"confidence": _group_means(samples, samples.probs.max(1))}

    def evaluate(self, stats, weights, reference):
        return weights @ stats["confidence"]


class Diversity(Metric):
    name = "diversity"
    title = "Diversity: mean pairwise distance in classifier features"
    direction = "higher"
    description = ("Expected Euclidean distance between two independent samples of the coalition's mixture, "
                   "in the digits classifier's hidden features (pairs of distinct samples).")

    def group_stats(self, samples, reference):
        groups = samples.n_groups()
        order = np.argsort(samples.group, kind="stable")
        f, g = samples.features[order], samples.group[order]
        bounds = np.searchsorted(g, np.arange(groups + 1))
        block = np.zeros((groups, groups))
        for a in range(groups):
            fa = f[bounds[a]:bounds[a + 1]]
            for b in range(a, groups):
                fb = f[bounds[b]:bounds[b + 1]]
                dist = _pairwise(fa, fb)
                if a == b:
                    m = len(fa)
                    block[a, a] = dist.sum() / max(m * (m - 1), 1)
                else:
                    block[a, b] = block[b, a] = dist.mean()
        return {"block": block}

    def evaluate(self, stats, weights, reference):
        return np.einsum("cg,gh,ch->c", weights, stats["block"], weights)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


class MarkerRate(Metric):
    name = "marker_rate"
    title = "Marker rate (planted corner marker detected)"
    direction = "lower"
    description = "Fraction of generated images in which the planted corner-marker detector fires."

    def group_stats(self, samples, reference):
        return {"rate": _group_means(samples, samples.marker)}

    def evaluate(self, stats, weights, reference):
        return weights @ stats["rate"]


METRICS: dict[str, type[Metric]] = {
    cls.name: cls for cls in (FrechetDistance, InceptionScoreLike, MeanConfidence, Diversity, MarkerRate)
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]()
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; available: {sorted(METRICS)}") from None

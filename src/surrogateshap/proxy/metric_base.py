"""What every metric builds on: the samples it reads (`Samples`: per-sample features, class
probabilities, marker flags, scores, grouped by pool), the reference images' statistics
(`Reference`), per-group summaries, and the `Metric` interface (`group_stats`, `evaluate`).
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

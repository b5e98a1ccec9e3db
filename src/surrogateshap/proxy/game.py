"""The proxy game: utilities of coalitions from the pretrained model's generations.

Groups: group g < n is contributor g's pool (conditions drawn from its own items);
group n is the empty coalition's pool, which defines v(empty). Two definitions
(config `game.empty_coalition`):
- `unconditional` (default): the pretrained model with the null class, i.e. with
  no contributor's data to condition on.
- `noise`: what a model trained on no data can output, the sampler's starting
  noise, closer to the retraining game's v(empty).
In the Shapley formula v(empty) shifts every value by the same amount, so the
choice does not change ranks.

`pooled` mode scores every coalition as the mixture of its members' pools with
weights proportional to their item counts (the empirical frequencies of the
coalition's own data). `per_coalition` mode generates fresh samples per coalition.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metric_base import Reference, Samples
from .metrics import get_metric

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- conditioning
@dataclass
class Conditioning:
    """What each contributor's items condition the model on: one class index per item."""

    item_classes: list[np.ndarray]  # per contributor: class index of each of its items
    null_class: int

    @property
    def n(self) -> int:
        return len(self.item_classes)

    def counts(self) -> np.ndarray:
        return np.array([len(c) for c in self.item_classes], dtype=np.float64)


def build_conditioning(
    items: pd.DataFrame, contributors: list[str], class_names: list[str], conditioning: str
) -> Conditioning:
    """Map every item to the model's class index: its contributor, or its label."""
    position = {name: i for i, name in enumerate(class_names)}
    column = "contributor" if conditioning == "contributor" else "label"
    if column not in items.columns:
        raise ValueError(
            f"model conditions on {conditioning!r} but the dataset has no {column!r} column"
        )
    keys = items[column].astype(str)
    missing = sorted(set(keys) - set(position))
    if missing:
        raise ValueError(
            f"the model's classes (conditioning.json class_names) do not include {conditioning} value(s) "
            f"{missing[:10]}; it was trained on other data"
        )
    classes = keys.map(position).to_numpy()
    by_contributor = items["contributor"].to_numpy()
    return Conditioning(
        [classes[by_contributor == name] for name in contributors], len(class_names)
    )


def _rng(seed: int, *words) -> np.random.Generator:
    """An independent stream per (seed, purpose, ...) so shards never share or shift draws."""
    tags = [int.from_bytes(hashlib.sha256(str(w).encode()).digest()[:4], "little") for w in words]
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


def pool_plan(
    cond: Conditioning, group: int, n_samples: int, seed: int, seed_policy: str = "per_image"
) -> tuple[np.ndarray, np.ndarray]:
    """Classes and noise seeds of one pool group (contributor index, or n for unconditional)."""
    rng = _rng(seed, "pool", group)
    if group == cond.n:
        classes = np.full(n_samples, cond.null_class)
    else:
        classes = rng.choice(cond.item_classes[group], size=n_samples, replace=True)
    return classes.astype(np.int64), _noise_seeds(rng, n_samples, seed, seed_policy)


def _noise_seeds(
    rng: np.random.Generator, n_samples: int, seed: int, seed_policy: str
) -> np.ndarray:
    """`per_image`: each group's own noise seeds; `shared`: sample i starts from the same noise in
    every group and coalition (common random numbers: differences reflect the conditioning only)."""
    if seed_policy == "shared":
        return _rng(seed, "shared-noise").integers(0, 2**62, size=n_samples)
    return rng.integers(0, 2**62, size=n_samples)


def coalition_plan(
    cond: Conditioning,
    members: tuple[int, ...],
    n_samples: int,
    seed: int,
    seed_policy: str = "per_image",
) -> tuple[np.ndarray, np.ndarray]:
    """Classes (drawn from the coalition's own items) and noise seeds for one coalition."""
    rng = _rng(seed, "coalition", ",".join(map(str, members)))
    if not members:
        classes = np.full(n_samples, cond.null_class)
    else:
        pooled = np.concatenate([cond.item_classes[i] for i in members])
        classes = rng.choice(pooled, size=n_samples, replace=True)
    return classes.astype(np.int64), _noise_seeds(rng, n_samples, seed, seed_policy)


def shard_groups(n_groups: int, shard: int, shards: int) -> list[int]:
    return [g for g in range(n_groups) if g % shards == shard]


# --------------------------------------------------------------------------- utilities
def mixture_weights(coalitions: list[tuple[int, ...]], counts: np.ndarray) -> np.ndarray:
    """(coalitions, n + 1) weights: members in proportion to item counts; empty -> unconditional."""
    n = len(counts)
    weights = np.zeros((len(coalitions), n + 1))
    for row, members in enumerate(coalitions):
        if members:
            idx = list(members)
            weights[row, idx] = counts[idx] / counts[idx].sum()
        else:
            weights[row, n] = 1.0
    return weights


class PooledGame:
    """The pooled proxy game: each metric's per-pool statistics are computed once (for diversity
    over all pairs of pools), then any number of coalitions, in as many calls, are scored from them."""

    def __init__(
        self,
        samples: Samples,
        counts: np.ndarray,
        metric_names: list[str],
        reference: Reference,
        custom: dict | None = None,
    ):
        self.counts = counts
        self.reference = reference
        self.metrics = {}
        for name in metric_names:
            metric = get_metric(name, custom)
            started = time.time()
            self.metrics[name] = (metric, metric.group_stats(samples, reference))
            log.info("metric %s: pool statistics in %.2fs", name, time.time() - started)

    def utilities(self, coalitions: list[tuple[int, ...]], chunk: int = 2048) -> pd.DataFrame:
        weights = mixture_weights(coalitions, self.counts)
        out = {}
        for name, (metric, stats) in self.metrics.items():
            started = time.time()
            out[name] = (
                np.concatenate(
                    [
                        metric.evaluate(stats, weights[i : i + chunk], self.reference)
                        for i in range(0, len(weights), chunk)
                    ]
                )
                if len(weights)
                else np.zeros(0)
            )
            log.info("metric %s: %d coalitions in %.2fs", name, len(weights), time.time() - started)
        return pd.DataFrame(out)


def pooled_utilities(
    samples: Samples,
    coalitions: list[tuple[int, ...]],
    counts: np.ndarray,
    metric_names: list[str],
    reference: Reference,
    chunk: int = 2048,
    custom: dict | None = None,
) -> pd.DataFrame:
    return PooledGame(samples, counts, metric_names, reference, custom).utilities(coalitions, chunk)


def sample_utilities(
    samples: Samples, metric_names: list[str], reference: Reference, custom: dict | None = None
) -> dict[str, float]:
    """Utilities of one set of samples (the per-coalition mode): a one-group mixture."""
    one = Samples(
        np.zeros(len(samples.group), dtype=np.int64),
        samples.features,
        samples.probs,
        samples.marker,
        samples.scores,
        samples.vectors,
    )
    weights = np.ones((1, 1))
    out = {}
    for name in metric_names:
        metric = get_metric(name, custom)
        out[name] = float(
            metric.evaluate(metric.group_stats(one, reference), weights, reference)[0]
        )
    return out

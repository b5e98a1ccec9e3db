"""Metrics of per-sample scores and class probabilities by prompt group: the mean of a per-sample
score (sharpness, CLIP score, aesthetic and reward-model scores, the spurious detector's rate, and the
user's custom metrics, `metrics.custom_metric`), and the attribute bias.
"""

from __future__ import annotations

import numpy as np

from .metric_base import Metric, _group_means

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


class Sharpness(SampleMean):
    name = score = "sharpness"
    title = "Sharpness (high-frequency energy)"
    description = (
        "Mean squared 4-neighbour Laplacian of the grey image, averaged over samples: blur lowers "
        "it; noise and fine texture raise it."
    )


class SpuriousRate(SampleMean):
    name = "spurious_rate"
    score = "spurious"
    title = "Spurious-feature rate (user-supplied detector)"
    direction = "lower"
    description = "Fraction of images where features.spurious_detector fires."
    needs = ("spurious_detector",)

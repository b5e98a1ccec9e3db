import numpy as np
import pytest
import scipy.linalg

from surrogateshap.proxy import game
from surrogateshap.proxy.metric_base import Reference, Samples
from surrogateshap.proxy.metrics import METRICS, frechet_from_moments, get_metric


def _samples(rng, sizes, d=6, k=4):
    group = np.concatenate([np.full(m, g) for g, m in enumerate(sizes)])
    shift = rng.normal(size=(len(sizes), d))[group]
    features = rng.normal(size=(len(group), d)) * rng.uniform(0.5, 2, size=d) + shift
    logits = rng.normal(size=(len(group), k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    marker = (rng.random(len(group)) < 0.2).astype(float)
    return Samples(group, features, probs, marker)


def _scipy_frechet(x, ref):
    mu1, mu2 = x.mean(0), ref.mean(0)
    c1, c2 = np.cov(x, rowvar=False, bias=True), np.cov(ref, rowvar=False, bias=True)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_frechet_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(500, 8)) * 1.5 + 0.3, rng.normal(size=(800, 8))
    reference = Reference.from_features(ref)
    got = frechet_from_moments(x.mean(0)[None], (x.T @ x / len(x))[None], reference)[0]
    assert got == pytest.approx(_scipy_frechet(x, ref), rel=1e-8)


@pytest.mark.parametrize(
    "name", ["frechet_distance", "inception_score_like", "mean_confidence", "marker_rate"]
)
def test_pooled_mixture_equals_metric_of_the_pooled_samples(name):
    """With weights equal to the groups' sample shares, the mixture is exactly the union of samples."""
    rng = np.random.default_rng(1)
    sizes = [30, 50, 40]
    samples = _samples(rng, sizes)
    reference = Reference.from_features(rng.normal(size=(300, 6)))
    metric = get_metric(name)
    members = [0, 2]
    mask = np.isin(samples.group, members)
    weights = np.zeros((1, 3))
    weights[0, members] = np.array(sizes)[members] / np.sum(np.array(sizes)[members])
    pooled = metric.evaluate(metric.group_stats(samples, reference), weights, reference)[0]
    subset = Samples(
        samples.group[mask], samples.features[mask], samples.probs[mask], samples.marker[mask]
    )
    direct = game.sample_utilities(subset, [name], reference)[name]
    assert pooled == pytest.approx(direct, rel=1e-9)


def test_inception_score_like_known_values():
    reference = Reference.from_features(np.random.default_rng(0).normal(size=(10, 2)))
    metric = get_metric("inception_score_like")
    confident = np.eye(4)[np.arange(400) % 4]  # certain and uniform over 4 classes: IS = 4
    s = Samples(np.zeros(400, int), np.zeros((400, 2)), confident, np.zeros(400))
    assert metric.evaluate(metric.group_stats(s, reference), np.ones((1, 1)), reference)[
        0
    ] == pytest.approx(4, rel=1e-6)
    uniform = np.full((400, 4), 0.25)  # no information: IS = 1
    s = Samples(np.zeros(400, int), np.zeros((400, 2)), uniform, np.zeros(400))
    assert metric.evaluate(metric.group_stats(s, reference), np.ones((1, 1)), reference)[
        0
    ] == pytest.approx(1, rel=1e-6)


def test_diversity_matches_direct_pairwise_mean():
    rng = np.random.default_rng(2)
    samples = _samples(rng, [40, 40])
    metric = get_metric("diversity")
    reference = Reference.from_features(rng.normal(size=(50, 6)))
    one = game.sample_utilities(samples, ["diversity"], reference)["diversity"]
    f = samples.features
    d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    assert one == pytest.approx(d.sum() / (len(f) * (len(f) - 1)), rel=1e-9)
    # pooled mixtures decompose exactly: sum_ab w_a w_b D_ab, where D_ab is the mean distance
    # between a's and b's samples (distinct pairs within a group), brute force
    g = samples.group
    blocks = np.array(
        [
            [
                d[np.ix_(g == a, g == b)].sum() / ((g == a).sum() * ((g == b).sum() - (a == b)))
                for b in (0, 1)
            ]
            for a in (0, 1)
        ]
    )
    stats = metric.group_stats(samples, reference)
    for w in ([0.5, 0.5], [0.2, 0.8], [1.0, 0.0]):
        w = np.array(w)
        mixed = metric.evaluate(stats, w[None], reference)[0]
        assert mixed == pytest.approx(w @ blocks @ w, rel=1e-9), w


def test_mixture_weights_use_item_counts_and_unconditional_for_empty():
    w = game.mixture_weights([(), (0, 2), (1,)], np.array([10.0, 20.0, 30.0]))
    assert w.tolist() == [[0, 0, 0, 1], [0.25, 0, 0.75, 0], [0, 1, 0, 0]]


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="fid_typo"):
        get_metric("fid_typo")
    assert set(METRICS) >= {"frechet_distance", "marker_rate"}


def _frechet_utilities(samples, reference, weights):
    metric = get_metric("frechet_distance")
    return metric.evaluate(metric.group_stats(samples, reference), weights, reference)


@pytest.mark.parametrize("route", ["group_second_moments", "member_features"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_frechet_routes_and_backends_agree(monkeypatch, route, backend):
    """Every way the pooled Fréchet distance is computed gives the same numbers: per-group second
    moments or (when those would not fit in memory) the members' features; numpy, or torch in
    float64 as on a GPU (run here on the CPU); tiny chunks so that chunking is exercised."""
    import torch

    from surrogateshap.proxy import metrics

    rng = np.random.default_rng(5)
    samples = _samples(rng, [30, 50, 40, 20], d=12)
    reference = Reference.from_features(rng.normal(size=(300, 12)))
    weights = game.mixture_weights(
        [(), (0, 2), (1,), (0, 1, 2), (2,)], np.array([10.0, 20.0, 30.0])
    )  # group 3: empty
    expected = _frechet_utilities(samples, reference, weights)
    monkeypatch.setattr(
        metrics, "CHUNK_BYTES", 8 * 12 * 12 * 2
    )  # two coalitions, or a few rows, per chunk
    if route == "member_features":
        monkeypatch.setattr(metrics, "SECOND_MOMENT_BYTES", 0)
    if backend == "torch":
        monkeypatch.setattr(
            metrics,
            "linalg_backend",
            lambda: (torch, lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))),
        )
    got = _frechet_utilities(samples, reference, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    for row, w in enumerate(weights):  # and each equals the distance of its pooled samples
        members = np.flatnonzero(w)
        mask = np.isin(samples.group, members)
        if len(members) == 1:
            subset = Samples(
                samples.group[mask],
                samples.features[mask],
                samples.probs[mask],
                samples.marker[mask],
            )
            assert got[row] == pytest.approx(
                game.sample_utilities(subset, ["frechet_distance"], reference)["frechet_distance"],
                rel=1e-9,
            )


def test_diversity_in_chunks_equals_one_pass(monkeypatch):
    from surrogateshap.proxy import metrics

    rng = np.random.default_rng(6)
    samples = _samples(rng, [7, 12, 5])
    reference = Reference.from_features(rng.normal(size=(50, 6)))
    metric = get_metric("diversity")
    whole = metric.group_stats(samples, reference)["block"]
    monkeypatch.setattr(metrics, "CHUNK_BYTES", 8 * len(samples.group) * 3)  # three rows per chunk
    np.testing.assert_allclose(metric.group_stats(samples, reference)["block"], whole, rtol=1e-12)
    f, g = samples.features, samples.group
    dist = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    assert whole[0, 2] == pytest.approx(dist[np.ix_(g == 0, g == 2)].mean(), rel=1e-9)
    assert whole[1, 1] == pytest.approx(dist[np.ix_(g == 1, g == 1)].sum() / (12 * 11), rel=1e-9)

"""How many images a retrained model's metrics need: each metric's sampling noise against the
number of images, on the embedded default's data.

    .venv/bin/python benchmarks/frechet_spread.py [--sizes 64 128 256 512 1024 2048]
        [--coalitions 48] [--repeats 4]

The retraining game scores a model by the metrics of `evaluation.retrain.samples` generated
images. Here a coalition's "model" is replaced by its own training items (the distribution a
perfect retrain would reproduce), so that only the metric's sample size is left as a source of
noise: for each held-out coalition of the default (the 20 digits contributors with their
planted effects, alpha 0.5), two independent draws of n items (with replacement) are scored,
and the table gives, per metric and n, the Spearman correlation of the two draws' utilities
across coalitions (the split-half reliability the noise ceiling would see from the metric alone,
not yet Spearman-Brown corrected), and for the Fréchet distance its standard deviation between
draws relative to its spread across coalitions, and its bias against the coalition's own value
from all its items. Pure arithmetic on features: no timing is involved.
"""

from __future__ import annotations

import argparse

import _common
import numpy as np

from surrogateshap.data import datasets as data_mod
from surrogateshap.data import planted
from surrogateshap.evaluation import scores as evaluation
from surrogateshap.models import class_conditional as models
from surrogateshap.proxy import features, game
from surrogateshap.proxy.metric_base import Reference, Samples


def subset(samples: Samples, rows: np.ndarray) -> Samples:
    return Samples(
        np.zeros(len(rows), dtype=np.int64),
        samples.features[rows],
        samples.probs[rows],
        samples.marker[rows],
        {k: v[rows] for k, v in samples.scores.items()},
        {k: v[rows] for k, v in samples.vectors.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--coalitions", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=4, help="pairs of draws per size")
    args = parser.parse_args()
    _common.quiet_libraries()
    cfg = _common.default_config()
    digits = cfg["data"]["digits"]
    metric_names = [m for m in cfg["metrics"] if m != "diversity"] + ["diversity"]

    clean, labels = data_mod.digits_images()
    rng = np.random.default_rng(cfg["seed"])
    owner = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        for part, chunk in enumerate(np.array_split(idx, digits["splits_per_class"])):
            owner[chunk] = data_mod.digits_contributor(int(label), part)
    images = clean.copy()
    for entry in planted.entries(cfg["data"]):  # the planted entries with their defaults filled
        for i in np.flatnonzero(owner == entry["contributor"]):
            images[i] = planted.apply_effect(images[i], entry, rng)
    classifier, _ = models.train_classifier(clean, labels, cfg["classifier"], cfg["seed"])
    reference = Reference.from_features(classifier.embed(clean.astype(np.float32))[0])
    samples = features.extract(
        images.astype(np.float32),
        np.zeros(len(images)),
        classifier,
        digits["marker_size"],
        cfg["features"]["marker_threshold"],
    )
    names = sorted(set(owner))
    heldout = evaluation.heldout_coalitions(len(names), args.coalitions, 0.5, [0])
    coalitions = [m for d, m in zip(heldout["draw"], heldout["members_index"]) if d >= 0]
    rows_of = [np.flatnonzero(np.isin(owner, [names[i] for i in m])) for m in coalitions]

    def score(rows):
        return game.sample_utilities(subset(samples, rows), metric_names, reference)

    exact = np.array([score(rows)["frechet_distance"] for rows in rows_of])
    print(
        f"# {len(coalitions)} coalitions; Fréchet distance from all items: spread (sd) "
        f"{exact.std():.3f}, range {exact.min():.3f}..{exact.max():.3f}"
    )
    print(
        f"# {'n':>5} "
        + " ".join(f"{m[:22]:>22}" for m in metric_names)
        + f" {'fd_sd/spread':>12} {'fd_bias':>8}"
    )
    draw = game._rng(cfg["seed"], "frechet-spread")
    for n in args.sizes:
        rho = {m: [] for m in metric_names}
        sd, bias = [], []
        for _ in range(args.repeats):
            a, b = (
                [score(draw.choice(rows, n, replace=True)) for rows in rows_of] for _ in range(2)
            )
            for m in metric_names:
                rho[m].append(evaluation.spearman([u[m] for u in a], [u[m] for u in b]))
            fa = np.array([u["frechet_distance"] for u in a])
            fb = np.array([u["frechet_distance"] for u in b])
            sd.append(np.sqrt(np.mean((fa - fb) ** 2) / 2))
            bias.append(np.mean((fa + fb) / 2 - exact))
        print(
            f"  {n:>5} "
            + " ".join(f"{np.nanmean(rho[m]):>22.3f}" for m in metric_names)
            + f" {np.mean(sd) / exact.std():>12.3f} {np.mean(bias):>8.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

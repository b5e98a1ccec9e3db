"""The retraining game: the utility of a coalition is the metric of a model trained on its data alone.

Two games, named by `evaluation.retrain.game`:

- `full`: a model trained from scratch on the coalition's items (the truth).
- `finetune`: the cheaper game. A copy of the trained main model with the layers named in
  `evaluation.retrain.finetune.reinit` re-initialised (by default the class embedding and the
  decoder: what ties an image to its contributor and draws its details) is fine-tuned on the
  coalition's items only. It costs a fraction of a full retrain; how faithfully it ranks
  coalitions like full retraining is measured on the same coalitions (`fidelity`) and reported.

Each coalition is retrained `replicates` times with independent seeds, so the evaluation can
measure the game's own noise (the noise ceiling). With `common_random_numbers`, replicate r of
every coalition shares one initialisation, one stream of batch positions, label dropout,
diffusion noise and timesteps, and one set of sampling noises: coalitions then differ only in
their data. Without it, every (coalition, replicate) draws its own.

What a model was trained on is recorded from the batches themselves (every row index the
training loop drew), not from the mask that selected the items, so the evaluation's leakage
check tests what actually happened.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd
import torch

from ..data import datasets as data_mod
from ..models import class_conditional as models
from ..proxy import features as feat
from ..proxy import game
from ..workflow.config import merge
from .scores import coalition_items

log = logging.getLogger(__name__)

GAMES = ("full", "finetune")


def replicate_seeds(seed: int, coalition: int, replicate: int, common: bool) -> tuple[int, int]:
    """(training seed, sampling seed) of one retrain. Common random numbers: the same for every
    coalition of a replicate; otherwise each coalition's own."""
    words = ("retrain", replicate) if common else ("retrain", coalition, replicate)
    rng = game._rng(seed, *words)
    return int(rng.integers(0, 2**31)), int(rng.integers(0, 2**31))


def reinitialise(unet: torch.nn.Module, prefixes: list[str], seed: int) -> list[str]:
    """Reset the parameters of every submodule whose name starts with one of `prefixes` (in
    place, from `seed`); returns the reset modules' names. A prefix that names nothing is an error."""
    torch.manual_seed(seed)
    reset, matched = [], set()
    for name, module in unet.named_modules():
        hits = [p for p in prefixes if name == p or name.startswith(p + ".")]
        if hits and hasattr(module, "reset_parameters"):
            module.reset_parameters()
            reset.append(name)
            matched.update(hits)
    missing = [p for p in prefixes if p not in matched]
    if missing:
        top = sorted({n.split(".")[0] for n, _ in unet.named_modules() if n})
        raise ValueError(
            f"evaluation.retrain.finetune.reinit names no layer of the model: {missing} "
            f"(the UNet's top-level layers: {top})"
        )
    return reset


def train_config(cfg: dict, game_name: str) -> dict:
    """The training settings of a retrain: model.train overridden by the game's own settings."""
    retrain = cfg["evaluation.retrain"]
    if game_name == "full":
        return merge(cfg["model.train"], retrain["train"])
    return merge(cfg["model.train"], retrain["finetune"]["train"])


def load_base(model_dir: str, names: list[str]) -> models.DiffusionModel:
    """The trained main model the finetune game starts from; it must know every contributor."""
    base = models.load_diffusion(model_dir)
    if base.conditioning != "contributor" or list(base.class_names) != list(names):
        raise ValueError(
            f"evaluation.retrain.game 'finetune' needs a model conditioned on the contributors "
            f"{names[:5]}...; {model_dir} is conditioned on {base.conditioning!r} with classes "
            f"{list(base.class_names)[:5]}..."
        )
    return base


def train_coalition(
    images: np.ndarray,
    classes: np.ndarray,
    names: list[str],
    game_name: str,
    train_cfg: dict,
    model_seed: int,
    device,
    base: models.DiffusionModel | None = None,
    reinit: list[str] | None = None,
) -> tuple[models.DiffusionModel, np.ndarray]:
    """One retrained model on these images only, and the sorted row indices its batches drew."""
    seen: set[int] = set()

    def record(indices):
        seen.update(int(i) for i in indices)

    init = None
    if game_name == "finetune":
        init = copy.deepcopy(base.unet)
        reinitialise(init, reinit or [], model_seed)
    model = models.train_diffusion(
        images,
        classes,
        names,
        "contributor",
        train_cfg,
        model_seed,
        device=device,
        init=init,
        on_batch=record,
    )
    return model, np.array(sorted(seen), dtype=np.int64)


def retrain_coalitions(
    dataset: data_mod.Dataset,
    table: pd.DataFrame,
    cfg: dict,
    game_name: str,
    replicates: int,
    classifier,
    reference,
    marker_size: int,
    model_dir: str | None,
    label: str,
) -> tuple[pd.DataFrame, dict]:
    """Play the retraining game on `table`'s coalitions (columns coalition, members), `replicates`
    times each: one row per (coalition, replicate) with the utilities, what the model was trained
    on, and the seconds it took. Returns the rows and the training settings used."""
    retrain_cfg, gen_cfg, feat_cfg, seed = (
        cfg["evaluation.retrain"],
        cfg["generation"],
        cfg["features"],
        cfg["seed"],
    )
    metric_names, image_size = cfg["metrics"], cfg["data.image_size"]
    common = bool(retrain_cfg["common_random_numbers"])
    if game_name not in GAMES:
        raise ValueError(f"evaluation.retrain.game: unknown game {game_name!r} (known: {GAMES})")
    names = dataset.contributors["contributor"].tolist()
    train_cfg = train_config(cfg, game_name)
    base = load_base(model_dir, names) if game_name == "finetune" else None
    reinit = retrain_cfg["finetune"]["reinit"] if game_name == "finetune" else None
    device = models.resolve_device(gen_cfg["device"])
    dtype = models.resolve_dtype(gen_cfg["dtype"], device)
    position = {c: i for i, c in enumerate(names)}  # every contributor keeps its class
    cond = game.build_conditioning(dataset.items, names, names, "contributor")
    results, total = [], len(table) * replicates
    for coalition, member_names in zip(table["coalition"], table["members"]):
        members = tuple(sorted(position[m] for m in member_names))
        mask = coalition_items(dataset.items["contributor"], names, members)
        items = dataset.items[mask].reset_index(drop=True)
        if members:
            images = data_mod.load_images(
                dataset.root, items["file_name"], image_size, dataset.mode
            )
            item_classes = items["contributor"].map(position).to_numpy()
        for replicate in range(replicates):
            started = time.time()
            model_seed, sample_seed = replicate_seeds(seed, int(coalition), replicate, common)
            seen = np.zeros(0, dtype=np.int64)
            if members:
                model, seen = train_coalition(
                    images,
                    item_classes,
                    names,
                    game_name,
                    train_cfg,
                    model_seed,
                    device,
                    base,
                    reinit,
                )
            train_seconds = time.time() - started
            classes, noise = game.coalition_plan(
                cond,
                members,
                retrain_cfg["samples"],
                sample_seed,
                "shared" if common else "per_image",
            )
            if members:
                generated = models.sample(
                    model,
                    classes,
                    noise,
                    gen_cfg["guidance_scale"],
                    gen_cfg["steps"],
                    device,
                    dtype,
                    gen_cfg["batch_size"],
                )
            else:  # the empty coalition's model has learned nothing: the sampler's starting noise
                generated = models.untrained_output(
                    noise, image_size, 3 if dataset.color == "rgb" else 1
                )
            samples = feat.extract(
                generated,
                np.zeros(len(generated)),
                classifier,
                marker_size,
                feat_cfg["marker_threshold"],
            )
            row = {
                "coalition": int(coalition),
                "replicate": replicate,
                "game": game_name,
                "members": [names[i] for i in members],
                "trained_contributors": sorted(items["contributor"].iloc[seen].unique().tolist()),
                "trained_items": int(len(seen)),
                "n_items": int(len(items)),
                "train_seconds": train_seconds,
                "seconds": time.time() - started,
                "images": len(generated),
                **game.sample_utilities(samples, metric_names, reference),
            }
            results.append(row)
            log.info(
                "%s: coalition %d replicate %d (%d/%d, %s game, %d members, %d items, %d drawn) "
                "in %.1fs",
                label,
                coalition,
                replicate,
                len(results),
                total,
                game_name,
                len(members),
                len(items),
                len(seen),
                row["seconds"],
            )
    columns = [
        "coalition",
        "replicate",
        "game",
        "members",
        "trained_contributors",
        "trained_items",
        "n_items",
        "train_seconds",
        "seconds",
        "images",
        *metric_names,
    ]
    return pd.DataFrame(results, columns=columns), train_cfg

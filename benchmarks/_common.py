"""Helpers shared by the benchmark scripts: the embedded default's inputs built with the
package's own steps (as the workflow's rules call them), fixed-width tables printed as
rows are measured, and log-log fits.

The scripts run as `.venv/bin/python benchmarks/<name>.py`, so `import _common` finds
this file beside them.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# imported where used: estimators.py runs in shapiq's own environment, which lacks jsonschema
from surrogateshap.estimation import estimators, games

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def default_config(overrides: dict | None = None) -> dict:
    """config/config.yaml (the embedded default) with `overrides` merged over it, validated."""
    from surrogateshap.workflow.config import load_yaml, merge, validate_config

    return validate_config(merge(load_yaml(ROOT / "config/config.yaml"), overrides or {}), SCHEMA)


def stage_dirs(config: dict, cache: Path) -> dict[str, Path]:
    """Each stage's folder of `config`'s run in `cache`, by its stage keys, as the workflow's
    common.smk builds them (never by globbing: a cache holds the stages of every run)."""
    from surrogateshap.workflow.config import stage_keys, workflow_fingerprints

    keys = stage_keys(config, workflow_fingerprints(config, SCHEMA, ROOT / "workflow" / "scripts"))
    return {stage: cache / stage / key for stage, key in keys.items()}


def quiet_libraries() -> None:
    """Keep the tables readable: the package logs only warnings, diffusers only errors."""
    logging.basicConfig(
        level=logging.WARNING, format="# %(levelname)s %(message)s", stream=sys.stderr
    )
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()


def note(message: str) -> None:
    """Progress of a long benchmark, on stderr so the table on stdout stays clean."""
    print(f"# {message}", file=sys.stderr, flush=True)


@dataclass
class Inputs:
    data_dir: str
    model_dir: str
    classifier: str
    reference: str
    model_note: str  # which diffusion model was used, for the printed header


def prepare_inputs(
    workdir: Path, config: dict, model: str | None, train_steps: int, threads: int
) -> Inputs:
    """The workflow's inputs for `config` under `workdir`, built by the rules' own functions:
    the exported dataset, the classifier and its reference features, and the diffusion model
    (`model` if given, else trained here for `train_steps` steps)."""
    from surrogateshap.workflow.config import merge
    from surrogateshap.workflow.steps import data as data_steps  # torch: only where it is used
    from surrogateshap.workflow.steps import models as model_steps

    workdir = Path(workdir)
    data_dir = workdir / "data"
    started = time.perf_counter()
    data_steps.prepare_data(data_cfg=config["data"], seed=config["seed"], out_dir=str(data_dir))
    classifier = workdir / "classifier.safetensors"
    model_steps.train_classifier(
        cfg=config["classifier"],
        seed=config["seed"],
        threads=threads,
        out_path=str(classifier),
        metrics_path=str(workdir / "classifier.json"),
    )
    reference = workdir / "reference.parquet"
    model_steps.reference_features(classifier_path=str(classifier), out_path=str(reference))
    note(f"data and classifier ready ({time.perf_counter() - started:.0f}s)")
    if model:
        return Inputs(str(data_dir), model, str(classifier), str(reference), f"given: {model}")
    model_cfg = merge(config["model"], {"train": {"steps": train_steps}})
    started = time.perf_counter()
    model_steps.train_model(
        data_dir=str(data_dir),
        cfg=model_cfg,
        data_cfg=config["data"],
        seed=config["seed"],
        threads=threads,
        out_dir=str(workdir / "model"),
    )
    default_steps = config["model"]["train"]["steps"]
    note(f"diffusion model trained for {train_steps} steps ({time.perf_counter() - started:.0f}s)")
    return Inputs(
        str(data_dir),
        str(workdir / "model"),
        str(classifier),
        str(reference),
        f"trained here for {train_steps} steps (the embedded default trains {default_steps})",
    )


# The surrogate with fixed hyperparameters (the default grid's middle), no bootstrap: values only.
FIXED_SURROGATE = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.1,
    "min_child_weight": 1,
    "base": "linear",
}


def surrogate_settings(threads: int, cv_folds: int = 0) -> dict:
    """Surrogate settings for benchmarks: fixed hyperparameters, or with `cv_folds` a small grid search."""
    return {
        "params": FIXED_SURROGATE,
        "grid": {"max_depth": [2, 3, 4], "base": ["none", "linear"]} if cv_folds else {},
        "cv_folds": cv_folds,
        "bootstrap": 0,
        "ci_level": 0.9,
        "top_k": 5,
        "threads": threads,
        "anchor_endpoints": True,
    }


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def median(values) -> float:
    return float(statistics.median(values))


def startup_seconds(repeats: int = 3) -> float:
    """A fresh Python importing the generation stack: what every Snakemake job pays before its work."""
    code = "import torch, diffusers, surrogateshap.workflow.steps.generation"
    return median(
        timed(subprocess.run, [sys.executable, "-c", code], check=True)[0] for _ in range(repeats)
    )


class Table:
    """Fixed-width rows printed as they are measured, so long runs show progress.

    Columns are (title, format spec) or (title, format spec, width); a value that is a
    string is printed as is, left-aligned when its column's spec is "<"."""

    def __init__(self, *columns: tuple):
        self.specs = [column[1] for column in columns]
        self.widths = [
            column[2] if len(column) > 2 else max(len(column[0]), 9) for column in columns
        ]
        self._print([column[0] for column in columns])

    def row(self, *values) -> None:
        self._print(
            [
                value if isinstance(value, str) else format(value, spec)
                for value, spec in zip(values, self.specs)
            ]
        )

    def _print(self, cells) -> None:
        print(
            " ".join(
                f"{cell:{'<' if spec == '<' else '>'}{width}}"
                for cell, spec, width in zip(cells, self.specs, self.widths)
            ),
            flush=True,
        )


def loglog_exponents(sizes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Exponents b of seconds ~ a * prod(size_k ^ b_k), least squares in log-log.

    `sizes` is (runs, k); a column with a single distinct value cannot be fitted and is dropped
    (its exponent is NaN)."""
    sizes = np.asarray(sizes, dtype=float).reshape(len(seconds), -1)
    varied = [k for k in range(sizes.shape[1]) if len(np.unique(sizes[:, k])) > 1]
    exponents = np.full(sizes.shape[1], np.nan)
    if varied:
        design = np.column_stack([np.ones(len(sizes))] + [np.log(sizes[:, k]) for k in varied])
        coef = np.linalg.lstsq(design, np.log(np.asarray(seconds, dtype=float)), rcond=None)[0]
        exponents[varied] = coef[1:]
    return exponents


# --------------------------------------------------------------------------- games
def tanh_game(n: int, seed: int) -> games.Game:
    if n > 16:
        raise ValueError(f"tanh enumerates 2^n coalitions; n = {n} is over 16")
    inner = games.polynomial_game(n, seed)
    everything = np.array([[m >> i & 1 for i in range(n)] for m in range(2**n)], dtype=float)
    spread = float(np.std(inner.evaluate(everything)))

    def evaluate(x):
        return np.tanh(inner.evaluate(np.asarray(x, dtype=float)) / spread)

    return games.Game(
        f"tanh(n={n})", n, evaluate, estimators.exact(everything, evaluate(everything))
    )


def additive_game(n: int, seed: int) -> games.Game:
    return games.polynomial_game(n, seed, pairs=0, triples=0)


# game families with exact Shapley values, by the name `--games name:n` gives them
GAMES = {
    "additive": additive_game,
    "poly": games.polynomial_game,
    "tanh": tanh_game,
    "fd": games.gaussian_fd_game,
    "vote": games.voting_game,
}

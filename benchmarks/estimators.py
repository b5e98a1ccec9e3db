"""Our estimators against shapiq's approximators, on games with exact Shapley values, side by side.

shapiq 1.8 needs Python >= 3.12 and is never a dependency of the package, so this script runs in
its own environment, with the package on PYTHONPATH (it imports no torch):

    /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/shapiq-venv
    /tmp/shapiq-venv/bin/pip install "shapiq==1.8.*" lightgbm shap xgboost-cpu scikit-learn pandas pyyaml
    PYTHONPATH=src nice -n 10 /tmp/shapiq-venv/bin/python benchmarks/estimators.py \\
        [--games poly:40 poly:200 tanh:14 fd:12 vote:20 vote:100] [--multipliers 2 5 10 20 50]
        [--seeds 5] [--ours default kernel] [--shapiq KernelSHAP LeverageSHAP ...]

Every method gets the same budget of utility evaluations (coalitions = multiplier x n) on the same
game; a row is one game family, size and budget, its errors the mean relative L2 error over
`--seeds` games of that family (game seed s, sampling seed s). Ours: `default` is the workflow's
default, the `surrogate` estimator with config/config.yaml's surrogate settings (bootstrap off) on
the default sampler's coalitions; `kernel` our KernelSHAP on the same coalitions; `today` the
former default (the surrogate with its old grid on paired Shapley-kernel coalitions).
shapiq's (its defaults unless said): KernelSHAP (paired, border trick), LeverageSHAP,
RegressionMSR with an XGBoost proxy and with a linear proxy (RegressionMSR-lin), OddSHAP (LightGBM
screening), SVARM, PermutationSamplingSV. After each row: ours / best-of-shapiq ratio and the
verdict, `win`, `tie` (the mean paired difference to the best shapiq method is within two standard
errors of the per-seed differences) or `LOSS`; where `kernel`, `sk-kernel` or `lev-kernel` (our
KernelSHAP on the default, paired Shapley-kernel or leverage coalitions) are among `--ours`, the
first of ours is also judged so against the best of them on that row (`vs ...`). A second table
gives each method's mean seconds (measured on a loaded, shared machine: compare them within a run,
not across runs).

Games (exact values): poly (surrogateshap.estimation.games.polynomial_game: n linear terms, n pairs and n/3
triples), tanh (tanh of a polynomial game scaled to unit spread: saturating; enumerated, n <= 16),
fd (games.gaussian_fd_game, the pooled Fréchet-distance formula on a Gaussian mixture; n <= 14),
vote (games.voting_game, weighted majority; exact by dynamic programming).
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from pathlib import Path

import numpy as np
import yaml
from _common import GAMES

from surrogateshap.estimation import estimators, games
from surrogateshap.estimation.coalitions import DEFAULT_SAMPLER, indicators, sample_coalitions
from surrogateshap.estimation.estimators import DEFAULT_ESTIMATOR

ROOT = Path(__file__).resolve().parents[1]
# The former default surrogate settings, for the `today` column.
TODAY = {
    "params": {"n_estimators": 300, "subsample": 1.0, "min_child_weight": 1},
    "grid": {"max_depth": [2, 3, 4], "learning_rate": [0.05, 0.1], "base": ["none", "linear"]},
    "cv_folds": 5,
    "odd_targets": False,
    "residual_correction": "none",
    "select": "heldout_error",
}


# Variants of ours, by the name the table prints: (estimator, sampler, settings over the defaults).
VARIANTS = {
    "sk-kernel": ("kernel", "shapley_kernel", {}),
    "lev-kernel": ("kernel", "leverage", {}),
    "lev-kb": ("surrogate", "leverage", {"grid": {"base": ["kernel"], "max_depth": [2, 3]}}),
    "lev-kb-odd": (
        "surrogate",
        "leverage",
        {"grid": {"base": ["kernel"], "max_depth": [2, 3]}, "odd_targets": True},
    ),
    "lev-kb-odd0": (
        "surrogate",
        "leverage",
        {
            "grid": {"base": ["kernel"], "max_depth": [2, 3], "n_estimators": [0, 300]},
            "odd_targets": True,
        },
    ),
    "lev-today": ("surrogate", "leverage", dict(TODAY, odd_targets=False)),
    # leverage design, odd targets, a shrunk kernel base with trees or none, and the MSR residual
    # correction; the default is this with select: heldout_values (candidate-values, below)
    "candidate": (
        "surrogate",
        "leverage",
        {
            "params": {
                "n_estimators": 300,
                "learning_rate": 0.3,
                "subsample": 1.0,
                "min_child_weight": 1,
            },
            "grid": {"max_depth": [2, 3, 4], "n_estimators": [0, 300], "base": ["kernel"]},
            "odd_targets": True,
            "residual_correction": "in_sample",
        },
    ),
}
# the candidate choosing its grid point by the held-out error of the values, not of the utilities
# (selection.heldout_value_scores; benchmarks/cv_choice.py)
VARIANTS["candidate-values"] = (
    "surrogate",
    "leverage",
    dict(VARIANTS["candidate"][2], select="heldout_values"),
)
# the candidate with a free intercept per coalition size in its kernel base
# (regression.kernel_system; benchmarks/kernel_centring.py)
VARIANTS["candidate-centred"] = (
    "surrogate",
    "leverage",
    dict(
        VARIANTS["candidate"][2],
        params=dict(VARIANTS["candidate"][2]["params"], kernel_centre_sizes=True),
    ),
)


@functools.cache
def workflow_config() -> dict:
    """config/config.yaml, read once."""
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def default_settings() -> dict:
    cfg = workflow_config()["surrogate"]
    return dict(cfg, bootstrap=0, threads=1)  # threads are the rule's, not the config's


def ours(method: str, game: games.Game, budget: int, seed: int) -> np.ndarray:
    n = game.n
    names = [f"p{i}" for i in range(n)]
    if method in VARIANTS:
        estimator, sampler, overrides = VARIANTS[method]
        cfg = dict(default_settings(), **overrides)
        x = indicators(sample_coalitions(n, budget, sampler, seed, paired=True), n)
    elif method == "today":
        cfg = dict(default_settings(), **TODAY)
        x = indicators(sample_coalitions(n, budget, "shapley_kernel", seed, paired=True), n)
        estimator = "surrogate"
    else:
        cfg = default_settings()
        # the workflow's draw: its default sampler, paired as config/config.yaml says
        paired = workflow_config()["coalitions"]["paired"]
        x = indicators(sample_coalitions(n, budget, DEFAULT_SAMPLER, seed, paired=paired), n)
        estimator = DEFAULT_ESTIMATOR if method == "default" else method
    y = game.evaluate(x.astype(float))
    table, _ = estimators.attribute(estimator, x, y, names, cfg, seed)
    return table.set_index("contributor").loc[names, "shapley"].to_numpy()


def shapiq_method(method: str, game: games.Game, budget: int, seed: int) -> np.ndarray:
    import shapiq

    n = game.n
    make = {
        "KernelSHAP": lambda: shapiq.KernelSHAP(n, random_state=seed),
        "LeverageSHAP": lambda: shapiq.LeverageSHAP(n, random_state=seed),
        "RegressionMSR": lambda: shapiq.RegressionMSR(n, "SV", random_state=seed),
        "RegressionMSR-lin": lambda: shapiq.RegressionMSR(
            n, "SV", proxy_model="linear", random_state=seed
        ),
        "OddSHAP": lambda: shapiq.OddSHAP(n, random_state=seed),
        "SVARM": lambda: shapiq.SVARM(n, random_state=seed),
        "PermutationSamplingSV": lambda: shapiq.PermutationSamplingSV(n, random_state=seed),
    }[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = make().approximate(
            budget, lambda z: game.evaluate(np.atleast_2d(np.asarray(z, dtype=float)))
        )
    return np.array([result[(i,)] for i in range(n)])


# Our KernelSHAP: on the default design, on paired Shapley-kernel and on leverage coalitions.
KERNELS = ("kernel", "sk-kernel", "lev-kernel")
SHAPIQ = (
    "KernelSHAP",
    "LeverageSHAP",
    "RegressionMSR",
    "RegressionMSR-lin",
    "OddSHAP",
    "SVARM",
    "PermutationSamplingSV",
)
SHORT = {
    "KernelSHAP": "Kernel",
    "LeverageSHAP": "Leverage",
    "RegressionMSR": "MSR-xgb",
    "RegressionMSR-lin": "MSR-lin",
    "OddSHAP": "OddSHAP",
    "SVARM": "SVARM",
    "PermutationSamplingSV": "Perm",
    "candidate-centred": "cand-cent",
    "candidate-values": "cand-val",
}


def paired_verdict(ours_errors: list[float], other_errors: list[float]) -> str:
    """`win` (mean paired difference <= 0), `tie` (> 0 but within two standard errors of the
    per-seed differences) or `LOSS`."""
    diff = np.array(ours_errors) - np.array(other_errors)
    se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return "win" if diff.mean() <= 0 else ("tie" if diff.mean() <= 2 * se else "LOSS")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--games",
        nargs="+",
        default=["poly:40", "poly:200", "tanh:14", "fd:12", "vote:20", "vote:100"],
    )
    parser.add_argument("--multipliers", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ours", nargs="+", default=["default", "kernel"])
    parser.add_argument("--shapiq", nargs="*", default=list(SHAPIQ), choices=SHAPIQ)
    args = parser.parse_args()
    try:
        import shapiq  # noqa: F401
    except ImportError:  # the project's environment: ours only (see the docstring for shapiq's)
        print("# shapiq is not installed here: our methods only")
        args.shapiq = []
    methods = args.ours + args.shapiq
    width = 9
    print(
        f"default: estimator {DEFAULT_ESTIMATOR!r} on sampler {DEFAULT_SAMPLER!r}; {args.seeds} seeds"
    )
    header = f"{'game':<9} {'budget':>6} " + " ".join(
        f"{SHORT.get(m, m)[:width]:>{width}}" for m in methods
    )
    print(header + f" {'best shapiq':>16} {'ratio':>6} verdict", flush=True)
    seconds_rows = []
    verdicts, kernel_verdicts = [], []
    for spec in args.games:
        kind, n = spec.split(":")
        n = int(n)
        for multiplier in args.multipliers:
            budget = multiplier * n
            errors = {m: [] for m in methods}
            seconds = {m: [] for m in methods}
            for seed in range(args.seeds):
                game = GAMES[kind](n, seed=100 + seed)
                truth = game.shapley
                for m in methods:
                    started = time.perf_counter()
                    try:
                        values = (ours if m in args.ours else shapiq_method)(m, game, budget, seed)
                    except Exception as error:  # a shapiq method that refuses this budget: say so
                        if m in args.ours:  # ours never refuses: a bug, not a row
                            raise
                        values = np.full(n, np.nan)
                        print(f"# {m} on {spec} at {budget}: {type(error).__name__}: {error}")
                    seconds[m].append(time.perf_counter() - started)
                    errors[m].append(np.linalg.norm(values - truth) / np.linalg.norm(truth))
            mean = {m: float(np.mean(errors[m])) for m in methods}
            shapiq_means = {m: mean[m] for m in args.shapiq if np.isfinite(mean[m])}
            cells = " ".join(f"{mean[m]:>{width}.4f}" for m in methods)
            line = f"{spec:<9} {budget:>6} {cells}"
            if shapiq_means and args.ours:
                best = min(shapiq_means, key=shapiq_means.get)
                ours_name = args.ours[0]
                ratio = mean[ours_name] / mean[best]
                verdict = paired_verdict(errors[ours_name], errors[best])
                verdicts.append(verdict)
                line += f" {SHORT[best] + f' {mean[best]:.4f}':>16} {ratio:>6.2f} {verdict}"
                # the second bar: our own KernelSHAP, on the best of its designs listed
                kernels = [m for m in args.ours[1:] if m in KERNELS]
                if kernels:
                    kernel = min(kernels, key=mean.get)
                    kernel_verdict = paired_verdict(errors[ours_name], errors[kernel])
                    kernel_verdicts.append(kernel_verdict)
                    line += f" (vs {SHORT.get(kernel, kernel)}: {kernel_verdict})"
            print(line, flush=True)
            seconds_rows.append((spec, budget, {m: float(np.mean(seconds[m])) for m in methods}))
    if verdicts:
        print(
            f"\n{args.ours[0]} against the best shapiq method per row: "
            + ", ".join(f"{verdicts.count(v)} {v}" for v in ("win", "tie", "LOSS"))
        )
    if kernel_verdicts:
        print(
            f"{args.ours[0]} against our best kernel column per row: "
            + ", ".join(f"{kernel_verdicts.count(v)} {v}" for v in ("win", "tie", "LOSS"))
        )
    print("\nmean seconds per estimate (sampling, utilities and estimation; loaded machine)")
    print(
        f"{'game':<9} {'budget':>6} "
        + " ".join(f"{SHORT.get(m, m)[:width]:>{width}}" for m in methods)
    )
    for spec, budget, secs in seconds_rows:
        print(f"{spec:<9} {budget:>6} " + " ".join(f"{secs[m]:>{width}.2f}" for m in methods))


if __name__ == "__main__":
    main()

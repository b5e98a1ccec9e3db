"""The `surrogateshap` command line: `surrogateshap coalitions ...` draws the default design,
`surrogateshap attribute ...` turns a filled-in utility table into values (what the workflow
computes), without the workflow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .estimation import coalitions as coal
from .estimation import estimators
from .estimation.payout import DEFAULT_DRAWS, POLICIES
from .workflow.io import write_table

# config/config.yaml's surrogate section (without its seed); tests/test_samplers.py keeps them equal.
DEFAULT_SURROGATE = {
    "params": {"n_estimators": 300, "learning_rate": 0.3, "subsample": 1.0, "min_child_weight": 1},
    "grid": {"max_depth": [2, 3, 4], "n_estimators": [0, 300], "base": ["kernel"]},
    "cv_folds": 5,
    "bootstrap": 30,
    "ci_level": 0.9,
    "top_k": 3,
    "threads": 1,
    "anchor_endpoints": True,
    "odd_targets": True,
    "residual_correction": "in_sample",
    "select": "heldout_values",
}


def read_contributors(path: str) -> list[str]:
    """Every player's name as given. Refused, naming them: no rows, missing or blank names, names
    listed twice, and the names the dataset loader refuses (`data.name_problems`)."""
    from .data.datasets import name_problems

    try:
        frame = (
            pd.read_parquet(path)
            if path.endswith(".parquet")
            # skip_blank_lines=False: pandas would silently drop a row whose name is only spaces
            else pd.read_csv(
                path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=False
            )
        )
    except FileNotFoundError:
        raise ValueError(f"contributor table not found: {path}") from None
    except Exception as error:  # not CSV / Parquet, empty, truncated: name the file
        raise ValueError(f"{path}: cannot read the contributor table: {error}") from None
    if "contributor" not in frame.columns:
        raise ValueError(f"{path}: no 'contributor' column (columns: {list(frame.columns)})")
    if not len(frame):
        raise ValueError(f"{path}: no contributors")
    column = frame["contributor"]
    blank = np.flatnonzero(
        column.isna().to_numpy() | (column.astype(str).str.strip() == "").to_numpy()
    )
    if len(blank):
        raise ValueError(
            f"{path}: missing or blank contributor name in row(s) {blank[:20].tolist()}"
        )
    names = column.astype(str).tolist()
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path}: contributor(s) listed twice: {repeated[:10]}")
    problems = name_problems(names)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return names


def read_utilities(path: str, metric: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indicators and utilities in table order (repeats kept); see `coalitions.read_utility_table`."""
    return coal.read_utility_table(path, metric, names)


def cmd_coalitions(args) -> int:
    """The coalition table to fill in: `coalition`, `members` (a list of names), `size`."""
    names = read_contributors(args.contributors)
    if args.count < 2:
        raise ValueError(f"--count {args.count}: at least 2 (the empty and the grand coalition)")
    chosen = coal.sample_coalitions(
        len(names), args.count, args.sampler, args.seed, args.p, paired=not args.unpaired
    )
    write_table(
        args.out,
        coal.coalition_table(chosen, names),
        metadata={"sampler": args.sampler, "count": args.count, "seed": args.seed},
    )
    print(
        f"wrote {len(chosen)} coalitions of {len(names)} contributors ({args.sampler}) to "
        f"{args.out}; add one column of utilities per metric, then run `surrogateshap attribute`"
    )
    return 0


def cmd_attribute(args) -> int:
    names = read_contributors(args.contributors)
    x, y = read_utilities(args.utilities, args.metric, names)
    if args.estimator not in ("permutation", "hybrid"):  # these read chains in table order
        x, y = estimators.merge_repeats(x, y, args.utilities)
    values, diagnostics = estimators.attribute(
        args.estimator,
        x,
        y,
        names,
        _settings(args),
        args.seed,
        pairs=None if args.interactions else 0,
    )
    pairs = pd.DataFrame(
        diagnostics.pop("top_interactions", [])
    )  # their own file, not the metadata
    write_table(args.out, values, metadata=diagnostics)
    print(values.to_string(index=False))
    print(json.dumps(diagnostics, indent=2, default=str))
    if args.interactions:
        write_table(args.interactions, pairs)
        print(f"strongest interactions ({args.interactions}):")
        print(pairs.head(10).to_string(index=False))
    return 0


def _settings(args) -> dict:
    cfg = dict(DEFAULT_SURROGATE)
    if args.config:
        cfg.update(json.loads(Path(args.config).read_text()))
    return cfg


def cmd_payout(args) -> int:
    from .estimation.payout import parse_metric, payout_from_files

    table, meta = payout_from_files(
        args.tables,
        args.budget,
        [parse_metric(m) for m in args.metric or []],
        args.negative,
        args.draws,
        args.level,
        args.seed,
    )
    if args.out.endswith(".csv"):
        from .workflow.io import write_text

        write_text(args.out, table.to_csv(index=False))
    else:
        write_table(args.out, table, metadata=meta)
    print(table.to_string(index=False))
    for name, m in meta["metrics"].items():
        note = " (split equally: no contributor helps it)" if m["equal_split"] else ""
        print(f"{name}: {m['part']:.6g} of {args.budget:.6g} ({m['direction']} is better){note}")
    return 0


def cmd_convergence(args) -> int:
    from .estimation.convergence import convergence

    names = read_contributors(args.contributors)
    x, y = read_utilities(args.utilities, args.metric, names)
    per_player, summary, decision = convergence(
        args.estimator,
        x,
        y,
        names,
        _settings(args),
        args.seed,
        budgets=args.budgets,
        threshold=args.threshold,
    )
    write_table(args.out, per_player, metadata={"summary": summary.to_dict("list"), **decision})
    print(summary.to_string(index=False))
    print(json.dumps(decision))
    return 0


def cmd_make_tiny_pipeline(args) -> int:
    from .models.tiny import make_tiny_pipeline

    make_tiny_pipeline(args.kind, args.out, args.resolution, args.seed, args.lora, args.lora_rank)
    print(
        f"wrote a tiny {args.kind} pipeline to {args.out}"
        + (f" and a LoRA to {args.lora}" if args.lora else "")
    )
    return 0


def cmd_train_lora(args) -> int:
    from .models.class_conditional import set_threads
    from .workflow.steps.models import train_lora

    if args.threads:
        set_threads(args.threads)
    done = train_lora(
        args.out,
        run_dir=args.run,
        contributor=args.contributor,
        images_dir=args.images,
        pipeline=args.pipeline,
        device=args.device,
        progress=print,
        rank=args.rank,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(
        f"wrote a rank-{args.rank} LoRA trained on {done['images']} images of {done['source']} "
        f"to {args.out} (set model.lora to it)"
    )
    return 0


def _made(table, args, what: str) -> int:
    print(
        f"wrote {len(table)} {args.size}x{args.size} {what} images from "
        f"{table['contributor'].nunique()} contributors to {args.out} (metadata.csv)"
    )
    return 0


def cmd_make_scenes(args) -> int:
    from .data.scenes import make_scenes

    table = make_scenes(args.out, args.contributors, args.per_contributor, args.size, args.seed)
    return _made(table, args, "colour")


def cmd_make_shapes(args) -> int:
    from .data.shapes import make_shapes

    table = make_shapes(args.out, args.contributors, args.per_contributor, args.size, args.seed)
    return _made(table, args, "shape")


def cmd_check_data(args) -> int:
    from .data.checkdata import main as check_data

    return check_data(args.configfile, args.base)


def cmd_launch(args) -> int:
    from .launch import launch

    # everything after a leading "--" is Snakemake's
    snakemake_args = (
        args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    )
    job = launch(
        args.profile,
        snakemake_args,
        log_dir=args.log_dir,
        time_min=args.time_min,
        mem_mb=args.mem_mb,
        cpus=args.cpus,
        partition=args.partition,
        account=args.account,
    )
    print(f"submitted the Snakemake controller as SLURM job {job.job_id}")
    print(f"log: {job.log}")
    print(f"command: {' '.join(job.command)}")
    print(f"follow it: tail -f {job.log}   stop it: scancel {job.job_id}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="surrogateshap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    draw = sub.add_parser(
        "coalitions", help="the coalitions to score: the workflow's default design, or another"
    )
    draw.add_argument(
        "--contributors", required=True, help="CSV or Parquet with a 'contributor' column"
    )
    draw.add_argument(
        "--count", type=int, required=True, help="coalitions, the empty and grand ones included"
    )
    draw.add_argument("--seed", type=int, required=True)
    draw.add_argument("--out", required=True, help="Parquet output")
    draw.add_argument(
        "--sampler",
        default=coal.DEFAULT_SAMPLER,
        choices=coal.SAMPLERS,
        help="default: %(default)s, what the default estimator wants",
    )
    draw.add_argument("--p", type=float, default=0.5, help="bernoulli only")
    draw.add_argument(
        "--unpaired",
        action="store_true",
        help="do not follow each coalition by its complement (leverage is always paired)",
    )
    draw.set_defaults(func=cmd_coalitions)
    attr = sub.add_parser("attribute", help="Shapley values from a utility table")
    attr.add_argument(
        "--contributors", required=True, help="CSV or Parquet with a 'contributor' column"
    )
    attr.add_argument(
        "--utilities", required=True, help="Parquet: 'members' and one column per metric"
    )
    attr.add_argument("--metric", required=True)
    attr.add_argument(
        "--estimator",
        default=estimators.DEFAULT_ESTIMATOR,
        choices=estimators.ESTIMATORS,
        help="default: %(default)s",
    )
    attr.add_argument("--out", required=True, help="Parquet output")
    attr.add_argument("--seed", type=int, default=0)
    attr.add_argument("--config", help="JSON file overriding surrogate settings")
    attr.add_argument(
        "--interactions", help="Parquet output of the surrogate's pairwise interaction values"
    )
    attr.set_defaults(func=cmd_attribute)
    pay = sub.add_parser(
        "payout",
        help="split a budget among the contributors by their values in attribution tables",
        description="Each metric gets budget x weight / total weight, split by the values "
        "(negated where lower is better); see docs/payout.md.",
    )
    pay.add_argument("tables", nargs="+", help="attribution tables (Parquet), one per metric")
    pay.add_argument("--budget", type=float, required=True, help="what the payouts sum to")
    pay.add_argument(
        "--metric",
        action="append",
        help="NAME[:WEIGHT[:higher|lower]], repeatable (default: every table, weight 1; the "
        "direction from the table, else the package's metric of that name)",
    )
    pay.add_argument(
        "--negative",
        default="clip",
        choices=POLICIES,
        help="contributors who hurt a metric: clip (paid 0), shift (paid relative to the most "
        "harmful) or net (charged); default: %(default)s",
    )
    pay.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="for the intervals")
    pay.add_argument("--level", type=float, help="interval level (default: the tables')")
    pay.add_argument("--seed", type=int, default=0)
    pay.add_argument("--out", required=True, help="the payout table: .csv, else Parquet")
    pay.set_defaults(func=cmd_payout)
    conv = sub.add_parser(
        "convergence", help="values and ranks on growing prefixes of the table, and a stopping rule"
    )
    for flag, kwargs in (
        ("--contributors", {"required": True}),
        ("--utilities", {"required": True}),
        ("--metric", {"required": True}),
        ("--out", {"required": True}),
        (
            "--estimator",
            {"default": estimators.DEFAULT_ESTIMATOR, "choices": estimators.ESTIMATORS},
        ),
        ("--seed", {"type": int, "default": 0}),
        ("--config", {}),
        ("--budgets", {"type": int, "nargs": "+"}),
        ("--threshold", {"type": float, "default": 0.95}),
    ):
        conv.add_argument(flag, **kwargs)
    conv.set_defaults(func=cmd_convergence)
    tiny = sub.add_parser(
        "make-tiny-pipeline",
        help="write a tiny, randomly initialised SD, SDXL or FLUX pipeline (offline)",
    )
    tiny.add_argument("--kind", required=True, choices=["sd", "sdxl", "flux"])
    tiny.add_argument("--out", required=True, help="pipeline folder to write")
    tiny.add_argument("--resolution", type=int, default=32)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--lora", help="also write a random LoRA for it here (save_lora_weights format)"
    )
    tiny.add_argument("--lora-rank", type=int, default=4)
    tiny.set_defaults(func=cmd_make_tiny_pipeline)
    lora = sub.add_parser(
        "train-lora",
        help="fine-tune a LoRA (for model.lora) on one contributor's images or a folder, on top of "
        "a finished run's text-to-image pipeline or a Stable Diffusion folder",
    )
    lora.add_argument(
        "--run", help="a finished run's folder, results/<run>: its images and trained pipeline"
    )
    lora.add_argument("--contributor", help="train on this contributor's images of the run")
    lora.add_argument(
        "--images", help="or train on this folder (images and a metadata.csv: file_name, caption)"
    )
    lora.add_argument("--out", required=True, help="LoRA folder to write (save_lora_weights)")
    lora.add_argument(
        "--pipeline",
        help="the Stable Diffusion folder to start from (default: the pipeline the run trained)",
    )
    lora.add_argument("--rank", type=int, default=8)
    lora.add_argument("--steps", type=int, default=300)
    lora.add_argument("--lr", type=float, default=1e-3)
    lora.add_argument("--batch-size", type=int, default=16)
    lora.add_argument("--seed", type=int, default=0)
    lora.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu, cuda[:i]")
    lora.add_argument(
        "--threads", type=int, help="torch threads on the CPU (default: torch's own choice)"
    )
    lora.set_defaults(func=cmd_train_lora)
    shapes = sub.add_parser(
        "make-shapes",
        help="write the shapes dataset (16x16 circles, squares, ...; labels, captions) as an image folder",
    )
    shapes.add_argument("--out", required=True, help="folder to write (images/ and metadata.csv)")
    shapes.add_argument("--contributors", type=int, default=8)
    shapes.add_argument("--per-contributor", type=int, default=40)
    shapes.add_argument("--size", type=int, default=16)
    shapes.add_argument("--seed", type=int, default=0)
    shapes.set_defaults(func=cmd_make_shapes)
    scenes = sub.add_parser(
        "make-scenes",
        help="write the scenes dataset (32x32 colour; each contributor a palette, texture, "
        "composition and favourite shape; labels, captions) as an image folder",
    )
    scenes.add_argument("--out", required=True, help="folder to write (images/ and metadata.csv)")
    scenes.add_argument("--contributors", type=int, default=16)
    scenes.add_argument("--per-contributor", type=int, default=24)
    scenes.add_argument("--size", type=int, default=32)
    scenes.add_argument("--seed", type=int, default=0)
    scenes.set_defaults(func=cmd_make_scenes)
    checker = sub.add_parser(
        "check-data",
        help="validate a dataset config and folder without running the workflow (every problem listed)",
    )
    checker.add_argument(
        "--configfile", required=True, nargs="+", help="config file(s) merged over the defaults"
    )
    checker.add_argument(
        "--base", help="the defaults (default: config/config.yaml here, else the package's)"
    )
    checker.set_defaults(func=cmd_check_data)
    from . import launch as controller

    run = sub.add_parser(
        "launch",
        allow_abbrev=False,
        help="submit the Snakemake controller as a SLURM job: launch --profile profiles/slurm [snakemake args]",
        description="Every argument not listed here is passed to snakemake.",
    )
    run.add_argument(
        "--profile", required=True, help="Snakemake profile folder, e.g. profiles/slurm"
    )
    run.add_argument(
        "--log-dir",
        default="logs/launch",
        help="where the controller's log goes (default: %(default)s)",
    )
    run.add_argument(
        "--time-min",
        type=int,
        default=controller.CONTROLLER_TIME_MIN,
        help="the controller job's wall time, minutes (default: %(default)s)",
    )
    run.add_argument(
        "--mem-mb",
        type=int,
        default=controller.CONTROLLER_MEM_MB,
        help="the controller job's memory (default: %(default)s)",
    )
    run.add_argument(
        "--cpus",
        type=int,
        default=controller.CONTROLLER_CPUS,
        help="the controller job's CPUs (default: %(default)s)",
    )
    run.add_argument("--partition", help="default: the profile's default-resources slurm_partition")
    run.add_argument("--account", help="default: the profile's default-resources slurm_account")
    run.set_defaults(func=cmd_launch)
    args, unknown = parser.parse_known_args(argv)
    if args.command == "launch":
        args.snakemake_args = unknown  # everything else is Snakemake's, in the order given
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"surrogateshap: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
